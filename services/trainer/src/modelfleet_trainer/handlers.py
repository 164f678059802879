"""Handlers of trainer: one function per consumed event.

For now trainer only acknowledges and logs what it consumes; its behaviour lands with #3.
"""

from __future__ import annotations

import logging

from modelfleet_common.logs import log_event
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PerformanceDegraded,
    RetrainRequested,
)

logger = logging.getLogger("modelfleet.trainer")


async def note_model_spec(event: ModelSpecSubmitted | ModelSpecRetired) -> None:
    """Receive a spec was submitted or retired."""
    log_event(logger, "received", event)


async def note_dataset_version_created(event: DatasetVersionCreated) -> None:
    """Receive a dataset version a spec may bind as `latest`."""
    log_event(logger, "received", event)


async def note_retrain_requested(event: RetrainRequested) -> None:
    """Receive someone asked for a retrain."""
    log_event(logger, "received", event)


async def note_drift_detected(event: DriftDetected) -> None:
    """Receive drift may call for a retrain."""
    log_event(logger, "received", event)


async def note_performance_degraded(event: PerformanceDegraded) -> None:
    """Receive decay may call for a retrain."""
    log_event(logger, "received", event)
