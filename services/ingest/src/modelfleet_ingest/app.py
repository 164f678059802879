"""ingest: wiring of the broker, subscribers, publishers, the periodic feedback flush and the
periodic publish of joined labels (dependencies: `bootstrap`)."""

from functools import cache

from modelfleet_common.service import FleetService
from modelfleet_contracts import (
    DataBatchSubmitted,
    DatasetSpecSubmitted,
    GroundTruthObserved,
    PredictionLogged,
    SpecEvent,
)
from modelfleet_contracts.topics import (
    DATA_BATCHES,
    DATASET_REJECTIONS,
    DATASET_SPECS,
    DATASET_VERSIONS,
    GROUND_TRUTH,
    LABELED_PREDICTIONS,
    MODEL_SPECS,
    PREDICTION_LOGS,
)

from . import handlers
from .bootstrap import bootstrap
from .config import IngestSettings

settings = IngestSettings()
service = FleetService("ingest", settings)
publish = service.publisher(DATASET_VERSIONS, DATASET_REJECTIONS, LABELED_PREDICTIONS)
feedback_metrics = handlers.FeedbackMetrics(service.metrics.registry)


@cache
def dependencies() -> handlers.IngestDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, feedback_metrics=feedback_metrics)


@service.subscriber(DATASET_SPECS)
async def on_dataset_spec_submitted(event: DatasetSpecSubmitted) -> None:
    await handlers.record_dataset_spec(event, dependencies())


@service.subscriber(DATA_BATCHES)
async def on_data_batch_submitted(event: DataBatchSubmitted) -> None:
    await handlers.ingest_batch(event, dependencies())


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event, dependencies())


@service.subscriber(PREDICTION_LOGS)
async def on_prediction_logged(event: PredictionLogged) -> None:
    await handlers.record_predictions(event, dependencies())


@service.subscriber(GROUND_TRUTH)
async def on_ground_truth_observed(event: GroundTruthObserved) -> None:
    await handlers.record_ground_truth(event, dependencies())


async def flush_feedback() -> None:
    """Append joined feedback to its datasets; a failed flush keeps its rows claimed for the next."""
    deps = dependencies()
    await handlers.materialize_feedback(deps.clock(), deps)


async def publish_labeled() -> None:
    """Publish the joins whose immediate publish failed (or whose replica died before it)."""
    await handlers.publish_labeled(dependencies())


service.every(settings.ingest_feedback_seconds, flush_feedback, name="feedback-flush")
service.every(settings.ingest_feedback_seconds, publish_labeled, name="labeled-publish")
app = service.app()


@app.on_startup
def build_dependencies() -> None:
    """Open the state engine and the dataset store before consuming: an unreachable engine stops
    the service, naming the variable to fix."""
    dependencies()


@app.after_shutdown
def close_state() -> None:
    """Give the state engine's connections back once the last event and flush are done."""
    if dependencies.cache_info().currsize and (engine := dependencies().state_engine) is not None:
        engine.close()
