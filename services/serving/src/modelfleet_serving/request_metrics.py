"""Serving's request metrics: count, status code and latency per route and risk class.

`fleet_serving_requests_total{route,risk_class,code}` and
`fleet_serving_request_duration_seconds{route,risk_class}` count every answer of the data plane,
errors included (401, 403, 404, 413, 422, 503, ...): the error-rate and latency SLOs of a risk
class are computed from them. Every label is bounded: `route` is the mounted route template
(`/predict`, `/feedback`), never the raw path; `risk_class` comes from the model's routing table
(`DeploymentChanged.risk_class`), `unknown` when serving has no table naming one (an unknown model,
a body without a model, a table from a deployer that predates the field); `code` is one of the
few statuses the doors answer. Model names are never labels: thousands of models would make
thousands of series per route (per-model numbers are the monitor's `fleet_model_*` gauges).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from .routing_table import RoutingTable

#: Seconds; from a cached small model's millisecond to a large batch's seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: The risk class of a request whose model serving has no risk class for.
UNKNOWN = "unknown"


class RequestMetrics:
    """The request counter and latency histogram of the data plane."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fleet_serving_requests_total",
            "Requests answered by the data plane, by route template, risk class and HTTP status code.",
            ["route", "risk_class", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "fleet_serving_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template and risk class.",
            ["route", "risk_class"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, risk_class: str, code: int, seconds: float) -> None:
        self.requests.labels(route, risk_class, str(code)).inc()
        self.duration.labels(route, risk_class).observe(seconds)


def risk_class_of(table: RoutingTable, model: str | None) -> str:
    """The model's risk class as its routing table says, `unknown` when it says none."""
    current = table.get(model) if model else None
    return (current.risk_class if current is not None else None) or UNKNOWN
