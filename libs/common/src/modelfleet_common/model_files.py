"""Loading a logged scikit-learn model safely: digest first, then skops with allow-listed types only.

MLflow's own loader reads the trusted types from the model's MLmodel file, so a crafted model
could trust anything. Here those recorded types are accepted only if every one is in the fleet's
exact allow-list (`skops_types.FLEET_TRUSTED_TYPES`: the classes the trainer's templates need, by
full name, no prefixes); anything else refuses the model, naming the type, before skops reads the
file. Pickle formats are never loaded.

Shared by every service that loads model files (evaluator, serving); it needs the `models` extra
of modelfleet-common (skops, scikit-learn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import skops.io
import yaml
from skops.io.exceptions import UntrustedTypesFoundException

from modelfleet_common.signing import IntegrityError, directory_digest
from modelfleet_common.skops_types import FLEET_TRUSTED_TYPES


class ModelRefused(Exception):
    """The model's files are not a scikit-learn model we are willing to deserialize."""


def is_allowed_type(type_path: str) -> bool:
    """Whether a model may declare `type_path` as trusted: exactly one of the fleet's allow-list."""
    return type_path in FLEET_TRUSTED_TYPES


def directory_size(directory: Path) -> int:
    """Bytes of every file under `directory`."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def verify_digest(directory: Path, expected: str, *, expected_from: str = "the expected") -> str:
    """The directory's digest; raises `IntegrityError` when it is not `expected`.

    `expected_from` names where the expected digest came from (e.g. "the trainer's"), for the message.
    """
    actual = directory_digest(directory)
    if actual != expected:
        raise IntegrityError(
            f"model files digest {actual[:12]}… differs from {expected_from} {expected[:12]}…"
        )
    return actual


def load_skops_model(directory: Path) -> Any:
    """The estimator of an MLflow scikit-learn model saved with skops; raises `ModelRefused`.

    Call only on files whose digest was verified.
    """
    try:
        mlmodel = yaml.safe_load((directory / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ModelRefused(f"no readable MLmodel file in the model directory: {error}") from error
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        raise ModelRefused("the MLmodel file has no sklearn flavor")
    serialization = flavor.get("serialization_format")
    if serialization != "skops":
        raise ModelRefused(
            f"the model is serialized as {serialization!r}; only skops is loaded, never pickle"
        )
    data = (directory / str(flavor.get("pickled_model", ""))).resolve()
    if not data.is_file() or not data.is_relative_to(directory.resolve()):
        raise ModelRefused(f"the sklearn flavor points at {flavor.get('pickled_model')!r}, not a model file")
    declared = flavor.get("skops_trusted_types") or []
    if not isinstance(declared, list) or not all(isinstance(t, str) for t in declared):
        raise ModelRefused("skops_trusted_types in MLmodel is not a list of type names")
    refused = sorted({t for t in declared if not is_allowed_type(t)})
    if refused:
        raise ModelRefused(
            f"the model declares types outside the fleet's skops allow-list as trusted: {', '.join(refused)}"
            f" (allowed: {', '.join(sorted(FLEET_TRUSTED_TYPES))})"
        )
    try:
        return skops.io.load(data, trusted=sorted(set(declared)))
    except UntrustedTypesFoundException as error:
        raise ModelRefused(f"the model file holds types it does not declare as trusted: {error}") from error
    except Exception as error:  # skops raises many kinds on a damaged file; all mean "not loadable"
        raise ModelRefused(f"skops could not load the model: {type(error).__name__}: {error}") from error
