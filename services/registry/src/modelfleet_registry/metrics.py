"""The registry's own Prometheus metrics. Labels are risk classes: a bounded set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from modelfleet_contracts import ModelRegistered

#: A version whose lineage names no risk class.
UNKNOWN = "unknown"


class RegistryMetrics:
    """`fleet_registry_registrations_total{risk_class}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registrations = Counter(
            "fleet_registry_registrations_total",
            "Registry versions created (passing or not) and announced, by risk class.",
            ["risk_class"],
            registry=registry,
        )

    def count(self, registered: ModelRegistered) -> None:
        self.registrations.labels(registered.lineage.get("risk_class") or UNKNOWN).inc()
