"""Handlers of ingest: one function per consumed event."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_contracts import (
    ColumnInfo,
    DataBatchSubmitted,
    DataProblem,
    DatasetVersionCreated,
    DatasetVersionRejected,
)
from modelfleet_contracts.envelope import Event

from .domain import infer_format
from .store import LocalDatasetStore, UnreadableBatch

logger = logging.getLogger("modelfleet.ingest")
SERVICE = "ingest"


@dataclass
class IngestDeps:
    store: LocalDatasetStore
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]


async def ingest_batch(event: DataBatchSubmitted, deps: IngestDeps) -> None:
    """Store the batch as a dataset version (once per content hash) or reject and quarantine it."""
    try:
        fmt = infer_format(event.uri, event.format)
        table = deps.store.read_batch(event.uri, fmt)
    except (ValueError, UnreadableBatch) as error:
        reason = str(error)
        await once(deps.handled, f"rejected:{event.event_id}", lambda: _reject(event, reason, deps))
        return

    stored = deps.store.put_version(event.dataset, table)

    async def announce() -> None:
        await deps.publish(
            DatasetVersionCreated(
                producer=SERVICE,
                dataset=event.dataset,
                version=stored.version,
                uri=stored.uri,
                row_count=table.num_rows,
                columns=[ColumnInfo(name=f.name, dtype=str(f.type)) for f in table.schema],
                source_uri=event.uri,
                **event.caused(),
            )
        )
        log_event(logger, "dataset version created", event)

    # Natural key: the same data arriving twice (or redelivered) is one version, announced once.
    if not await once(deps.handled, f"version:{event.dataset}:{stored.version}", announce):
        log_event(logger, "dataset version already exists; nothing to do", event)


async def _reject(event: DataBatchSubmitted, reason: str, deps: IngestDeps) -> None:
    quarantined = deps.store.quarantine(event.dataset, event.uri)
    await deps.publish(
        DatasetVersionRejected(
            producer=SERVICE,
            dataset=event.dataset,
            source_uri=event.uri,
            quarantine_uri=quarantined,
            problems=[DataProblem(code="unreadable", message=reason)],
            **event.caused(),
        )
    )
    log_event(logger, "batch rejected and quarantined", event)
