"""trainer: wiring of the broker, subscribers and publishers (dependencies: `bootstrap`)."""

import functools
from typing import Any

from modelfleet_common.service import FleetService
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    PerformanceDegraded,
    RetrainRequested,
    SpecEvent,
)
from modelfleet_contracts.topics import (
    DATASET_VERSIONS,
    DRIFT,
    MODEL_SPECS,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
    TRAINING_FAILED,
    TRAINING_FINISHED,
    TRAINING_STARTED,
)

from . import handlers
from .bootstrap import bootstrap
from .config import TrainerSettings
from .metrics import TrainerMetrics

settings = TrainerSettings()
service = FleetService("trainer", settings)
# Declared at import so the AsyncAPI document shows what trainer produces.
publish = service.publisher(TRAINING_STARTED, TRAINING_FINISHED, TRAINING_FAILED, RETRAIN_REQUESTS)
metrics = TrainerMetrics(service.metrics.registry)


@functools.cache
def dependencies() -> handlers.TrainerDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, metrics=metrics)


# Several partitions at once, and time for the trainings one event triggers before Kafka
# considers the consumer gone.
consumer_options: dict[str, Any] = {
    "max_workers": settings.consumer_workers,
    "max_poll_interval_ms": settings.max_poll_interval_seconds * 1000,
}


@service.subscriber(MODEL_SPECS, **consumer_options)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.apply_model_spec(event, dependencies())


@service.subscriber(DATASET_VERSIONS, **consumer_options)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.record_dataset_version(event, dependencies())


@service.subscriber(RETRAIN_REQUESTS, **consumer_options)
async def on_retrain_requested(event: RetrainRequested) -> None:
    await handlers.retrain_model(event, dependencies())


@service.subscriber(DRIFT, max_workers=settings.consumer_workers)
async def on_drift_detected(event: DriftDetected) -> None:
    await handlers.retrain_on_drift(event, dependencies())


@service.subscriber(PERFORMANCE_DEGRADATIONS, max_workers=settings.consumer_workers)
async def on_performance_degraded(event: PerformanceDegraded) -> None:
    await handlers.retrain_on_decay(event, dependencies())


app = service.app()


@app.on_startup
async def open_state() -> None:
    # Fail at startup, not on the first event, when the state directory is unusable.
    dependencies()


@app.after_shutdown
async def stop_training_runner() -> None:
    # After the broker stopped, so no handler still waits on a training.
    if dependencies.cache_info().currsize:
        await dependencies().coordinator.runner.close()
