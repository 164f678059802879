"""ingest: wiring of the broker, subscribers, publishers and the periodic feedback flush."""

import asyncio
import contextlib
import logging

from modelfleet_common.idempotency import durable_idempotency
from modelfleet_common.service import FleetService
from modelfleet_common.state import StateEngine
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
    MODEL_SPECS,
    PREDICTION_LOGS,
)

from . import handlers
from .config import IngestSettings
from .feedback_state import SqliteFeedbackState
from .state import SqliteIngestState
from .store import DatasetStore

logger = logging.getLogger("modelfleet.ingest")

settings = IngestSettings()
service = FleetService("ingest", settings)
deps = handlers.IngestDeps(
    store=DatasetStore(
        settings.data_dir,
        allowed_roots=settings.ingest_allowed_roots,
        max_batch_bytes=settings.ingest_max_bytes,
    ),
    state=SqliteIngestState(settings.state_dir / "ingest-state.sqlite"),
    handled=durable_idempotency(
        StateEngine.sqlite(settings.state_dir / "ingest-handled.sqlite"), settings.state
    ),
    publish=service.publisher(DATASET_VERSIONS, DATASET_REJECTIONS),
    feedback=SqliteFeedbackState(settings.state_dir / "ingest-feedback.sqlite"),
    spec_wait=handlers.SpecWait(
        total_seconds=settings.spec_wait_seconds,
        first_interval_seconds=settings.spec_wait_first_interval_seconds,
    ),
    feedback_policy=handlers.FeedbackPolicy(
        ttl_seconds=settings.ingest_feedback_ttl_seconds,
        max_waiting_per_model=settings.ingest_feedback_max_waiting,
        min_rows=settings.ingest_feedback_min_rows,
    ),
    feedback_metrics=handlers.FeedbackMetrics(service.metrics.registry),
)


@service.subscriber(DATASET_SPECS)
async def on_dataset_spec_submitted(event: DatasetSpecSubmitted) -> None:
    await handlers.record_dataset_spec(event, deps)


@service.subscriber(DATA_BATCHES)
async def on_data_batch_submitted(event: DataBatchSubmitted) -> None:
    await handlers.ingest_batch(event, deps)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event, deps)


@service.subscriber(PREDICTION_LOGS)
async def on_prediction_logged(event: PredictionLogged) -> None:
    await handlers.record_predictions(event, deps)


@service.subscriber(GROUND_TRUTH)
async def on_ground_truth_observed(event: GroundTruthObserved) -> None:
    await handlers.record_ground_truth(event, deps)


async def materialize_periodically(interval_seconds: float) -> None:
    """Flush joined feedback every `interval_seconds` until cancelled; a failed flush keeps its
    rows claimed for the next one."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await handlers.materialize_feedback(deps.clock(), deps)
        except Exception:
            logger.exception("feedback flush failed")


app = service.app()
_flusher: set[asyncio.Task[None]] = set()


@app.after_startup
async def start_flushing() -> None:
    _flusher.add(asyncio.create_task(materialize_periodically(settings.ingest_feedback_seconds)))


@app.on_shutdown
async def stop_flushing() -> None:
    for task in list(_flusher):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _flusher.discard(task)
