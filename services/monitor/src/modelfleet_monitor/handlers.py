"""Handlers of monitor: one function per consumed event, plus the periodic health report.

Predictions and labels only update the in-memory `HealthTracker`; `report_health` turns the
windows into `ModelHealthReported` (the deployer's rollout input) and `SloBreached` events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from modelfleet_common.logs import log_event
from modelfleet_contracts import (
    DatasetVersionCreated,
    GroundTruthObserved,
    ModelHealthReported,
    ModelSpecRetired,
    PredictionLogged,
    RiskPolicy,
    SloBreached,
    SpecEvent,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MonitoringPolicy, RiskClass

from .health import (
    HealthSummary,
    HealthTracker,
    LiveTask,
    effective_monitoring,
    live_task_of_template,
    slo_violations,
)

logger = logging.getLogger("modelfleet.monitor")

PRODUCER = "monitor"

#: Risk class assumed for a model whose spec the monitor has not seen (yet).
DEFAULT_RISK_CLASS: RiskClass = "medium"


@dataclass(frozen=True)
class ModelProfile:
    """What the monitor needs from a model's spec: its SLOs and how its labels are scored."""

    risk_class: RiskClass = DEFAULT_RISK_CLASS
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    live_task: LiveTask = "classification"


@dataclass
class MonitorDeps:
    """Everything the handlers use; tests pass a fake publisher and a fake clock."""

    tracker: HealthTracker
    publish: Callable[[Event], Awaitable[None]]
    policies: Mapping[RiskClass, RiskPolicy]
    clock: Callable[[], datetime]
    slo_min_requests: int = 1
    models: dict[str, ModelProfile] = field(default_factory=dict)

    def slos(self, model: str) -> MonitoringPolicy:
        """The monitoring policy of a model: its risk class's, overridden by its spec."""
        profile = self.models.get(model, ModelProfile())
        return effective_monitoring(self.policies[profile.risk_class].spec.monitoring, profile.monitoring)


async def record_predictions(event: PredictionLogged, deps: MonitorDeps) -> None:
    """Count a batch of served predictions in their versions' windows; redeliveries count once."""
    fresh = deps.tracker.add_predictions(event.model, event.predictions, now=deps.clock().timestamp())
    if fresh < len(event.predictions):
        logger.info(
            "ignored predictions already counted",
            extra={"model": event.model, "duplicates": len(event.predictions) - fresh},
        )


async def record_ground_truth(event: GroundTruthObserved, deps: MonitorDeps) -> None:
    """Score the predictions a label belongs to, for the live metric of their versions."""
    task = deps.models.get(event.model, ModelProfile()).live_task
    scored = deps.tracker.add_label(
        event.model, event.request_id, event.label, task, now=deps.clock().timestamp()
    )
    if scored == 0:
        log_event(logger, "label matched no waiting prediction (unknown, evicted or already scored)", event)


async def note_model_spec(event: SpecEvent, deps: MonitorDeps) -> None:
    """Learn a model's risk class and SLO overrides; forget a retired model."""
    if isinstance(event, ModelSpecRetired):
        deps.models.pop(event.model, None)
        deps.tracker.forget(event.model)
        log_event(logger, "model retired: stopped monitoring it", event)
        return
    spec = event.spec
    deps.models[event.model] = ModelProfile(
        risk_class=spec.metadata.risk_class,
        monitoring=spec.spec.monitoring,
        live_task=live_task_of_template(spec.spec.pipeline.template),
    )


async def note_dataset_version_created(event: DatasetVersionCreated) -> None:
    """Receive reference profiles for drift (drift detection lands with #5)."""
    log_event(logger, "received", event)


async def report_health(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Publish the health of every version that saw traffic since the last report, and its breaches.

    Returns the events published, in order: each version's `ModelHealthReported`, followed by a
    `SloBreached` per SLO it broke (caused by the report).
    """
    published: list[Event] = []
    for summary in deps.tracker.drain(now):
        report = _health_report(summary, now)
        await deps.publish(report)
        published.append(report)
        for violation in slo_violations(
            summary, deps.slos(summary.key.model), min_requests=deps.slo_min_requests
        ):
            breach = SloBreached(
                producer=PRODUCER,
                occurred_at=now,
                **report.caused(),
                model=summary.key.model,
                version=summary.key.version,
                window_start=summary.window_start,
                window_end=summary.window_end,
                slo=violation.slo,
                objective=violation.objective,
                observed=violation.observed,
            )
            await deps.publish(breach)
            published.append(breach)
            log_event(
                logger,
                f"SLO {violation.slo} breached: {violation.observed:g} > {violation.objective:g}",
                breach,
            )
    return published


def _health_report(summary: HealthSummary, now: datetime) -> ModelHealthReported:
    return ModelHealthReported(
        producer=PRODUCER,
        occurred_at=now,
        model=summary.key.model,
        version=summary.key.version,
        route=summary.key.route,
        window_start=summary.window_start,
        window_end=summary.window_end,
        requests=summary.requests,
        errors=summary.errors,
        latency_p50_ms=summary.latency_p50_ms,
        latency_p95_ms=summary.latency_p95_ms,
        latency_p99_ms=summary.latency_p99_ms,
        labelled=summary.labelled,
        live_metric=summary.live_metric,
        live_metric_value=summary.live_metric_value,
    )
