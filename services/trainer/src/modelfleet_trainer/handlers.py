"""Handlers of trainer: one function per consumed event.

Spec and data triggers train once per natural key (model, spec revision, dataset version), so a
redelivered event, a re-applied spec or a repeated version announcement never trains twice; a
retrain request trains once per request (its event id). Drift and decay become a retrain request
at most once per cooldown (`domain.automatic_retrain`); versions ingest made from live feedback
train nobody by themselves, they are the newest data of the next retrain.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_common.policies import Overrides, resolve_policy
from modelfleet_common.state import KeyLocks
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PerformanceDegraded,
    RetrainRequested,
    RiskPolicy,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import RiskClass

from .catalog import TrainerCatalog
from .coordinator import SERVICE, TrainingCoordinator
from .domain import (
    DatasetNotReady,
    DatasetVersionRef,
    KnownSpec,
    LastRetrain,
    TrainingJob,
    UnknownModel,
    automatic_retrain,
    is_stale,
    specs_to_train_on,
)

logger = logging.getLogger("modelfleet.trainer")


@dataclass
class TrainerDeps:
    catalog: TrainerCatalog
    handled: IdempotencyStore
    coordinator: TrainingCoordinator
    #: Risk policies by class: whether drift and decay retrain, and the cooldown.
    policies: Mapping[RiskClass, RiskPolicy] = field(default_factory=dict)
    #: Longest a retrain asking for data newer than its trigger waits for such a version.
    data_wait_seconds: float = 120.0
    #: Drift and decay events are handled concurrently (`max_workers`, and by several replicas:
    #: drift and decay are separate consumer groups); one model's cooldown check and its record
    #: must not interleave, or two events of one burst could both retrain. Shared by the replicas
    #: on PostgreSQL (advisory locks), this process's otherwise.
    locks: KeyLocks = field(default_factory=KeyLocks)


async def apply_model_spec(event: ModelSpecSubmitted | ModelSpecRetired, deps: TrainerDeps) -> None:
    """Remember a submitted spec and train it if its data is there; forget a retired model."""
    if isinstance(event, ModelSpecRetired):
        deps.catalog.forget_model(event.model)
        log_event(logger, "model retired; it will not be trained again", event)
        return
    if is_stale(deps.catalog.spec(event.model), event.occurred_at):
        log_event(logger, "older spec submission redelivered; the newer spec stays", event)
        return
    known = deps.catalog.remember_spec(event)
    data = deps.catalog.resolve(known.binding)
    if data is None:
        log_event(logger, "spec waits for its dataset version", event)
        return
    await _train_once(_job(known, data, "spec", event), event, deps)


async def record_dataset_version(event: DatasetVersionCreated, deps: TrainerDeps) -> None:
    """Remember the version; train every spec that follows `latest` of its dataset or pins it.

    A version made from live feedback only becomes the dataset's latest: retraining every model
    of a shared dataset whenever labels arrive would retrain models nothing is wrong with.
    """
    data = deps.catalog.record_version(event)
    if event.origin == "feedback":
        log_event(
            logger,
            f"feedback version recorded ({event.feedback_rows} new rows); the next retrain uses it",
            event,
        )
        return
    specs = specs_to_train_on(deps.catalog.specs(), event.dataset, event.version)
    log_event(logger, f"dataset version recorded; {len(specs)} model(s) to train", event)
    # All at once: the coordinator bounds how many actually run in parallel.
    async with asyncio.TaskGroup() as group:
        for known in specs:
            group.create_task(_train_once(_job(known, data, "new_data", event), event, deps))


async def retrain_model(event: RetrainRequested, deps: TrainerDeps) -> None:
    """Train the model's current spec on the version its binding means now (for drift and decay,
    a version newer than the drifted window, once ingest has made it from the live feedback)."""

    async def retrain() -> None:
        if event.data_after is not None:
            await _wait_for_newer_data(event, deps)
        known = deps.catalog.spec(event.model)
        if known is None:
            error = UnknownModel(
                f"cannot retrain {event.model!r}: the trainer knows no current spec of it (never "
                "submitted, or retired); apply its spec first"
            )
            await deps.coordinator.reject(event, event.model, error, None, reason=event.reason)
            return
        data = deps.catalog.resolve(known.binding)
        if data is None:
            binding = known.binding
            latest = deps.catalog.latest_version(binding.name)
            not_ready = DatasetNotReady(
                f"cannot retrain {event.model!r}: dataset {binding.name!r} has no version "
                f"{binding.version!r} yet (latest known: {latest or 'none'}); ingest a batch first"
            )
            await deps.coordinator.reject(event, event.model, not_ready, known, reason=event.reason)
            return
        await deps.coordinator.train(_job(known, data, event.reason, event), event)

    await _guarded(f"retrain:{event.event_id}", retrain, event, deps)


async def _wait_for_newer_data(event: RetrainRequested, deps: TrainerDeps) -> None:
    """Wait (bounded) until the model's dataset has a version announced after `event.data_after`."""
    assert event.data_after is not None
    deadline = asyncio.get_running_loop().time() + deps.data_wait_seconds
    while True:
        known = deps.catalog.spec(event.model)
        data = deps.catalog.resolve(known.binding) if known else None
        fresh = data is not None and data.announced_at is not None and data.announced_at >= event.data_after
        if known is None or fresh or asyncio.get_running_loop().time() >= deadline:
            if known is not None and not fresh:
                log_event(
                    logger,
                    f"no dataset version newer than {event.data_after.isoformat()} after "
                    f"{deps.data_wait_seconds:g}s; retraining on the newest known",
                    event,
                )
            return
        await asyncio.sleep(min(1.0, deps.data_wait_seconds / 10))


