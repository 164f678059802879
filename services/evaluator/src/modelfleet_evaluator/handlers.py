"""Handlers of evaluator: one function per consumed event.

For now evaluator only acknowledges and logs what it consumes; its behaviour lands with #3.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import TrainingFinished

logger = logging.getLogger("modelfleet.evaluator")


async def note_training_finished(event: TrainingFinished) -> None:
    """Receive a candidate to evaluate."""
    log_event(logger, "received", event)
