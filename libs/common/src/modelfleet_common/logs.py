"""Structured JSON logs that carry the correlation id of the event being handled, and the ids of
the current trace and span (`trace_id`, `span_id`, as hex) whenever a span is current."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

#: Correlation id of the lifecycle the current handler works for ("" outside a handler).
correlation_id: ContextVar[str] = ContextVar("correlation_id", default="")
#: Id of the event the current handler works on (a record about another event names it as
#: `handled_event_id`, and that event's own id as `event_id`).
event_id: ContextVar[str] = ContextVar("event_id", default="")


class _EventContext(logging.Filter):
    """Stamps every record with the service name, the ids of the event in hand and, when a span is
    current, its trace and span ids (the form trace back ends search by)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id.get()
        handled = event_id.get()
        if getattr(record, "event_id", ""):
            # The record names an event of its own (`log_event`'s verdict, say): keep that id and
            # name the one in hand beside it.
            record.handled_event_id = handled
        else:
            record.event_id = handled
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record (ours, faststream's, uvicorn's) to stdout as one JSON object per line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_EventContext(service))
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s %(event_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("faststream", "uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # aiokafka is chatty about routine group coordination at INFO.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def log_event(logger: logging.Logger, message: str, event: Any) -> None:
    """Log `message` about an event with its type, key and ids as structured fields."""
    logger.info(
        message,
        extra={
            "event_type": event.event_type,
            "key": event.key,
            "event_id": str(event.event_id),
            "causation_id": str(event.causation_id or ""),
        },
    )
