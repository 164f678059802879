"""monitor: wiring of the broker, subscribers, publishers and the periodic health report."""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import cache

from modelfleet_common.policies import load_policies
from modelfleet_common.service import FleetService
from modelfleet_common.state import open_service_state
from modelfleet_contracts import (
    DatasetVersionCreated,
    DeploymentChanged,
    GroundTruthObserved,
    ModelArtifactRefused,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    PredictionLogged,
    SpecEvent,
    TrainingFinished,
)
from modelfleet_contracts.topics import (
    ARTIFACT_REFUSALS,
    DATASET_VERSIONS,
    DEPLOYMENTS,
    DRIFT,
    GROUND_TRUTH,
    MODEL_HEALTH,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_REVIEWS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    PERFORMANCE_DEGRADATIONS,
    PREDICTION_LOGS,
    SLO_BREACHES,
    TRAINING_FINISHED,
)

from . import handlers
from .config import MonitorSettings
from .health import HealthTracker
from .metrics import MonitorMetrics
from .references import FsspecProfiles, ReferenceCache, VersionFacts

logger = logging.getLogger("modelfleet.monitor")

settings = MonitorSettings()
service = FleetService("monitor", settings)
publish = service.publisher(DRIFT, PERFORMANCE_DEGRADATIONS, SLO_BREACHES, MODEL_HEALTH, MODEL_REVIEWS)


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@cache
def dependencies() -> handlers.MonitorDeps:
    """The handlers' dependencies, built once (by the startup hook, or by the first event in tests)."""
    policies = load_policies(settings.policy_dir)
    logger.info(
        "risk policies loaded",
        extra={"policy_dir": str(settings.policy_dir.resolve()), "risk_classes": sorted(policies)},
    )
    return handlers.MonitorDeps(
        tracker=HealthTracker(
            max_buffered_per_model=settings.monitor_label_buffer_size,
            label_ttl_seconds=settings.monitor_label_ttl_seconds,
            started_at=utc_now(),
        ),
        publish=publish,
        policies=policies,
        clock=utc_now,
        slo_min_requests=settings.monitor_slo_min_requests,
        facts=VersionFacts(open_service_state(settings, "monitor").key_values()),
        references=ReferenceCache(FsspecProfiles(), capacity=settings.monitor_reference_cache_size),
        metrics=MonitorMetrics(service.metrics.registry),
    )


@service.subscriber(PREDICTION_LOGS)
async def on_prediction_logged(event: PredictionLogged) -> None:
    await handlers.record_predictions(event, dependencies())


@service.subscriber(GROUND_TRUTH)
async def on_ground_truth_observed(event: GroundTruthObserved) -> None:
    await handlers.record_ground_truth(event, dependencies())


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event, dependencies())


@service.subscriber(DATASET_VERSIONS)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.note_dataset_version_created(event, dependencies())


@service.subscriber(TRAINING_FINISHED)
async def on_training_finished(event: TrainingFinished) -> None:
    await handlers.note_training_finished(event, dependencies())


@service.subscriber(MODEL_REGISTRATIONS)
async def on_model_registered(event: ModelRegistered) -> None:
    await handlers.note_model_registered(event, dependencies())


@service.subscriber(DEPLOYMENTS)
async def on_deployment_changed(event: DeploymentChanged) -> None:
    await handlers.note_deployment_changed(event, dependencies())


@service.subscriber(MODEL_PROMOTIONS)
async def on_model_promoted(event: ModelPromoted) -> None:
    await handlers.note_model_promoted(event, dependencies())


@service.subscriber(MODEL_ROLLBACKS)
async def on_model_rolled_back(event: ModelRolledBack) -> None:
    await handlers.note_model_rolled_back(event, dependencies())


@service.subscriber(ARTIFACT_REFUSALS)
async def on_artifact_refused(event: ModelArtifactRefused) -> None:
    await handlers.note_artifact_refused(event, dependencies())


async def report_periodically(interval_seconds: float) -> None:
    """Publish health every `interval_seconds` until cancelled; a failed report does not stop it."""
    while True:
        await asyncio.sleep(interval_seconds)
        deps = dependencies()
        try:
            await handlers.report_health(deps.clock(), deps)
        except Exception:
            # The window is already closed: its traffic is lost from reports, the next ones go on.
            logger.exception("health report failed")


app = service.app()
_reporter: set[asyncio.Task[None]] = set()


@app.on_startup
async def load_dependencies() -> None:
    # Fail at startup, not on the first event, when a policy file is missing or invalid.
    dependencies()


@app.after_startup
async def start_reporting() -> None:
    _reporter.add(asyncio.create_task(report_periodically(settings.monitor_report_seconds)))


@app.on_shutdown
async def stop_reporting() -> None:
    for task in list(_reporter):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _reporter.discard(task)
