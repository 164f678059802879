"""The monitor's own Prometheus metrics.

The counters are labelled by risk class, SLO name and review decision, never by model: a
counter or histogram labelled by model in every service would multiply each metric by the
fleet's thousands of models, in every replica, with every other label (route, code, bucket), and
keep series of models long gone. That is why serving, the deployer and the rest refuse model labels.

The model drill-down gauges (`fleet_model_*`, `ModelGauges`) are the one exception, and an
acceptable one because of where they live:

- one series per model and gauge (and route: champion, challenger, shadow; at most three), never
  crossed with another unbounded label, and gauges have no buckets: 10,000 models make about
  80,000 series in all, what one Prometheus holds easily;
- exported by exactly one replica, the one that owns the model's partitions (`book.ModelBook`):
  summing or joining over replicas never doubles a model, and the fleet's total does not grow
  with the number of monitor replicas;
- removed when the model leaves that replica (a rebalance gave its partition to another replica,
  which exports it from its next report on) or leaves the fleet (retired), and a route's when the
  routing table no longer has it: no series outlives what it describes;
- their values are the latest `ModelHealthReported` window the monitor computed (requests, error
  rate, p99 latency, live metric, business value, version) and the champion's holdout metric it
  already knows (`references.VersionFacts.baseline`), so they cost no extra work.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelfleet_contracts import ModelHealthReported


class MonitorMetrics:
    """Counters and gauges of drift, decay, SLO and review activity, by risk class."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.drift_checks = Counter(
            "fleet_monitor_drift_checks_total", "Drift windows checked.", ["risk_class"], registry=registry
        )
        self.drift_detected = Counter(
            "fleet_monitor_drift_detected_total",
            "Drift windows that drifted.",
            ["risk_class"],
            registry=registry,
        )
        self.decay_detected = Counter(
            "fleet_monitor_decay_detected_total",
            "Label windows whose live metric fell below its bound.",
            ["risk_class"],
            registry=registry,
        )
        self.slo_breaches = Counter(
            "fleet_monitor_slo_breaches_total", "SLO breaches.", ["risk_class", "slo"], registry=registry
        )
        self.reviews = Counter(
            "fleet_monitor_reviews_total",
            "Periodic reviews published.",
            ["risk_class", "decision"],
            registry=registry,
        )
        self.reference_errors = Counter(
            "fleet_monitor_reference_errors_total",
            "Versions whose reference profile could not be read (no drift check for them).",
            registry=registry,
        )
        self.models_watched = Gauge(
            "fleet_monitor_models", "Models the monitor knows a spec of.", registry=registry
        )
        self.drift_check_seconds = Histogram(
            "fleet_monitor_window_update_seconds",
            "Time to add one batch of predictions to a version's drift window (and check it when full).",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self.model = ModelGauges(registry)


class ModelGauges:
    """The drill-down gauges of the models this replica owns (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        per_route = ["model", "route"]
        self.requests = Gauge(
            "fleet_model_requests", "Requests in the latest health window.", per_route, registry=registry
        )
        self.error_rate = Gauge(
            "fleet_model_error_rate",
            "Failed share of the latest health window.",
            per_route,
            registry=registry,
        )
        self.latency_p99 = Gauge(
            "fleet_model_latency_p99_seconds",
            "p99 prediction latency of the latest health window.",
            per_route,
            registry=registry,
        )
        self.live_metric = Gauge(
            "fleet_model_live_metric",
            "Live metric (accuracy, or negated MAE) of the latest labelled health window.",
            per_route,
            registry=registry,
        )
        self.business_value = Gauge(
            "fleet_model_business_value",
            "Business value (the spec's KPI) of the latest health window that had one.",
            per_route,
            registry=registry,
        )
        self.version = Gauge(
            "fleet_model_version",
            "Registry version (its number) answering on the route in the latest health window.",
            per_route,
            registry=registry,
        )
        self.holdout_metric = Gauge(
            "fleet_model_holdout_metric",
            "The champion's live metric as measured on its holdout at training (the live one's bar).",
            ["model"],
            registry=registry,
        )
        self._per_route = (
            self.requests,
            self.error_rate,
            self.latency_p99,
            self.live_metric,
            self.business_value,
            self.version,
        )
        #: The routes each model has series of, and the models with a holdout series.
        self._routes: dict[str, set[str]] = defaultdict(set)
        self._holdouts: set[str] = set()

    def show(self, report: ModelHealthReported) -> None:
        """Export a published health window; a number it lacks (no labels, no KPI) keeps the last."""
        model, route = report.model, report.route
        self._routes[model].add(route)
        self.requests.labels(model, route).set(report.requests)
        self.error_rate.labels(model, route).set(report.errors / report.requests if report.requests else 0.0)
        if report.latency_p99_ms is not None:
            self.latency_p99.labels(model, route).set(report.latency_p99_ms / 1000)
        if report.live_metric_value is not None:
            self.live_metric.labels(model, route).set(report.live_metric_value)
        if report.business_value is not None:
            self.business_value.labels(model, route).set(report.business_value)
        if report.version.isdigit():
            self.version.labels(model, route).set(int(report.version))

    def show_holdout(self, model: str, value: float | None) -> None:
        """Export the champion's holdout metric (none known: no series)."""
        if value is None:
            if model in self._holdouts:
                self.holdout_metric.remove(model)
                self._holdouts.discard(model)
            return
        self.holdout_metric.labels(model).set(value)
        self._holdouts.add(model)

    def keep_routes(self, model: str, routes: set[str]) -> None:
        """Remove the model's series of routes its routing table no longer has."""
        for route in self._routes.get(model, set()) - routes:
            for gauge in self._per_route:
                # KeyError: a number that route never had (no labels, no KPI).
                with contextlib.suppress(KeyError):
                    gauge.remove(model, route)
            self._routes[model].discard(route)

    def forget(self, model: str) -> None:
        """Remove every series of a model this replica no longer owns, or that left the fleet."""
        self.keep_routes(model, set())
        self._routes.pop(model, None)
        self.show_holdout(model, None)

    def models(self) -> set[str]:
        """The models with series."""
        return set(self._routes) | self._holdouts
