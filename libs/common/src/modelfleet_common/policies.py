"""Risk policies from `policies/<risk class>.yaml`, validated once at startup."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import yaml
from pydantic import ValidationError

from modelfleet_contracts.policies import RiskPolicy
from modelfleet_contracts.specs import RiskClass
from modelfleet_contracts.training import Task

RISK_CLASSES: tuple[RiskClass, ...] = get_args(RiskClass)
TASKS: tuple[Task, ...] = get_args(Task)


class PolicyError(Exception):
    """A policy file is missing or invalid; the message names the file and the field."""


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(document)"


def load_policy(path: Path) -> RiskPolicy:
    """One `kind: RiskPolicy` document; raises `PolicyError` naming the file and the field."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PolicyError(f"{path}: cannot read the policy file ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise PolicyError(f"{path}: not valid YAML: {error}") from error
    try:
        policy = RiskPolicy.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in error.errors())
        raise PolicyError(f"{path}: invalid RiskPolicy: {problems}") from error
    if policy.metadata.name != path.stem:
        raise PolicyError(
            f"{path}: metadata.name is {policy.metadata.name!r} but the file is named for {path.stem!r}"
        )
    missing = [task for task in TASKS if not policy.spec.gates.metric_thresholds.get(task)]
    if missing:
        raise PolicyError(
            f"{path}: spec.gates.metric_thresholds has no thresholds for {', '.join(missing)}; "
            "every task needs at least one so no candidate goes ungated"
        )
    return policy


def load_policies(directory: Path) -> dict[RiskClass, RiskPolicy]:
    """Every risk class's policy from `directory` (`low.yaml` … `critical.yaml`)."""
    if not directory.is_dir():
        raise PolicyError(
            f"policy directory {directory.resolve()} does not exist; set FLEET_POLICY_DIR to the "
            "directory holding low.yaml, medium.yaml, high.yaml and critical.yaml"
        )
    return {risk_class: load_policy(directory / f"{risk_class}.yaml") for risk_class in RISK_CLASSES}
