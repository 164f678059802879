"""Predictions are published in batches, one event per model, and survive a failed publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from modelfleet_contracts import PredictionLogged
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_serving.prediction_log import PredictionLog


def record(request_id: str, features: dict[str, object] | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        version="1",
        route="champion",
        features=features or {"x": 1.0},
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


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[dict[str, object], dict[str, str]]] = []

    async def __call__(self, value: bytes, headers: dict[str, str]) -> None:
        self.letters.append((json.loads(value), headers))


def log_for(
    outbox: Outbox,
    *,
    batch_size: int = 500,
    buffer_limit: int = 1000,
    max_event_bytes: int = 900_000,
    dead_letters: DeadLetters | None = None,
) -> PredictionLog:
    return PredictionLog(
        outbox,
        batch_size=batch_size,
        buffer_limit=buffer_limit,
        registry=CollectorRegistry(),
        max_event_bytes=max_event_bytes,
        dead_letter=dead_letters,
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


async def test_events_are_batched_by_bytes_and_each_stays_within_the_event_limit() -> None:
    outbox = Outbox()
    log = log_for(outbox, max_event_bytes=20_000)
    for index in range(40):
        log.append("churn", record(f"r{index}", {"note": "x" * 1000}))

    assert await log.flush() == 40

    assert len(outbox.events) > 1
    assert all(len(event.model_dump_json()) <= 20_000 for event in outbox.events)
    assert [r.request_id for e in outbox.events for r in e.predictions] == [f"r{i}" for i in range(40)]


async def test_an_oversized_record_is_dead_lettered_alone_and_every_other_record_is_published() -> None:
    outbox = Outbox()
    dead_letters = DeadLetters()
    log = log_for(outbox, max_event_bytes=20_000, dead_letters=dead_letters)
    log.append("wide", record("before"))
    log.append("wide", record("huge", {"blob": "x" * 50_000}))
    log.append("wide", record("after"))
    log.append("churn", record("other"))

    assert await log.flush() == 3

    published = {(e.model, r.request_id) for e in outbox.events for r in e.predictions}
    assert published == {("wide", "before"), ("wide", "after"), ("churn", "other")}
    [(summary, headers)] = dead_letters.letters
    assert (summary["model"], summary["request_id"], summary["max_event_bytes"]) == ("wide", "huge", 20_000)
    assert "blob" not in json.dumps(summary), "the summary, not the features that are too large"
    assert headers["x-dlq-error-type"] == "RecordTooLarge"
    assert log.dead_lettered.labels("wide")._value.get() == 1
    assert len(log) == 0, "nothing is kept back for the next flush"


async def test_a_failed_publish_of_one_model_does_not_hold_back_the_others() -> None:
    published: list[PredictionLogged] = []

    async def publish(event: PredictionLogged) -> None:
        if event.model == "broken":
            raise ValueError("this model's event cannot be published")
        published.append(event)

    log = PredictionLog(publish, batch_size=500, buffer_limit=1000, registry=CollectorRegistry())
    log.append("broken", record("a"))
    log.append("churn", record("b"))

    assert await log.flush() == 1
    assert [e.model for e in published] == ["churn"]
    assert len(log) == 1, "the failed model's record waits for the next flush"


async def test_the_buffer_is_bounded_by_bytes_too() -> None:
    log = PredictionLog(
        Outbox(),
        batch_size=500,
        buffer_limit=1000,
        registry=CollectorRegistry(),
        max_event_bytes=10_000,
        buffer_bytes=10_000,
    )
    for index in range(10):
        log.append("churn", record(f"r{index}", {"note": "x" * 2000}))
    assert log.buffered_bytes <= 10_000
    assert log.dropped._value.get() == 10 - len(log)
