"""Handlers of serving: one function per consumed event.

For now serving only acknowledges and logs what it consumes; its behaviour lands with #4.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import DeploymentChanged

logger = logging.getLogger("modelfleet.serving")


async def note_deployment_changed(event: DeploymentChanged) -> None:
    """Receive the routing table of a model."""
    log_event(logger, "received", event)
