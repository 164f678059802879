"""monitor: wiring of the broker, subscribers and publishers."""

from modelfleet_common.service import FleetService
from modelfleet_contracts import DatasetVersionCreated, GroundTruthObserved, PredictionLogged
from modelfleet_contracts.topics import (
    DATASET_VERSIONS,
    DRIFT,
    GROUND_TRUTH,
    MODEL_HEALTH,
    PERFORMANCE_DEGRADATIONS,
    PREDICTION_LOGS,
    SLO_BREACHES,
)

from . import handlers
from .config import MonitorSettings

service = FleetService("monitor", MonitorSettings())
# Declared now so the AsyncAPI document shows what monitor produces; handlers use it from #3-#5.
publish = service.publisher(DRIFT, PERFORMANCE_DEGRADATIONS, SLO_BREACHES, MODEL_HEALTH)


@service.subscriber(PREDICTION_LOGS)
async def on_prediction_logged(event: PredictionLogged) -> None:
    await handlers.note_prediction_logged(event)


@service.subscriber(GROUND_TRUTH)
async def on_ground_truth_observed(event: GroundTruthObserved) -> None:
    await handlers.note_ground_truth_observed(event)


@service.subscriber(DATASET_VERSIONS)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.note_dataset_version_created(event)


app = service.app()
