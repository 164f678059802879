"""OpenTelemetry tracing; context crosses Kafka hops in W3C `traceparent` headers."""

from __future__ import annotations

from typing import Literal

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def configure_tracing(service: str, exporter: Literal["none", "console", "otlp"]) -> TracerProvider:
    """A tracer provider for the service; spans are created (and propagated) even with `none`."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"modelfleet-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
