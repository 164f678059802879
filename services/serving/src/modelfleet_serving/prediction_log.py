"""Served predictions, buffered in memory and published in batches so logging never blocks a response.

Records are flushed as one `PredictionLogged` per model (split into chunks of the batch size after
a backlog) every `FLEET_SERVING_LOG_FLUSH_SECONDS`, or sooner when the buffer holds
`FLEET_SERVING_LOG_BATCH_SIZE` records. A failed publish keeps its records for the next flush; the
buffer is bounded by `FLEET_SERVING_LOG_BUFFER_LIMIT`, beyond which the oldest records are dropped
and counted in `fleet_serving_prediction_logs_dropped_total`, so a Kafka outage cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from modelfleet_contracts import PredictionLogged
from modelfleet_contracts.serving import PredictionRecord

logger = logging.getLogger("modelfleet.serving")

Publish = Callable[[PredictionLogged], Awaitable[None]]


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
    ) -> None:
        self.publish = publish
        self.batch_size = batch_size
        self.buffer_limit = max(buffer_limit, batch_size)
        self.producer = producer
        self._buffer: deque[tuple[str, PredictionRecord]] = deque()
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

    def __len__(self) -> int:
        return len(self._buffer)

    def append(self, model: str, record: PredictionRecord) -> None:
        """Buffer one record; never waits. Drops (and counts) the oldest record when full."""
        if len(self._buffer) >= self.buffer_limit:
            self._buffer.popleft()
            self.dropped.inc()
            logger.warning(
                "prediction log buffer full: oldest record dropped",
                extra={"buffer_limit": self.buffer_limit},
            )
        self._buffer.append((model, record))
        if len(self._buffer) >= self.batch_size:
            self._batch_ready.set()

    async def flush(self) -> int:
        """Publish what is buffered, one event per model; returns how many records were published.

        Records of a failed publish go back to the front of the buffer, in order.
        """
        async with self._flush_lock:
            self._batch_ready.clear()
            taken = list(self._buffer)
            self._buffer.clear()
            by_model: dict[str, list[PredictionRecord]] = {}
            for model, record in taken:
                by_model.setdefault(model, []).append(record)
            published = 0
            failed: list[tuple[str, PredictionRecord]] = []
            for model, records in by_model.items():
                for start in range(0, len(records), self.batch_size):
                    chunk = records[start : start + self.batch_size]
                    if failed:
                        # Once a publish failed the broker is likely down: keep the rest for later.
                        failed.extend((model, record) for record in chunk)
                        continue
                    try:
                        await self.publish(
                            PredictionLogged(producer=self.producer, model=model, predictions=chunk)
                        )
                    except Exception:
                        logger.exception(
                            "prediction log publish failed: records kept for the next flush",
                            extra={"model": model, "records": len(chunk)},
                        )
                        failed.extend((model, record) for record in chunk)
                    else:
                        published += len(chunk)
            self.published.inc(published)
            if failed:
                self._requeue(failed)
            return published

    def _requeue(self, records: list[tuple[str, PredictionRecord]]) -> None:
        # Records appended during the publish stay behind the older ones; the bound still holds.
        self._buffer.extendleft(reversed(records))
        overflow = len(self._buffer) - self.buffer_limit
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self.dropped.inc(overflow)
            logger.warning(
                "prediction log buffer full: oldest records dropped",
                extra={"dropped": overflow, "buffer_limit": self.buffer_limit},
            )

    async def run(self, interval_seconds: float) -> None:
        """Flush every `interval_seconds`, or as soon as a full batch is buffered; runs until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), timeout=interval_seconds)
            await self.flush()
