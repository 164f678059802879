"""ingest's wiring: builds its ports (state engine, dataset store, idempotency marks, Kafka
publisher, clock) once.

    deps = bootstrap(settings, publish=publish)                                   # the service
    deps = bootstrap(settings, publish=fake, engine=StateEngine.sqlite(tmp), clock=lambda: NOW)

Nothing here runs at import: the app calls it from its startup hook, so an unreachable state
engine stops the service naming the variable to fix. Every replica of ingest shares its state
engine (`FLEET_STATE_URL`: its schema on PostgreSQL; a SQLite file in the state dir for one
replica) and its dataset store (`FLEET_DATA_DIR`, see `store`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from modelfleet_common.idempotency import IdempotencyStore, durable_idempotency
from modelfleet_common.state import StateEngine, open_service_state
from modelfleet_contracts.envelope import Event

from .config import IngestSettings
from .feedback_state import SqlFeedbackState
from .handlers import FeedbackMetrics, FeedbackPolicy, IngestDeps, SpecWait, utc_now
from .legacy import adopt_legacy_state
from .state import SqlIngestState
from .store import DatasetStore

logger = logging.getLogger("modelfleet.ingest")

SERVICE = "ingest"


def bootstrap(
    settings: IngestSettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    engine: StateEngine | None = None,
    store: DatasetStore | None = None,
    handled: IdempotencyStore | None = None,
    feedback_metrics: FeedbackMetrics | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> IngestDeps:
    """The handlers' dependencies; any port given replaces the real one.

    The dataset locks are the state engine's: across replicas on PostgreSQL (advisory locks), this
    process's on SQLite.
    """
    if engine is None:
        engine = open_service_state(settings, SERVICE)
        # An ingest from before the state engine left its state in files of the state dir.
        adopt_legacy_state(engine, settings.state_dir)
    store = store or DatasetStore(
        settings.data_dir,
        allowed_roots=settings.ingest_allowed_roots,
        max_batch_bytes=settings.ingest_max_bytes,
    )
    feedback = SqlFeedbackState(engine, claim_seconds=settings.ingest_feedback_claim_seconds)
    logger.info(
        "ingest state and dataset store opened",
        extra={
            "state_engine": engine.engine.dialect.name,
            "shared_by_replicas": engine.shared,
            "data_dir": settings.data_dir,
            "flusher": feedback.owner,
        },
    )
    return IngestDeps(
        store=store,
        state=SqlIngestState(engine),
        handled=handled or durable_idempotency(engine, settings.state),
        publish=publish,
        feedback=feedback,
        spec_wait=SpecWait(
            total_seconds=settings.spec_wait_seconds,
            first_interval_seconds=settings.spec_wait_first_interval_seconds,
        ),
        feedback_policy=FeedbackPolicy(
            ttl_seconds=settings.ingest_feedback_ttl_seconds,
            max_waiting_per_model=settings.ingest_feedback_max_waiting,
            min_rows=settings.ingest_feedback_min_rows,
        ),
        feedback_metrics=feedback_metrics or FeedbackMetrics(),
        clock=clock,
        locks=engine.locks,
        records_ttl_seconds=settings.state.idempotency_ttl_seconds,
        state_engine=engine,
    )
