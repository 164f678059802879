"""Prometheus metrics of a service: faststream's own plus the fleet's, on a per-service registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ServiceMetrics:
    """The metrics every service exposes. Labels are topics and event types: bounded sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_handled = Counter(
            "fleet_events_handled_total",
            "Events handled successfully (offset then committed).",
            ["topic", "event_type"],
            registry=self.registry,
        )
        self.handler_retries = Counter(
            "fleet_handler_retries_total",
            "Handler attempts that failed and were retried with backoff.",
            ["topic"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "fleet_dead_letters_total",
            "Messages sent to the dead-letter topic.",
            ["topic", "error_type"],
            registry=self.registry,
        )
        self.ready = Gauge("fleet_ready", "1 when the service is ready to consume.", registry=self.registry)
