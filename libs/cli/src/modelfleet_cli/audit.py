"""`modelfleet audit`: every decision about one model, automatic or human, with its trigger.

Each entry says what happened, why (the numbers of the triggering event), who decided and when,
and links to the entry that caused it (by `causation_id`), so a reader can follow a drift finding
through a retrain, an evaluation and a canary to a promotion, or see which gates kept a retrained
candidate from being promoted. Read from Kafka like `status`: the topics are the record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from modelfleet_common.humanize import duration, number, percent, slo_value
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DatasetVersionCreated,
    DeploymentChanged,
    DriftDetected,
    ModelArtifactRefused,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PerformanceDegraded,
    RetrainRequested,
    RollbackRequested,
    SloBreached,
    TrainingFailed,
    TrainingFinished,
    TrainingStarted,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.evaluation import GateResult
from modelfleet_contracts.monitoring import FeatureDrift, ModelReviewed
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    APPROVALS_GRANTED,
    APPROVALS_REJECTED,
    ARTIFACT_REFUSALS,
    DATASET_VERSIONS,
    DEPLOYMENTS,
    DRIFT,
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_REVIEWS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
    ROLLBACK_REQUESTS,
    SLO_BREACHES,
    TRAINING_FAILED,
    TRAINING_FINISHED,
    TRAINING_STARTED,
    Topic,
)

from .fleet_state import read_events

#: In this order: events sharing a timestamp keep it (the sort is stable), so triggers come before
#: the decisions they cause and, as in `status`, a routing table before the promotion or rollback
#: that explains it. Model health (periodic) and prediction logs are left out: they are not decisions.
AUDIT_TOPICS: tuple[Topic, ...] = (
    MODEL_SPECS,
    DATASET_VERSIONS,
    DRIFT,
    PERFORMANCE_DEGRADATIONS,
    SLO_BREACHES,
    MODEL_REVIEWS,
    RETRAIN_REQUESTS,
    TRAINING_STARTED,
    TRAINING_FINISHED,
    TRAINING_FAILED,
    MODEL_EVALUATIONS,
    MODEL_REGISTRATIONS,
    ARTIFACT_REFUSALS,
    ROLLBACK_REQUESTS,
    APPROVALS_GRANTED,
    DEPLOYMENTS,
    APPROVAL_REQUESTS,
    APPROVALS_REJECTED,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
)

_AUDITED: frozenset[type[Event]] = frozenset(c for topic in AUDIT_TOPICS for c in topic.contracts)

#: Drift methods whose statistic is a p-value: the feature drifted when it is *below* the threshold.
_P_VALUE_METHODS = frozenset({"ks", "chi_square"})


@dataclass(frozen=True)
class AuditEntry:
    """One decision about a model, or the finding that triggered one."""

    at: datetime
    what: str
    why: str
    who: str
    event_type: str
    event_id: str
    causation_id: str | None
    correlation_id: str
    version: str | None = None
    caused_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601."""
        return {
            "at": self.at.isoformat(),
            "what": self.what,
            "why": self.why,
            "who": self.who,
            "version": self.version,
            "caused_by": self.caused_by,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
        }


def concerns_model(model: str, events: list[Event]) -> bool:
    """Whether any event names `model` (dataset versions do not: they belong to datasets)."""
    return any(getattr(event, "model", None) == model for event in events)


def audit_trail(model: str, events: list[Event]) -> list[AuditEntry]:
    """Every decision about `model` and its triggers, oldest first, each linked to its cause.

    `events` are those of `AUDIT_TOPICS`, oldest first with ties in topic order (as `read_events`
    returns them). Dataset versions are kept only when a training of the model used them: a dataset
    shared by many models gets a feedback version every few seconds, which says nothing about this
    model until it trains on one. Routing tables that change
    nothing a reader would see (same stage, versions and weights) are left out.
    """
    own = [event for event in events if getattr(event, "model", None) == model]
    datasets = _datasets_of(own)
    trained_on = {
        event.dataset_version
        for event in own
        if isinstance(event, TrainingStarted | TrainingFinished | TrainingFailed)
    }
    entries: list[AuditEntry] = []
    last_table: tuple[object, ...] | None = None
    for event in sorted(events, key=lambda e: e.occurred_at):
        if isinstance(event, DatasetVersionCreated):
            if event.dataset in datasets and event.version in trained_on:
                entries.append(_entry(event))
            continue
        if type(event) not in _AUDITED or getattr(event, "model", None) != model:
            continue
        if isinstance(event, DeploymentChanged):
            visible = _visible_routing(event)
            if visible == last_table:
                continue
            last_table = visible
        entries.append(_entry(event))
    what_of = {entry.event_id: entry.what for entry in entries}
    return [
        _with_cause(entry, what_of.get(entry.causation_id)) if entry.causation_id else entry
        for entry in entries
    ]


