"""What the fleet already knows, read from Kafka: desired state (compacted topics) and progress.

The CLI has no database: `apply` diffs against the compacted spec topics and `status` folds the
lifecycle topics into one row per model, the same way any service could rebuild its view.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from modelfleet_common.humanize import duration, percent
from modelfleet_common.kafka import read_snapshot
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import (
    ApprovalRejected,
    ApprovalRequested,
    DatasetSpec,
    DatasetSpecSubmitted,
    DeploymentChanged,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    ModelSpecRetired,
    ModelSpecSubmitted,
    TrainingFailed,
    TrainingFinished,
    TrainingStarted,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    APPROVALS_REJECTED,
    DATASET_SPECS,
    DEPLOYMENTS,
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    TRAINING_FAILED,
    TRAINING_FINISHED,
    TRAINING_STARTED,
    Topic,
)

#: In this order: events of one deployer decision share a timestamp, and the sort is stable, so the
#: routing table comes before the promotion or rollback that explains it.
LIFECYCLE_TOPICS = (
    MODEL_SPECS,
    TRAINING_STARTED,
    TRAINING_FINISHED,
    TRAINING_FAILED,
    MODEL_EVALUATIONS,
    MODEL_REGISTRATIONS,
    DEPLOYMENTS,
    APPROVAL_REQUESTS,
    APPROVALS_REJECTED,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
)


async def read_events(settings: ServiceSettings, topics: tuple[Topic, ...]) -> list[Event]:
    """Every valid event of `topics`, oldest first; malformed messages are skipped (they are
    the dead-letter topic's business, not a reader's)."""
    namer = TopicNamer(settings.topic_prefix)
    async with asyncio.timeout(60):
        snapshots = await asyncio.gather(*(read_snapshot(settings.kafka, namer.topic(t)) for t in topics))
    events: list[Event] = []
    for topic, values in zip(topics, snapshots, strict=True):
        for value in values:
            try:
                events.append(topic.parse(value))
            except ValidationError:
                continue
    return sorted(events, key=lambda event: event.occurred_at)


@dataclass(frozen=True)
class DesiredState:
    """The latest spec event per model and per dataset."""

    models: dict[str, ModelSpecSubmitted | ModelSpecRetired]
    datasets: dict[str, DatasetSpecSubmitted]

    def model_revision(self, name: str) -> str | None:
        """Revision the fleet is running for `name`; None if unknown or retired."""
        latest = self.models.get(name)
        return latest.revision if isinstance(latest, ModelSpecSubmitted) else None

    def dataset_specs(self) -> dict[str, DatasetSpec]:
        return {name: event.spec for name, event in self.datasets.items()}


def desired_state(events: list[Event]) -> DesiredState:
    """Fold spec events (oldest first) into the desired state."""
    models: dict[str, ModelSpecSubmitted | ModelSpecRetired] = {}
    datasets: dict[str, DatasetSpecSubmitted] = {}
    for event in events:
        if isinstance(event, ModelSpecSubmitted | ModelSpecRetired):
            models[event.model] = event
        elif isinstance(event, DatasetSpecSubmitted):
            datasets[event.dataset] = event
    return DesiredState(models, datasets)


async def read_desired_state(settings: ServiceSettings) -> DesiredState:
    return desired_state(await read_events(settings, (MODEL_SPECS, DATASET_SPECS)))


@dataclass
class ModelStatus:
    """One model's row in `modelfleet status`."""

    model: str
    risk_class: str = "?"
    owner: str = ""
    revision: str = ""
    stage: str = "submitted"
    champion: str | None = None
    challenger: str | None = None
    updated_at: datetime | None = None
    detail: str = ""
    versions: list[str] = field(default_factory=list)


def fold_status(events: list[Event]) -> list[ModelStatus]:
    """Fold lifecycle events (oldest first) into one status per model, sorted by name.

    Events of an older spec revision than the current one still move versions (a version is a
    version) but do not override the stage of the newer revision's work.
    """
    rows: dict[str, ModelStatus] = {}
    for event in events:
        name = getattr(event, "model", None)
        if name is None:
            continue
        row = rows.setdefault(name, ModelStatus(model=name))
        row.updated_at = event.occurred_at
        _apply(row, event)
    return [rows[name] for name in sorted(rows)]


def _apply(row: ModelStatus, event: Event) -> None:
    if isinstance(event, ModelSpecSubmitted):
        row.risk_class = event.spec.metadata.risk_class
        row.owner = event.spec.metadata.owner
        row.revision = event.revision
        row.stage, row.detail = "submitted", "waiting for the trainer (or for data)"
    elif isinstance(event, ModelSpecRetired):
        row.stage, row.detail = "retired", event.reason
    elif isinstance(event, TrainingStarted):
        row.stage, row.detail = (
            "training",
            f"{event.template}@{event.template_version} run {event.run_id[:8]}",
        )
    elif isinstance(event, TrainingFinished):
        row.stage, row.detail = "trained", f"run {event.run_id[:8]} in {duration(event.duration_seconds)}"
    elif isinstance(event, TrainingFailed):
        row.stage, row.detail = f"failed ({event.failure})", f"{event.error_type}: {event.message}"
    elif isinstance(event, ModelEvaluated):
        failed = [gate.gate for gate in event.gates if not gate.passed]
        row.stage = "evaluated"
        row.detail = "all gates passed" if event.passed else f"failed gates: {', '.join(failed)}"
    elif isinstance(event, ModelRegistered):
        row.versions.append(event.version)
        if event.passed_evaluation:
            row.challenger = event.version
            row.stage, row.detail = "challenger", f"v{event.version} registered, signed"
        else:
            row.stage = "rejected"
            row.detail = f"v{event.version} registered as failed; {row.detail}"
    elif isinstance(event, ModelPromoted):
        row.champion = event.version
        if row.challenger == event.version:
            row.challenger = None
        row.stage, row.detail = "champion", event.reason
    elif isinstance(event, DeploymentChanged):
        _apply_routing_table(row, event)
    elif isinstance(event, ApprovalRequested):
        row.stage = "awaiting approval"
        row.detail = f"v{event.version} waits for a signed approval by {' or '.join(event.approvers)}"
    elif isinstance(event, ApprovalRejected):
        row.detail = f"approval of v{event.version} rejected by {event.rejected_by}: {event.reason}"
    elif isinstance(event, ModelRolledBack):
        if row.challenger == event.from_version:
            row.challenger = None
        row.champion = event.to_version
        row.stage, row.detail = "rolled back", event.reason


def _apply_routing_table(row: ModelStatus, table: DeploymentChanged) -> None:
    """Show canary weights and shadows; promotions and rollbacks say the rest in their own events."""
    if table.champion is not None:
        row.champion = table.champion.version
    if table.stage == "canary" and table.challenger is not None:
        row.challenger = table.challenger.version
        row.stage = f"canary {percent(table.challenger_weight)}"
        row.detail = table.reason
    elif table.stage == "shadow" and table.shadows:
        row.challenger = table.shadows[0].version
        row.stage, row.detail = "shadow", table.reason


async def read_status(settings: ServiceSettings) -> list[ModelStatus]:
    return fold_status(await read_events(settings, LIFECYCLE_TOPICS))
