"""trainer: wiring of the broker, subscribers and publishers."""

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
from .config import TrainerSettings

service = FleetService("trainer", TrainerSettings())
# Declared now so the AsyncAPI document shows what trainer produces; handlers use it from #3-#5.
publish = service.publisher(TRAINING_STARTED, TRAINING_FINISHED, TRAINING_FAILED)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event)


@service.subscriber(DATASET_VERSIONS)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.note_dataset_version_created(event)


@service.subscriber(RETRAIN_REQUESTS)
async def on_retrain_requested(event: RetrainRequested) -> None:
    await handlers.note_retrain_requested(event)


@service.subscriber(DRIFT)
async def on_drift_detected(event: DriftDetected) -> None:
    await handlers.note_drift_detected(event)


@service.subscriber(PERFORMANCE_DEGRADATIONS)
async def on_performance_degraded(event: PerformanceDegraded) -> None:
    await handlers.note_performance_degraded(event)


app = service.app()