def _with_cause(entry: AuditEntry, cause: str | None) -> AuditEntry:
    return entry if cause is None else replace(entry, caused_by=cause)


def _datasets_of(own: list[Event]) -> set[str]:
    """Datasets the model is bound to by any of its specs, or was trained on."""
    names: set[str] = set()
    for event in own:
        if isinstance(event, ModelSpecSubmitted):
            names.add(event.spec.spec.dataset.name)
        elif isinstance(event, TrainingStarted | TrainingFinished | TrainingFailed):
            names.add(event.dataset)
    return names


def _visible_routing(table: DeploymentChanged) -> tuple[object, ...]:
    """What serving does with a table; the deployer's bookkeeping fields are not part of it."""
    return (
        table.stage,
        table.champion.version if table.champion else None,
        table.challenger.version if table.challenger else None,
        table.challenger_weight,
        tuple(shadow.version for shadow in table.shadows),
        table.pending_approval,
    )


def _entry(event: Event) -> AuditEntry:
    what, why, version = _describe(event)
    return AuditEntry(
        at=event.occurred_at,
        what=what,
        why=why,
        who=_who(event),
        event_type=event.event_type,
        event_id=str(event.event_id),
        causation_id=str(event.causation_id) if event.causation_id else None,
        correlation_id=event.correlation_id,
        version=version,
    )


def _who(event: Event) -> str:
    """The producer, and the person or service the event names as deciding, if another one."""
    for field, label in (
        ("decided_by", "decided by"),
        ("approver", "approver"),
        ("rejected_by", "rejected by"),
    ):
        person = getattr(event, field, None)
        if person and person != event.producer:
            return f"{event.producer} ({label} {person})"
    return event.producer


def _describe(event: Event) -> tuple[str, str, str | None]:
    """(what, why, version) of one event."""
    if isinstance(event, DriftDetected):
        return "drift detected", _drift_why(event), event.version
    if isinstance(event, PerformanceDegraded):
        side = "<" if event.observed < event.threshold else ">"
        why = (
            f"live {event.metric} {number(event.observed)} {side} bound {number(event.threshold)} "
            f"(baseline {number(event.baseline)}, {event.labelled_rows} labels)"
        )
        return "performance degraded", why, event.version
    if isinstance(event, SloBreached):
        observed, objective = slo_value(event.slo, event.observed), slo_value(event.slo, event.objective)
        why = f"{event.slo} {observed} vs objective {objective}"
        return f"SLO breached: {event.slo}", why, event.version
    if isinstance(event, ModelReviewed):
        return f"review: {event.decision}", event.reason, event.champion
    if isinstance(event, DatasetVersionCreated):
        return _dataset_version(event)
    if isinstance(event, ModelSpecSubmitted):
        body = event.spec.spec
        why = (
            f"dataset {body.dataset.name}@{body.dataset.version}, "
            f"{body.pipeline.template}@{body.pipeline.version}, risk {event.spec.metadata.risk_class}"
        )
        return f"spec applied (rev {event.revision[:12]})", why, None
    if isinstance(event, ModelSpecRetired):
        return "retired", event.reason, None
    if isinstance(event, RetrainRequested):
        why = f"{event.reason}: {event.detail}" if event.detail else event.reason
        return "retrain requested", why, None
    if isinstance(event, TrainingStarted | TrainingFinished | TrainingFailed):
        return _training(event)
    if isinstance(event, ModelEvaluated):
        return _evaluation(event)
    if isinstance(event, ModelRegistered):
        if event.passed_evaluation:
            why = f"passed evaluation; run {event.run_id[:12]}, signed by key {event.signing_key_id}"
        else:
            why = f"failed evaluation: kept for the record, not promoted; run {event.run_id[:12]}"
        return f"registered v{event.version}", why, event.version
    if isinstance(event, ModelArtifactRefused):
        return f"artifact refused v{event.version}", event.reason, event.version
    if isinstance(event, DeploymentChanged):
        return _routing(event)
    if isinstance(event, ApprovalRequested):
        why = f"risk {event.risk_class} needs one of: {', '.join(event.approvers)}"
        if event.evidence:
            why = f"{why}; {event.evidence}"
        return f"approval requested v{event.version}", why, event.version
    if isinstance(event, ApprovalGranted):
        return f"approval granted v{event.version}", event.comment or "signed", event.version
    if isinstance(event, ApprovalRejected):
        return f"approval rejected v{event.version}", event.reason, event.version
    if isinstance(event, RollbackRequested):
        target = f"v{event.to_version}" if event.to_version else "last known good"
        return f"rollback requested → {target}", event.reason, event.to_version
    if isinstance(event, ModelPromoted):
        why = event.reason
        if event.previous_version:
            why = f"{why} (replaces v{event.previous_version})"
        return f"promoted v{event.version}", why, event.version
    if isinstance(event, ModelRolledBack):
        target = f"v{event.to_version}" if event.to_version else "nothing"
        return f"rolled back v{event.from_version} → {target}", event.reason, event.from_version
    return event.event_type, "", getattr(event, "version", None)


