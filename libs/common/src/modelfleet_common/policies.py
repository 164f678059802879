"""Risk policies from `policies/<risk class>.yaml`, validated once at startup, and the one resolver
every service and the CLI use to turn a policy and a spec into a model's effective policy."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import ValidationError

from modelfleet_contracts.envelope import Contract
from modelfleet_contracts.policies import FloorField, GateDefaults, RiskPolicy
from modelfleet_contracts.specs import (
    GatePolicy,
    MetricThreshold,
    ModelSpec,
    MonitoringPolicy,
    RetrainPolicy,
    RiskClass,
    RolloutPolicy,
)
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
    try:
        resolve_policy(policy)
    except InvalidPolicy as error:
        raise PolicyError(f"{path}: {error}") from error
    return policy


def load_policies(directory: Path) -> dict[RiskClass, RiskPolicy]:
    """Every risk class's policy from `directory` (`low.yaml` … `critical.yaml`)."""
    if not directory.is_dir():
        raise PolicyError(
            f"policy directory {directory.resolve()} does not exist; set FLEET_POLICY_DIR to the "
            "directory holding low.yaml, medium.yaml, high.yaml and critical.yaml"
        )
    return {risk_class: load_policy(directory / f"{risk_class}.yaml") for risk_class in RISK_CLASSES}


# --- one resolver: the risk policy, overridden by the spec, never below its floors -----------------

#: Rollout values used only where neither the risk policy nor the spec sets a field.
#: Passing versions a routing table keeps unless the policy or the spec says otherwise.
DEFAULT_KEPT_VERSIONS = 20

FALLBACK_ROLLOUT = RolloutPolicy(
    shadow=False,
    canary_steps=[100],
    min_requests_per_step=1,
    requires_approval=False,
    min_live_labels=30,
    kept_versions=DEFAULT_KEPT_VERSIONS,
)

#: What "tighter" means for each floor a policy may mark, in words for errors and docs.
FLOOR_RULES: dict[FloorField, str] = {
    "gates.metric_thresholds": "a spec's bound on a metric the policy bounds may only be stricter",
    "gates.non_inferiority_margin": "at most the floor",
    "gates.max_latency_p95_ms": "at most the floor",
    "gates.max_model_size_mb": "at most the floor",
    "gates.max_fairness_gap": "at most the floor",
    "gates.min_robustness": "at least the floor",
    "rollout.shadow": "a shadow stage the policy asks for stays",
    "rollout.requires_approval": "an approval the policy requires stays required",
    "rollout.canary_steps": "at least as many steps, none with more traffic than the floor's step",
    "rollout.min_requests_per_step": "at least the floor",
    "rollout.min_live_labels": "at least the floor",
    "approvers": "some of the policy's approvers, never others",
}

Loosened = Literal["refuse", "floor"]


class InvalidPolicy(ValueError):
    """The effective policy of a model makes no sense (e.g. canary steps that do not increase)."""


@dataclass(frozen=True)
class FloorViolation:
    """One spec value that would loosen a field its risk policy marks as a floor."""

    field: str
    value: Any
    floor: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {_shown(self.value)} loosens the floor {_shown(self.floor)} ({self.rule})"


class PolicyFloorError(InvalidPolicy):
    """A spec loosens what its risk policy marks as a floor; `violations` lists every field."""

    def __init__(self, risk_class: RiskClass, violations: Sequence[FloorViolation]) -> None:
        self.risk_class = risk_class
        self.violations = tuple(violations)
        super().__init__(
            f"the {risk_class} risk policy's floors forbid "
            + "; ".join(str(violation) for violation in self.violations)
        )


@dataclass(frozen=True)
class Overrides:
    """What a spec sets for its own model; unset (None) fields keep the risk policy's."""

    gates: GatePolicy = field(default_factory=GatePolicy)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    approvers: tuple[str, ...] | None = None

    @classmethod
    def of(cls, spec: ModelSpec) -> Overrides:
        """Every override a model spec declares."""
        body = spec.spec
        approvers = None if body.approvers is None else tuple(body.approvers)
        return cls(body.gates, body.rollout, body.monitoring, body.retrain, approvers)


@dataclass(frozen=True)
class EffectiveRollout:
    """A model's rollout with every field decided."""

    shadow: bool
    canary_steps: tuple[int, ...]
    min_requests_per_step: int
    requires_approval: bool
    min_live_labels: int
    #: Passing versions a routing table keeps (not a floor: fewer only means fewer rollback targets).
    kept_versions: int


