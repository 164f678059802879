"""Traces of the data plane: a server span per request, in the caller's trace when it sent one.

The routes are wrapped in OpenTelemetry's ASGI middleware, which continues an incoming W3C
`traceparent` header (or starts a trace) and names the span after the route template
(`POST /predict`). Each prediction logged while that span is current keeps its `traceparent`
(`PredictionRecord.traceparent`), so the flush of the log, and the drift and health reports made of
it, link back to the request.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware


def traced(app: Any, route: str) -> OpenTelemetryMiddleware:
    """`app` (an ASGI app mounted at `route`) with a server span per request (on the process's
    tracer provider, which `FleetService` configures)."""

    def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        method = str(scope.get("method") or "HTTP")
        return f"{method} {route}", {"http.route": route}

    return OpenTelemetryMiddleware(
        app,
        default_span_details=span_details,
        # The body's receive and the answer's send are not worth a span each.
        exclude_spans=["receive", "send"],
    )
