"""Predictions are published in batches, one event per model, and survive a failed publish."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from modelfleet_contracts import PredictionLogged
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_serving.prediction_log import PredictionLog


def record(request_id: str) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        version="1",
        route="champion",
        features={"x": 1.0},
        prediction=True,
        latency_ms=0.1,
        predicted_at=datetime.now(UTC),
    )


class Outbox:
    def __init__(self) -> None:
        self.events: list[PredictionLogged] = []
        self.failing = False
        self.arrived = asyncio.Event()

    async def __call__(self, event: PredictionLogged) -> None:
        if self.failing:
            raise ConnectionError("broker unreachable")
        self.events.append(event)
        self.arrived.set()


def log_for(outbox: Outbox, *, batch_size: int = 500, buffer_limit: int = 1000) -> PredictionLog:
    return PredictionLog(
        outbox, batch_size=batch_size, buffer_limit=buffer_limit, registry=CollectorRegistry()
    )


async def test_a_flush_publishes_one_event_per_model() -> None:
    outbox = Outbox()
    log = log_for(outbox)
    for request_id in ("a", "b"):
        log.append("churn", record(request_id))
    log.append("fraud", record("c"))

    assert await log.flush() == 3

    batches = {event.model: [r.request_id for r in event.predictions] for event in outbox.events}
    assert batches == {"churn": ["a", "b"], "fraud": ["c"]}
    assert len(log) == 0


async def test_records_of_a_failed_publish_are_published_by_the_next_flush() -> None:
    outbox = Outbox()
    log = log_for(outbox)
    log.append("churn", record("a"))
    outbox.failing = True

    assert await log.flush() == 0
    assert len(log) == 1

    outbox.failing = False
    log.append("churn", record("b"))
    assert await log.flush() == 2
    assert [r.request_id for r in outbox.events[0].predictions] == ["a", "b"]


async def test_a_full_buffer_drops_the_oldest_records_and_counts_them() -> None:
    log = log_for(Outbox(), batch_size=2, buffer_limit=2)
    for request_id in ("a", "b", "c"):
        log.append("churn", record(request_id))
    assert len(log) == 2
    assert log.dropped._value.get() == 1


async def test_a_full_batch_is_flushed_without_waiting_for_the_interval() -> None:
    outbox = Outbox()
    log = log_for(outbox, batch_size=2)
    flusher = asyncio.create_task(log.run(interval_seconds=3600))
    try:
        log.append("churn", record("a"))
        log.append("churn", record("b"))
        await asyncio.wait_for(outbox.arrived.wait(), timeout=30)
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
    assert [r.request_id for r in outbox.events[0].predictions] == ["a", "b"]
