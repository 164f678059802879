"""Handlers of monitor: one function per consumed event.

For now monitor only acknowledges and logs what it consumes; its behaviour lands with #5.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import DatasetVersionCreated, GroundTruthObserved, PredictionLogged

logger = logging.getLogger("modelfleet.monitor")


async def note_prediction_logged(event: PredictionLogged) -> None:
    """Receive served predictions to watch."""
    log_event(logger, "received", event)


async def note_ground_truth_observed(event: GroundTruthObserved) -> None:
    """Receive labels for live performance."""
    log_event(logger, "received", event)


async def note_dataset_version_created(event: DatasetVersionCreated) -> None:
    """Receive reference profiles for drift."""
    log_event(logger, "received", event)
