"""The monitor's own Prometheus metrics.

Labels are risk classes, SLO names and review decisions, never model names: with thousands of
models a per-model label would make thousands of series per metric. Per-model numbers travel as
events (`DriftDetected`, `ModelHealthReported`, ...), which is where dashboards should read them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
