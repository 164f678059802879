"""OpenTelemetry tracing: one trace per loop, and links where many traces meet one span.

Context crosses Kafka hops in W3C `traceparent` headers (faststream's `KafkaTelemetryMiddleware`
on every service's broker), so an event published while a span is current continues its trace.
Where no single parent exists the span starts a trace of its own and *links* to the traces it
summarises (`root_span`): a flush of the prediction log links to the requests it carries, a
`DriftDetected` to the requests of its window. At most `MAX_LINKS` links per span, the newest
evidence kept (`Evidence`).

HTTP calls made with `requests` (MLflow's tracking, registry and artifact calls) are client spans
of the current trace when `opentelemetry-instrumentation-requests` is installed (the services that
talk to MLflow declare it); the W3C headers go along.

`FLEET_OTEL_EXPORTER=otlp` sends spans with the OTLP/HTTP exporter, which reads the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://collector:4318`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

#: Most links one span carries to the traces it summarises (the newest evidence is kept).
MAX_LINKS = 32
#: Name of the tracer of modelfleet's own spans.
TRACER = "modelfleet"

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(service: str, exporter: Literal["none", "console", "otlp"]) -> TracerProvider:
    """A tracer provider for the service; spans are created (and propagated) even with `none`.

    The first one configured in a process becomes the global provider, which instrumentations
    (ASGI, HTTP clients) and `tracer()` use.
    """
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"modelfleet-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        _install(provider)
    return provider


def _install(provider: TracerProvider) -> None:
    """Make `provider` the process's global one, which HTTP client spans use too."""
    trace.set_tracer_provider(provider)
    _trace_http_clients(provider)


def _trace_http_clients(provider: TracerProvider) -> None:
    """Client spans for `requests` calls (MLflow's), where the instrumentation is installed."""
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:
        return
    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def ensure_tracing(service: str, exporter: Literal["none", "console", "otlp"]) -> None:
    """Configure tracing unless this process already has a provider (e.g. in a Ray worker)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        configure_tracing(service, exporter)


def flush_spans(timeout_seconds: float = 2.0) -> None:
    """Send the spans ended so far now (a long-lived worker between tasks)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=int(timeout_seconds * 1000))


def annotate(**attributes: AttributeValue) -> None:
    """Set attributes on the current span (names prefixed `modelfleet.`), if one is recording."""
    span = trace.get_current_span()
    for name, value in attributes.items():
        span.set_attribute(f"modelfleet.{name}", value)


def mark_failed(span: Span, message: str) -> None:
    """Mark `span` as failed with `message` (an outcome reported, not raised)."""
    span.set_status(trace.StatusCode.ERROR, message)


def global_provider() -> TracerProvider:
    """The process's SDK tracer provider (one without exporter is installed if there is none)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        _install(provider)
    return provider


def export_to(exporter: SpanExporter, *, batched: bool = True) -> SpanProcessor:
    """Also send the spans of the process's provider to `exporter`; returns its processor."""
    processor: SpanProcessor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    global_provider().add_span_processor(processor)
    return processor


def tracer() -> trace.Tracer:
    """The tracer of modelfleet's own spans (on the global provider)."""
    return trace.get_tracer(TRACER)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, or None when no span is current."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The span context a `traceparent` names, or None when it is empty or malformed."""
    if not traceparent:
        return None
    span = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
    context = span.get_span_context()
    return context if context.is_valid else None


def links_to(traceparents: Iterable[str | None], *, limit: int = MAX_LINKS) -> list[Link]:
    """Links to the distinct spans named by `traceparents`, at most `limit` (the last ones)."""
    found: OrderedDict[tuple[int, int], SpanContext] = OrderedDict()
    for traceparent in traceparents:
        context = span_context_of(traceparent)
        if context is not None:
            found[(context.trace_id, context.span_id)] = context
            found.move_to_end((context.trace_id, context.span_id))
            while len(found) > limit:
                found.popitem(last=False)
    return [Link(context) for context in found.values()]


class Evidence:
    """The `traceparent`s of what a window or batch summarises: distinct, the newest `limit` kept."""

    def __init__(self, limit: int = MAX_LINKS) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: How many traced items were added in all (kept or not).
        self.count = 0

    def add(self, traceparent: str | None) -> None:
        if not traceparent:
            return
        self.count += 1
        self._seen[traceparent] = None
        self._seen.move_to_end(traceparent)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def extend(self, traceparents: Iterable[str | None]) -> None:
        for traceparent in traceparents:
            self.add(traceparent)

    def merge(self, other: Evidence) -> None:
        """Add another's evidence after this one's (it is newer)."""
        count = self.count
        self.extend(other)
        self.count = count + other.count

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._seen))

    def __len__(self) -> int:
        return len(self._seen)


@contextlib.contextmanager
def root_span(
    name: str,
    *,
    evidence: Iterable[str | None] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A span that starts a trace of its own, current while the block runs.

    It links to the spans of `evidence` (at most `MAX_LINKS`) and to the span current when it
    began, if any (e.g. the consumed event that closed a window). Events published in the block
    carry its context.
    """
    links = links_to(evidence)
    current = trace.get_current_span().get_span_context()
    if current.is_valid and all(link.context != current for link in links):
        links.append(Link(current, {"modelfleet.link": "trigger"}))
    with tracer().start_as_current_span(
        name,
        context=otel_context.Context(),
        links=links,
        attributes={**(attributes or {}), "modelfleet.links": len(links)},
    ) as span:
        yield span


@contextlib.contextmanager
def continued_span(
    name: str, traceparent: str | None, *, attributes: Mapping[str, AttributeValue] | None = None
) -> Iterator[Span]:
    """A span in the trace of `traceparent` (a loop resumed later, e.g. a rollout judged on a
    health report), linked to the span current when it began; without a valid `traceparent`, a
    plain child of the current span."""
    parent = span_context_of(traceparent)
    current = trace.get_current_span().get_span_context()
    if parent is None:
        with tracer().start_as_current_span(name, attributes=attributes) as span:
            yield span
        return
    links = [Link(current, {"modelfleet.link": "trigger"})] if current.is_valid and current != parent else []
    with tracer().start_as_current_span(
        name,
        context=trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context()),
        links=links,
        attributes=attributes,
    ) as span:
        yield span