async def retrain_on_drift(event: DriftDetected, deps: TrainerDeps) -> None:
    """Ask for a retrain of a drifted model, unless its policy says no or it is in cooldown."""
    await _retrain_automatically(event, "drift", deps)


async def retrain_on_decay(event: PerformanceDegraded, deps: TrainerDeps) -> None:
    """Ask for a retrain of a decayed model, unless its policy says no or it is in cooldown."""
    await _retrain_automatically(event, "decay", deps)


async def _retrain_automatically(
    event: DriftDetected | PerformanceDegraded, reason: Literal["drift", "decay"], deps: TrainerDeps
) -> None:
    async with deps.locks.hold(f"automatic-retrain:{event.model}"):
        await _decide_retrain(event, reason, deps)


async def _decide_retrain(
    event: DriftDetected | PerformanceDegraded, reason: Literal["drift", "decay"], deps: TrainerDeps
) -> None:
    known = deps.catalog.spec(event.model)
    if known is None:
        log_event(logger, f"{reason} of a model without a current spec; nothing to retrain", event)
        return
    policy = resolve_policy(
        deps.policies[known.spec.metadata.risk_class], Overrides(retrain=known.spec.spec.retrain)
    )
    verdict = automatic_retrain(event, policy.retrain, deps.catalog.last_automatic_retrain(event.model))
    if not verdict.retrain:
        log_event(logger, f"{reason} does not retrain: {verdict.reason}", event)
        return
    # Recorded before publishing: a crash in between redelivers this event, which the record lets
    # through again (same event id), while any other event of the burst meets the cooldown.
    deps.catalog.record_automatic_retrain(event.model, LastRetrain(event.occurred_at, str(event.event_id)))
    await deps.coordinator.publish(
        RetrainRequested(
            producer=SERVICE,
            model=event.model,
            reason=reason,
            detail=verdict.reason,
            data_after=event.window_end,
            # A retrain request per incident: its event id is its idempotency key downstream.
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"retrain:{event.event_id}"),
            **event.caused(),
        )
    )
    log_event(logger, f"retrain requested on {reason}: {verdict.reason}", event)


def _job(known: KnownSpec, data: DatasetVersionRef, trigger: str, cause: Event) -> TrainingJob:
    return TrainingJob(
        model=known.model,
        spec_revision=known.revision,
        spec=known.spec,
        data=data,
        trigger=trigger,
        correlation_id=cause.correlation_id,
    )


async def _train_once(job: TrainingJob, cause: Event, deps: TrainerDeps) -> None:
    await _guarded(job.natural_key, lambda: deps.coordinator.train(job, cause), cause, deps)


async def _guarded(key: str, effect: Callable[[], Awaitable[None]], cause: Event, deps: TrainerDeps) -> None:
    # A redelivery while this key is trained (here, or by another replica after a rebalance) waits
    # for that training, then finds its mark: one training per key, and nothing lost if it fails.
    async with deps.locks.hold(f"training:{key}"):
        if not await once(deps.handled, key, effect):
            log_event(logger, f"{key} was trained before; nothing to do", cause)