@dataclass(frozen=True)
class EffectivePolicy:
    """What governs one model: its risk class's policy, overridden by its spec above the floors."""

    risk_class: RiskClass
    #: The gates of every task (the evaluator picks the model's), with the spec's thresholds.
    gates: GateDefaults
    rollout: EffectiveRollout
    monitoring: MonitoringPolicy
    #: Retraining as both the risk class and the spec allow it.
    retrain: RetrainPolicy
    approvers: tuple[str, ...]
    #: Loosenings replaced by their floor (`loosened="floor"`); empty when the spec kept every floor.
    floored: tuple[FloorViolation, ...] = ()


def resolve_policy(
    policy: RiskPolicy, overrides: Overrides | None = None, *, loosened: Loosened = "refuse"
) -> EffectivePolicy:
    """The effective policy of a model: `policy` with every field `overrides` sets replaced, except
    that a field the policy lists under `floors` may only be tightened.

    Tighter means: a lower `non_inferiority_margin`, `max_latency_p95_ms`, `max_model_size_mb` or
    `max_fairness_gap`; a higher `min_robustness`, `min_requests_per_step` or `min_live_labels`; a
    `shadow` or `requires_approval` the policy sets to true stays true; canary steps at least as
    many as the policy's, none with more traffic than the policy's step of the same index (e.g.
    [1, 5, 25, 50, 100] allows [1, 2, 5, 25, 50, 100] but not [5, 50, 100]); approvers some of the
    policy's; metric thresholds: with the floor, the spec's list adds to the policy's thresholds of
    each task and a bound on a metric the policy bounds must be stricter (without the floor the
    spec's list replaces the policy's).

    A loosening raises `PolicyFloorError` naming every field, the spec's value and the floor
    (`loosened="refuse"`), or is replaced by the floor and listed in `floored` (`loosened="floor"`,
    for services that must act on a spec that bypassed `modelfleet apply`). Canary steps that do
    not strictly increase within 1..100 raise `InvalidPolicy` either way.
    """
    overrides = overrides or Overrides()
    resolver = _Resolver(policy)
    gates = resolver.gates(policy.spec.gates, overrides.gates)
    rollout = resolver.rollout(policy, overrides.rollout)
    approvers = resolver.pick(
        "approvers",
        overrides.approvers,
        tuple(policy.spec.approvers),
        looser=lambda value, floor: not set(value) <= set(floor),
    )
    if resolver.violations and loosened == "refuse":
        raise PolicyFloorError(policy.metadata.name, resolver.violations)
    base_retrain, retrain = policy.spec.retrain, overrides.retrain
    return EffectivePolicy(
        risk_class=policy.metadata.name,
        gates=gates,
        rollout=rollout,
        monitoring=policy.spec.monitoring.model_copy(update=_set_fields(overrides.monitoring)),
        retrain=RetrainPolicy(
            on_drift=retrain.on_drift and base_retrain.on_drift,
            on_decay=retrain.on_decay and base_retrain.on_decay,
            cooldown_seconds=(
                retrain.cooldown_seconds
                if retrain.cooldown_seconds is not None
                else base_retrain.cooldown_seconds
            ),
        ),
        approvers=tuple(approvers),
        floored=tuple(resolver.violations),
    )


def policy_of_spec(
    policies: Mapping[RiskClass, RiskPolicy], spec: ModelSpec, *, loosened: Loosened = "refuse"
) -> EffectivePolicy:
    """`resolve_policy` for a whole spec, under the policy of its risk class."""
    return resolve_policy(policies[spec.metadata.risk_class], Overrides.of(spec), loosened=loosened)


def _set_fields(model: Contract) -> dict[str, Any]:
    return {name: value for name, value in model if value is not None}


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value) if isinstance(value, bool | list | type(None)) else str(value)


def _at_most(value: Any, floor: Any) -> bool:
    return bool(value > floor)


def _at_least(value: Any, floor: Any) -> bool:
    return bool(value < floor)


def _kept_true(value: Any, floor: Any) -> bool:
    return bool(floor) and not value


def _more_traffic_sooner(value: Any, floor: Any) -> bool:
    return len(value) < len(floor) or any(step > limit for step, limit in zip(value, floor, strict=False))


