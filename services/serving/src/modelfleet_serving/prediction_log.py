"""Served predictions, buffered in memory and published in batches so logging never blocks a response.

Records are flushed as `PredictionLogged` events, one or more per model, every
`FLEET_SERVING_LOG_FLUSH_SECONDS`, or sooner when the buffer holds `FLEET_SERVING_LOG_BATCH_SIZE`
records or an event's worth of bytes. An event holds at most `FLEET_SERVING_LOG_BATCH_SIZE` records
and at most `FLEET_SERVING_LOG_MAX_EVENT_BYTES` of JSON (below Kafka's default 1 MiB message
limit), so no batch is refused by the broker for its size.

A single record larger than an event may be (one row of huge strings) is **dead-lettered alone**:
a small summary (model, request id, version, its size, the limit; not its features, which are
what is too large) goes to the fleet's dead-letter topic, counted in
`fleet_serving_prediction_logs_dead_lettered_total`, and every other record, of that model and of
the others, is published as usual. Before, such a record failed its publish on every flush and held
back the whole log.

A failed publish keeps that model's records for the next flush and the flush goes on with the other
models (after `MAX_FAILED_PUBLISHES` failures in one flush the broker is taken as down and the rest
waits too). The buffer is bounded by `FLEET_SERVING_LOG_BUFFER_LIMIT` records and
`FLEET_SERVING_LOG_BUFFER_BYTES`, beyond which the oldest records are dropped and counted in
`fleet_serving_prediction_logs_dropped_total`, so a Kafka outage cannot exhaust memory.

Tracing: each published event is sent inside a `prediction-log flush` span that starts a trace of
its own and links to the request spans of its records (`PredictionRecord.traceparent`; at most
`modelfleet_common.telemetry.MAX_LINKS`, the newest), so the monitor's and ingest's spans that
consume the batch are in the flush's trace, and the flush leads back to each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from modelfleet_common.telemetry import root_span
from modelfleet_contracts import PredictionLogged
from modelfleet_contracts.serving import PredictionRecord

logger = logging.getLogger("modelfleet.serving")

Publish = Callable[[PredictionLogged], Awaitable[None]]
#: Publishes (value, headers) to the dead-letter topic.
DeadLetter = Callable[[bytes, dict[str, str]], Awaitable[None]]

#: Bytes of an event besides its records (envelope fields, list brackets), with a wide margin.
EVENT_OVERHEAD_BYTES = 2048
#: Failed publishes in one flush after which the broker is taken as down.
MAX_FAILED_PUBLISHES = 3

Entry = tuple[str, PredictionRecord, int]


def record_bytes(record: PredictionRecord) -> int:
    """The size of a record inside an event: its JSON and a separator."""
    return len(record.model_dump_json()) + 1


class PredictionLog:
    """Bounded buffer of (model, record) flushed to the prediction-logs topic by `run`."""

    def __init__(
        self,
        publish: Publish,
        *,
        batch_size: int,
        buffer_limit: int,
        registry: CollectorRegistry,
        producer: str = "serving",
        max_event_bytes: int = 900_000,
        buffer_bytes: int = 64 * 1024 * 1024,
        dead_letter: DeadLetter | None = None,
        source_topic: str = "prediction-logs",
    ) -> None:
        self.publish = publish
        self.batch_size = batch_size
        self.buffer_limit = max(buffer_limit, batch_size)
        self.max_event_bytes = max_event_bytes
        self.buffer_bytes = max(buffer_bytes, max_event_bytes)
        self.producer = producer
        self.dead_letter = dead_letter
        self.source_topic = source_topic
        self._buffer: deque[Entry] = deque()
        self._bytes = 0
        self._batch_ready = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self.dropped = Counter(
            "fleet_serving_prediction_logs_dropped",
            "Prediction records dropped because the log buffer was full (prediction-logs unreachable).",
            registry=registry,
        )
        self.published = Counter(
            "fleet_serving_prediction_logs_published",
            "Prediction records published to the prediction-logs topic.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "fleet_serving_prediction_logs_dead_lettered",
            "Prediction records larger than an event may be, sent to the dead-letter topic alone.",
            ["model"],
            registry=registry,
        )

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def append(self, model: str, record: PredictionRecord) -> None:
        """Buffer one record; never waits. Drops (and counts) the oldest records when full."""
        size = record_bytes(record)
        self._buffer.append((model, record, size))
        self._bytes += size
        self._trim("prediction log buffer full: oldest records dropped")
        if len(self._buffer) >= self.batch_size or self._bytes >= self.max_event_bytes:
            self._batch_ready.set()

    async def flush(self) -> int:
        """Publish what is buffered, by model in events bounded by count and bytes; returns how
        many records were published. Records of a failed publish go back to the buffer, in order."""
        async with self._flush_lock:
            self._batch_ready.clear()
            taken = list(self._buffer)
            self._buffer.clear()
            self._bytes = 0
            by_model: dict[str, list[tuple[PredictionRecord, int]]] = {}
            for model, record, size in taken:
                by_model.setdefault(model, []).append((record, size))
            published = 0
            failures = 0
            kept: list[Entry] = []
            for model, entries in by_model.items():
                if failures >= MAX_FAILED_PUBLISHES:
                    kept.extend((model, record, size) for record, size in entries)
                    continue
                done, left = await self._flush_model(model, entries)
                published += done
                if left:
                    failures += 1
                    kept.extend((model, record, size) for record, size in left)
            self.published.inc(published)
            if kept:
                self._requeue(kept)
            return published

    async def _flush_model(
        self, model: str, entries: list[tuple[PredictionRecord, int]]
    ) -> tuple[int, list[tuple[PredictionRecord, int]]]:
        """Publish one model's records; returns (published, the records left after a failure)."""
        published = 0
        chunk: list[tuple[PredictionRecord, int]] = []
        chunk_bytes = EVENT_OVERHEAD_BYTES
        position = 0
        while position <= len(entries):
            entry = entries[position] if position < len(entries) else None
            if entry is not None and entry[1] + EVENT_OVERHEAD_BYTES > self.max_event_bytes:
                await self._dead_letter(model, *entry)
                position += 1
                continue
            full = (
                entry is None
                or len(chunk) >= self.batch_size
                or chunk_bytes + entry[1] > self.max_event_bytes
            )
            if chunk and full:
                records = [record for record, _ in chunk]
                try:
                    # A batch has no one parent: its span starts a trace linked to its requests'.
                    with root_span(
                        "prediction-log flush",
                        evidence=(record.traceparent for record in records),
                        attributes={"modelfleet.model": model, "modelfleet.records": len(records)},
                    ):
                        await self.publish(
                            PredictionLogged(producer=self.producer, model=model, predictions=records)
                        )
                except Exception:
                    logger.exception(
                        "prediction log publish failed: records kept for the next flush",
                        extra={"model": model, "records": len(records)},
                    )
                    return published, chunk + entries[position:]
                published += len(records)
                chunk, chunk_bytes = [], EVENT_OVERHEAD_BYTES
            if entry is None:
                break
            chunk.append(entry)
            chunk_bytes += entry[1]
            position += 1
        return published, []

    async def _dead_letter(self, model: str, record: PredictionRecord, size: int) -> None:
        """Send a summary of a record too large for any event to the dead-letter topic, alone."""
        reason = (
            f"prediction record of {size} bytes exceeds FLEET_SERVING_LOG_MAX_EVENT_BYTES "
            f"({self.max_event_bytes} bytes with the event envelope)"
        )
        self.dead_lettered.labels(model).inc()
        logger.error(
            "prediction record too large for the log: dead-lettered alone",
            extra={"model": model, "request_id": record.request_id, "bytes": size},
        )
        if self.dead_letter is None:
            return
        summary = {
            "model": model,
            "request_id": record.request_id,
            "version": record.version,
            "route": record.route,
            "predicted_at": record.predicted_at.isoformat(),
            "record_bytes": size,
            "max_event_bytes": self.max_event_bytes,
        }
        headers = {
            "x-dlq-source-topic": self.source_topic,
            "x-dlq-service": self.producer,
            "x-dlq-error-type": "RecordTooLarge",
            "x-dlq-error-message": reason,
            "x-dlq-attempts": "1",
            "x-dlq-failed-at": datetime.now(UTC).isoformat(),
        }
        try:
            await self.dead_letter(json.dumps(summary).encode(), headers)
        except Exception:
            # Never requeued: it would fail again on every flush. Its summary is in the log above.
            logger.exception(
                "dead-letter publish of an oversized prediction record failed", extra={"model": model}
            )

    def _requeue(self, entries: list[Entry]) -> None:
        # Records appended during the publish stay behind the older ones; the bounds still hold.
        self._buffer.extendleft(reversed(entries))
        self._bytes += sum(size for _, _, size in entries)
        self._trim("prediction log buffer full: oldest records dropped")

    def _trim(self, message: str) -> None:
        dropped = 0
        while len(self._buffer) > 1 and (
            len(self._buffer) > self.buffer_limit or self._bytes > self.buffer_bytes
        ):
            _, _, size = self._buffer.popleft()
            self._bytes -= size
            dropped += 1
        if dropped:
            self.dropped.inc(dropped)
            logger.warning(
                message,
                extra={
                    "dropped": dropped,
                    "buffer_limit": self.buffer_limit,
                    "buffer_bytes": self.buffer_bytes,
                },
            )

    async def run(self, interval_seconds: float) -> None:
        """Flush every `interval_seconds`, or as soon as a full batch is buffered; runs until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), timeout=interval_seconds)
            await self.flush()
