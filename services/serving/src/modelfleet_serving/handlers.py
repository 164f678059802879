"""Handlers of serving: one function per consumed event."""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import DeploymentChanged

from .routing_table import RoutingTable

logger = logging.getLogger("modelfleet.serving")


async def apply_deployment_changed(event: DeploymentChanged, table: RoutingTable) -> None:
    """Take the model's new routing table, unless a newer revision is already applied (idempotent)."""
    if table.apply(event):
        log_event(logger, "routing table applied", event)
    else:
        log_event(logger, "routing table ignored: not newer than the applied revision", event)
