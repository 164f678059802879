"""Handlers of deployer: one function per consumed event.

For now deployer only acknowledges and logs what it consumes; its behaviour lands with #4.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import (
    ApprovalGranted,
    ModelHealthReported,
    ModelRegistered,
    ModelSpecRetired,
    ModelSpecSubmitted,
    RollbackRequested,
    SloBreached,
)

logger = logging.getLogger("modelfleet.deployer")


async def note_model_registered(event: ModelRegistered) -> None:
    """Receive a new challenger to roll out."""
    log_event(logger, "received", event)


async def note_model_health_reported(event: ModelHealthReported) -> None:
    """Receive live health that advances or rolls back a canary."""
    log_event(logger, "received", event)


async def note_slo_breached(event: SloBreached) -> None:
    """Receive a breach that rolls back."""
    log_event(logger, "received", event)


async def note_approval_granted(event: ApprovalGranted) -> None:
    """Receive an approval to verify."""
    log_event(logger, "received", event)


async def note_rollback_requested(event: RollbackRequested) -> None:
    """Receive a rollback asked for by a person."""
    log_event(logger, "received", event)


async def note_model_spec(event: ModelSpecSubmitted | ModelSpecRetired) -> None:
    """Receive the rollout policy of a model."""
    log_event(logger, "received", event)
