"""The deployer's own Prometheus metrics: models by stage, rollout decisions, the oldest canary.

Labels are stages, risk classes and decisions: bounded sets, never model names.

The gauges describe the models this replica owns, so that `sum` over the replicas is the fleet.
The deployer's state is shared by its replicas (the state engine), and one model's events arrive
on several topics, each in its own consumer group: what a replica owns is the models whose key
falls in a partition of `model-specs` its group gave it (`FleetService.ownership`; every model
has its spec there). Without a consumer group (one process, tests) it owns every model.

They are computed from the `stages` namespace of the state engine (`stage_record`: a model's
stage, risk class and since when, written with its rollout state, and by the rebuild from the
compacted `deployments` topic), every `FLEET_DEPLOYER_METRICS_SECONDS`: small records, one scan.
The decision counter counts each applied transition once (redeliveries apply nothing).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelfleet_contracts import ModelPromoted, ModelRolledBack
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import Stage
from modelfleet_contracts.specs import RiskClass

from .rollout import ModelRollout

#: Namespace of the state engine: per model, `stage_record` of its rollout.
STAGES = "stages"

Decision = Literal["shadow", "canary", "step", "promoted", "rolled_back", "retired"]
#: A model whose rollout state names no risk class (written before it was recorded).
UNKNOWN = "unknown"
#: Stages whose age `fleet_deployer_canary_age_seconds` reports.
IN_ROLLOUT: frozenset[Stage] = frozenset({"shadow", "canary"})


def stage_record(state: ModelRollout) -> dict[str, Any]:
    """What the gauges need of a model's rollout: its stage, risk class and since when."""
    return {
        "stage": state.stage,
        "risk_class": state.risk_class,
        "since": state.stage_since.isoformat() if state.stage_since else None,
    }


def decisions(before: ModelRollout, after: ModelRollout, events: Sequence[Event]) -> list[Decision]:
    """The rollout decisions one transition took, for `fleet_deployer_rollout_decisions_total`.

    `shadow`/`canary`: a version entered that stage (or replaced the one in it); `step`: the
    canary moved to its next step; `promoted`/`rolled_back`: as published; `retired`: the model left.
    """
    taken: list[Decision] = []
    entered = (after.stage, after.challenger) != (before.stage, before.challenger)
    if after.stage == "shadow" and entered:
        taken.append("shadow")
    if after.stage == "canary" and entered:
        taken.append("canary")
    elif after.stage == "canary" and after.step_index > before.step_index:
        taken.append("step")
    taken += ["promoted" for event in events if isinstance(event, ModelPromoted)]
    taken += ["rolled_back" for event in events if isinstance(event, ModelRolledBack)]
    if after.stage == "retired" and before.stage != "retired":
        taken.append("retired")
    return taken


@dataclass(frozen=True)
class FleetView:
    """The owned models by stage and risk class, and the oldest shadow or canary of each class."""

    models: Mapping[tuple[str, str], int]
    canary_age_seconds: Mapping[str, float]


def fleet_view(
    records: Iterable[tuple[str, Mapping[str, Any]]], owns: Callable[[str], bool], now: datetime
) -> FleetView:
    """Count the stage records of the models `owns` says are this replica's."""
    models: Tally[tuple[str, str]] = Tally()
    oldest: dict[str, float] = {}
    for model, record in records:
        if not owns(model):
            continue
        risk_class = record.get("risk_class") or UNKNOWN
        models[(record["stage"], risk_class)] += 1
        since = record.get("since")
        if record["stage"] in IN_ROLLOUT and since:
            age = max((now - datetime.fromisoformat(since)).total_seconds(), 0.0)
            oldest[risk_class] = max(oldest.get(risk_class, 0.0), age)
    return FleetView(dict(models), oldest)


class DeployerMetrics:
    """`fleet_models`, `fleet_deployer_rollout_decisions_total`, `fleet_deployer_canary_age_seconds`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.models = Gauge(
            "fleet_models",
            "Models with a rollout, by stage and risk class (the models this deployer replica owns).",
            ["stage", "risk_class"],
            registry=registry,
        )
        self.decisions = Counter(
            "fleet_deployer_rollout_decisions_total",
            "Rollout decisions: shadow, canary, step, promoted, rolled_back, retired.",
            ["risk_class", "decision"],
            registry=registry,
        )
        self.canary_age = Gauge(
            "fleet_deployer_canary_age_seconds",
            "Age of the oldest shadow or canary in progress (since it entered the stage); 0 if none.",
            ["risk_class"],
            registry=registry,
        )
        self._stages: set[tuple[str, str]] = set()
        for risk_class in get_args(RiskClass):
            self.canary_age.labels(risk_class).set(0)

    def count(self, risk_class: str | None, taken: Iterable[Decision]) -> None:
        for decision in taken:
            self.decisions.labels(risk_class or UNKNOWN, decision).inc()

    def show(self, view: FleetView) -> None:
        """Export a fleet view: stages and classes no owned model has any more read 0."""
        for key in self._stages - view.models.keys():
            self.models.labels(*key).set(0)
        for key, count in view.models.items():
            self.models.labels(*key).set(count)
        self._stages |= set(view.models)
        for risk_class in set(get_args(RiskClass)) | set(view.canary_age_seconds):
            self.canary_age.labels(risk_class).set(view.canary_age_seconds.get(risk_class, 0.0))
