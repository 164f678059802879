"""Handlers of registry: one function per consumed event.

For now registry only acknowledges and logs what it consumes; its behaviour lands with #3.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import DeploymentChanged, ModelEvaluated, ModelSpecRetired, ModelSpecSubmitted

logger = logging.getLogger("modelfleet.registry")


async def note_model_evaluated(event: ModelEvaluated) -> None:
    """Receive an evaluated candidate to register."""
    log_event(logger, "received", event)


async def note_deployment_changed(event: DeploymentChanged) -> None:
    """Receive a routing change that moves aliases."""
    log_event(logger, "received", event)


async def note_model_spec(event: ModelSpecSubmitted | ModelSpecRetired) -> None:
    """Receive a retirement archives versions."""
    log_event(logger, "received", event)