def _drift_why(event: DriftDetected) -> str:
    share = f"drift share {event.drift_share:.2f}"
    if event.drift_share_threshold is not None:
        side = "≥" if event.drift_share >= event.drift_share_threshold else "<"
        share = f"{share} {side} {event.drift_share_threshold:.2f}"
    share = f"{share} over {event.rows} rows"
    drifted = [_feature(feature) for feature in event.features if feature.drifted]
    why = f"{share}: {', '.join(drifted)}" if drifted else f"{share}: no feature drifted"
    if event.prediction_drifted:
        why = f"{why}; predictions drifted"
    return why


def _feature(drift: FeatureDrift) -> str:
    side = "<" if drift.method in _P_VALUE_METHODS else ">"
    return f"{drift.feature} {drift.method} {number(drift.statistic)} {side} {number(drift.threshold)}"


def _dataset_version(event: DatasetVersionCreated) -> tuple[str, str, str | None]:
    if event.origin == "feedback":
        added = f", {event.feedback_rows} from live feedback" if event.feedback_rows is not None else ""
        return (
            f"feedback data {event.dataset}@{event.version[:12]}",
            f"{event.row_count} rows{added}",
            None,
        )
    return (
        f"data {event.dataset}@{event.version[:12]}",
        f"{event.row_count} rows from {event.source_uri}",
        None,
    )


def _training(event: TrainingStarted | TrainingFinished | TrainingFailed) -> tuple[str, str, str | None]:
    inputs = f"{event.dataset}@{event.dataset_version[:12]}, {event.template}@{event.template_version}"
    if isinstance(event, TrainingStarted):
        return "training started", f"{inputs}, run {event.run_id[:12]}, attempt {event.attempt}", None
    if isinstance(event, TrainingFinished):
        metrics = ", ".join(f"{name} {number(value)}" for name, value in sorted(event.metrics.items()))
        why = f"{inputs}, run {event.run_id[:12]} in {duration(event.duration_seconds)}"
        return "training finished", f"{why}; {metrics}" if metrics else why, None
    why = f"{event.failure}: {event.error_type}: {event.message} (attempt {event.attempt}; {inputs})"
    return "training failed", why, None


def _evaluation(event: ModelEvaluated) -> tuple[str, str, str | None]:
    against = f" against champion v{event.champion_version}" if event.champion_version else ""
    if event.passed:
        gates = "; ".join(_gate(gate) for gate in event.gates)
        return "evaluation passed", f"all {len(event.gates)} gates passed{against}: {gates}", None
    failed = [gate for gate in event.gates if not gate.passed]
    why = f"not promoted: {len(failed)} of {len(event.gates)} gates failed{against}: "
    return "evaluation failed", why + "; ".join(_gate(gate) for gate in failed), None


def _gate(gate: GateResult) -> str:
    text = gate.gate
    if gate.value is not None:
        text = f"{text} {number(gate.value)}"
    if gate.threshold is not None:
        text = f"{text} (threshold {number(gate.threshold)})"
    return f"{text}: {gate.detail}" if gate.detail else text


def _routing(table: DeploymentChanged) -> tuple[str, str, str | None]:
    champion = table.champion.version if table.champion else None
    challenger = table.challenger.version if table.challenger else None
    parts = [f"champion v{champion}" if champion else "no champion"]
    if challenger:
        parts.append(f"challenger v{challenger} at {percent(table.challenger_weight)}")
    if table.shadows:
        parts.append(f"shadows {', '.join(f'v{s.version}' for s in table.shadows)}")
    if table.pending_approval:
        parts.append(f"v{table.pending_approval} awaits approval")
    if table.reason:
        parts.append(table.reason)
    version: str | None
    if table.stage == "canary" and challenger:
        what, version = f"canary v{challenger} {percent(table.challenger_weight)}", challenger
    elif table.stage == "shadow" and table.shadows:
        what, version = f"shadow v{table.shadows[0].version}", table.shadows[0].version
    elif table.stage == "awaiting_approval" and table.pending_approval:
        what, version = f"routing: v{table.pending_approval} awaits approval", table.pending_approval
    else:
        what, version = f"routing: {table.stage.replace('_', ' ')}", champion
    return what, "; ".join(parts), version


async def read_audit_events(settings: ServiceSettings) -> list[Event]:
    """Every event of `AUDIT_TOPICS`, oldest first."""
    return await read_events(settings, AUDIT_TOPICS)