class _Resolver:
    """Overrides applied field by field, collecting the loosenings of floors."""

    def __init__(self, policy: RiskPolicy) -> None:
        self.risk_class = policy.metadata.name
        self.floors = set(policy.spec.floors)
        self.violations: list[FloorViolation] = []

    def pick(self, name: FloorField, value: Any, default: Any, *, looser: Callable[[Any, Any], bool]) -> Any:
        """`value` if set and not looser than a floor `default`, else `default`."""
        if value is None:
            return default
        if name in self.floors and default is not None and looser(value, default):
            self.violations.append(FloorViolation(name, value, default, FLOOR_RULES[name]))
            return default
        return value

    def gates(self, base: GateDefaults, spec: GatePolicy) -> GateDefaults:
        return base.model_copy(
            update={
                "metric_thresholds": self.thresholds(base.metric_thresholds, spec.metric_thresholds),
                "non_inferiority_margin": self.pick(
                    "gates.non_inferiority_margin",
                    spec.non_inferiority_margin,
                    base.non_inferiority_margin,
                    looser=_at_most,
                ),
                "max_latency_p95_ms": self.pick(
                    "gates.max_latency_p95_ms",
                    spec.max_latency_p95_ms,
                    base.max_latency_p95_ms,
                    looser=_at_most,
                ),
                "max_model_size_mb": self.pick(
                    "gates.max_model_size_mb", spec.max_model_size_mb, base.max_model_size_mb, looser=_at_most
                ),
                "max_fairness_gap": self.pick(
                    "gates.max_fairness_gap", spec.max_fairness_gap, base.max_fairness_gap, looser=_at_most
                ),
                "min_robustness": self.pick(
                    "gates.min_robustness", spec.min_robustness, base.min_robustness, looser=_at_least
                ),
            }
        )

    def thresholds(
        self, base: Mapping[Task, list[MetricThreshold]], spec: list[MetricThreshold] | None
    ) -> dict[Task, list[MetricThreshold]]:
        if spec is None:
            return {task: list(bounds) for task, bounds in base.items()}
        if "gates.metric_thresholds" not in self.floors:
            return {task: list(spec) for task in base}
        rule = FLOOR_RULES["gates.metric_thresholds"]
        found: dict[str, FloorViolation] = {}
        for bound in spec:
            for floor in (f for bounds in base.values() for f in bounds if f.metric == bound.metric):
                field_name = f"gates.metric_thresholds[{bound.metric}]"
                if floor.min is not None and bound.min is not None and bound.min < floor.min:
                    found.setdefault(
                        f"{field_name}.min", FloorViolation(f"{field_name}.min", bound.min, floor.min, rule)
                    )
                if floor.max is not None and bound.max is not None and bound.max > floor.max:
                    found.setdefault(
                        f"{field_name}.max", FloorViolation(f"{field_name}.max", bound.max, floor.max, rule)
                    )
        self.violations += found.values()
        return {task: _tightest(bounds, spec) for task, bounds in base.items()}

    def rollout(self, policy: RiskPolicy, spec: RolloutPolicy) -> EffectiveRollout:
        base = FALLBACK_ROLLOUT.model_copy(update=_set_fields(policy.spec.rollout))
        base_steps = _checked_steps(f"the {self.risk_class} risk policy", base.canary_steps or [])
        steps = None
        if spec.canary_steps is not None:
            steps = _checked_steps(f"the spec (under the {self.risk_class} risk policy)", spec.canary_steps)
        return EffectiveRollout(
            shadow=bool(self.pick("rollout.shadow", spec.shadow, base.shadow, looser=_kept_true)),
            canary_steps=tuple(
                self.pick("rollout.canary_steps", steps, base_steps, looser=_more_traffic_sooner)
            ),
            min_requests_per_step=self.pick(
                "rollout.min_requests_per_step",
                spec.min_requests_per_step,
                base.min_requests_per_step,
                looser=_at_least,
            ),
            requires_approval=bool(
                self.pick(
                    "rollout.requires_approval",
                    spec.requires_approval,
                    base.requires_approval,
                    looser=_kept_true,
                )
            ),
            min_live_labels=self.pick(
                "rollout.min_live_labels", spec.min_live_labels, base.min_live_labels, looser=_at_least
            ),
            kept_versions=spec.kept_versions or base.kept_versions or DEFAULT_KEPT_VERSIONS,
        )


def _checked_steps(whose: str, steps: Sequence[int]) -> tuple[int, ...]:
    if not steps:
        raise InvalidPolicy(f"rollout.canary_steps must not be empty ({whose})")
    if any(step <= 0 or step > 100 for step in steps) or list(steps) != sorted(set(steps)):
        raise InvalidPolicy(
            f"rollout.canary_steps must strictly increase within 1..100 ({whose}), got {list(steps)}"
        )
    return tuple(steps)


def _tightest(floors: Sequence[MetricThreshold], spec: Sequence[MetricThreshold]) -> list[MetricThreshold]:
    """The policy's thresholds, each made as strict as the spec's bounds on its metric, then the
    spec's thresholds on other metrics."""
    merged = []
    for floor in floors:
        same = [bound for bound in spec if bound.metric == floor.metric]
        lows = [b.min for b in (floor, *same) if b.min is not None]
        highs = [b.max for b in (floor, *same) if b.max is not None]
        merged.append(
            MetricThreshold(
                metric=floor.metric, min=max(lows) if lows else None, max=min(highs) if highs else None
            )
        )
    covered = {floor.metric for floor in floors}
    return merged + [bound for bound in spec if bound.metric not in covered]
