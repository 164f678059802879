"""How every modelfleet consumer behaves around its handler.

- The offset is committed only after the handler returned (faststream `AckPolicy.NACK_ON_ERROR`):
  at-least-once, so handlers must be idempotent (see `idempotency`).
- A handler that raises is retried with exponential backoff, a bounded number of times.
- A message that cannot be decoded or validated, or whose handler keeps failing, is published
  unchanged to the dead-letter topic with headers naming where it came from and why; the consumer
  then commits and moves on. Only if the dead-letter publish itself fails is the message left
  uncommitted (and redelivered), so nothing is ever lost.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from faststream import BaseMiddleware
from faststream.exceptions import HandlerException
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from modelfleet_contracts.topics import ALL_EVENTS

from . import logs
from .metrics import ServiceMetrics

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo
    from faststream.kafka import KafkaBroker
    from faststream.message import StreamMessage

logger = logging.getLogger("modelfleet.consumer")

_KNOWN_EVENT_TYPES = frozenset(c.model_fields["event_type"].default for c in ALL_EVENTS)
_MAX_ERROR_MESSAGE = 2000


class PermanentError(Exception):
    """A failure that retrying cannot fix (e.g. the event is valid JSON but makes no sense)."""


#: Errors that mean the message itself is bad: dead-letter at once, no retry.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    PermanentError,
)

#: Header names on a dead-lettered message.
DLQ_SOURCE_TOPIC = "x-dlq-source-topic"
DLQ_SOURCE_PARTITION = "x-dlq-source-partition"
DLQ_SOURCE_OFFSET = "x-dlq-source-offset"
DLQ_SERVICE = "x-dlq-service"
DLQ_ERROR_TYPE = "x-dlq-error-type"
DLQ_ERROR_MESSAGE = "x-dlq-error-message"
DLQ_ATTEMPTS = "x-dlq-attempts"
DLQ_FAILED_AT = "x-dlq-failed-at"


@dataclass
class ConsumerPolicy:
    """Retry and dead-letter settings of one service; a faststream broker middleware factory."""

    service: str
    dead_letter_topic: str
    metrics: ServiceMetrics
    max_attempts: int = 3
    backoff_seconds: float = 0.2
    #: Fault injection for crash tests: when set and the file is absent, the process creates it and
    #: SIGKILLs itself right after a handler succeeded, before the offset is committed.
    kill_after_handling_marker: Path | None = None
    broker: KafkaBroker | None = field(default=None, repr=False)

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> BaseMiddleware:
        return _ReliableConsumer(msg, context=context, policy=self)


def _headers(record: Any) -> dict[str, str]:
    raw = getattr(record, "headers", None) or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for k, v in items}


class _ReliableConsumer(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: ConsumerPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy
        self.attempts = 0
        self.headers = _headers(msg)
        self.topic = str(getattr(msg, "topic", "unknown"))
        self._tokens: list[Any] = []

    async def on_receive(self) -> None:
        self._tokens = [
            logs.correlation_id.set(self.headers.get("correlation_id", "")),
            logs.event_id.set(self.headers.get("event_id", "")),
        ]

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=wait_exponential(multiplier=self.policy.backoff_seconds, max=30),
            retry=retry_if_not_exception_type((*POISON_ERRORS, HandlerException)),
            before_sleep=self._on_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.attempts = attempt.retry_state.attempt_number
                return await call_next(msg)
        return None  # pragma: no cover - AsyncRetrying either returns or raises

    def _on_retry(self, state: Any) -> None:
        self.policy.metrics.handler_retries.labels(self.topic).inc()
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "handler failed, retrying",
            extra={"topic": self.topic, "attempt": state.attempt_number, "error": repr(error)},
        )

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        try:
            if exc_val is None:
                self._count_handled()
                self._maybe_kill_before_commit()
                return False
            if not isinstance(exc_val, Exception) or isinstance(exc_val, HandlerException):
                return False  # cancellation or faststream's own ack/nack control flow
            if self.topic == self.policy.dead_letter_topic:
                # Never dead-letter a dead letter: that would loop. Leave it uncommitted instead.
                return False
            await self._dead_letter(exc_val)
            return True  # suppressed: the message is acknowledged, the consumer goes on
        finally:
            for var, token in zip((logs.correlation_id, logs.event_id), self._tokens, strict=False):
                var.reset(token)

    def _count_handled(self) -> None:
        event_type = self.headers.get("event_type", "unknown")
        if event_type not in _KNOWN_EVENT_TYPES:
            event_type = "unknown"  # keep label cardinality bounded
        self.policy.metrics.events_handled.labels(self.topic, event_type).inc()

    def _maybe_kill_before_commit(self) -> None:
        marker = self.policy.kill_after_handling_marker
        if marker is not None and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            logger.warning("fault injection: killing the process before the offset is committed")
            os.kill(os.getpid(), signal.SIGKILL)

    async def _dead_letter(self, error: Exception) -> None:
        broker = self.policy.broker
        if broker is None:
            raise RuntimeError("ConsumerPolicy.broker is not bound; use FleetService") from error
        error_type = type(error).__name__
        message = str(error)[:_MAX_ERROR_MESSAGE]
        headers = {
            **self.headers,
            DLQ_SOURCE_TOPIC: self.topic,
            DLQ_SOURCE_PARTITION: str(getattr(self.msg, "partition", "")),
            DLQ_SOURCE_OFFSET: str(getattr(self.msg, "offset", "")),
            DLQ_SERVICE: self.policy.service,
            DLQ_ERROR_TYPE: error_type,
            DLQ_ERROR_MESSAGE: message,
            DLQ_ATTEMPTS: str(max(self.attempts, 1)),
            DLQ_FAILED_AT: datetime.now(UTC).isoformat(),
        }
        value = getattr(self.msg, "value", None)
        await broker.publish(
            value if isinstance(value, bytes) else b"",
            topic=self.policy.dead_letter_topic,
            key=getattr(self.msg, "key", None),
            headers=headers,
        )
        self.policy.metrics.dead_letters.labels(self.topic, error_type).inc()
        logger.error(
            "message dead-lettered",
            extra={
                "topic": self.topic,
                "error_type": error_type,
                "error": message,
                "attempts": self.attempts,
            },
        )
