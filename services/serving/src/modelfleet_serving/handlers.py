"""Handlers of serving: one function per consumed event."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter

from modelfleet_common.logs import log_event
from modelfleet_common.revisions import is_accepted
from modelfleet_contracts import DeploymentChanged

from .routing_table import RoutingTable

logger = logging.getLogger("modelfleet.serving")


class RoutingMetrics:
    """Routing tables serving ignored, by reason (`stale` or `jump`): bounded labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ignored = Counter(
            "fleet_serving_routing_tables_ignored",
            "DeploymentChanged not applied: stale (not newer) or jump (not the current revision + 1).",
            ["reason"],
            registry=registry,
        )


async def apply_deployment_changed(
    event: DeploymentChanged, table: RoutingTable, metrics: RoutingMetrics
) -> None:
    """Take the model's new routing table if it is its first or its next revision (idempotent)."""
    current = table.get(event.model)
    check = table.apply(event)
    if is_accepted(check):
        log_event(logger, "routing table applied", event)
        return
    metrics.ignored.labels(check).inc()
    applied = None if current is None else current.revision
    if check == "stale":
        log_event(logger, f"routing table ignored: revision {applied} is applied already", event)
        return
    logger.warning(
        "routing table ignored: revision %d is not the applied revision %s + 1; the model keeps its "
        "current table (a table only the deployer may publish skipped ahead, or was forged)",
        event.revision,
        applied,
        extra={
            "model": event.model,
            "revision": event.revision,
            "applied_revision": applied,
            "event_id": str(event.event_id),
            "producer": event.producer,
        },
    )
