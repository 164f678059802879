"""Handlers of registry: one function per consumed event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_common.state import KeyLocks
from modelfleet_contracts import (
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
)
from modelfleet_contracts.envelope import Event

from .metrics import RegistryMetrics

logger = logging.getLogger("modelfleet.registry")


class CandidateRegistrar(Protocol):
    """Turns an evaluation into a registry version (blocking; `Registrar` is the real one)."""

    def register(self, event: ModelEvaluated) -> ModelRegistered: ...


class ChampionAliasMover(Protocol):
    """Moves the `champion` alias (blocking; `ChampionAliases` is the real one)."""

    def promote(self, event: ModelPromoted) -> None: ...

    def roll_back(self, event: ModelRolledBack) -> None: ...


@dataclass
class RegistryDeps:
    registrar: CandidateRegistrar
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]
    aliases: ChampionAliasMover
    #: Per-key locks shared by the replicas (PostgreSQL advisory locks), this process's otherwise.
    locks: KeyLocks = field(default_factory=KeyLocks)
    #: Registrations by risk class; None counts nothing.
    metrics: RegistryMetrics | None = None


async def register_model(event: ModelEvaluated, deps: RegistryDeps) -> None:
    """Register the evaluated candidate (passing or not) and announce it, once per (model, run)."""

    async def register_and_announce() -> None:
        # MLflow calls block: keep the event loop (and /healthz) responsive.
        registered = await asyncio.to_thread(deps.registrar.register, event)
        await deps.publish(registered)
        if deps.metrics is not None:
            deps.metrics.count(registered)
        log_event(logger, f"registered as version {registered.version}", registered)

    # Natural key (model, run id); the registrar also finds the run's version in MLflow, so a
    # redelivery after lost local state re-announces that version instead of creating another.
    # The lock makes a redelivery to another replica (after a rebalance, while this one still
    # registers) wait and find the mark, rather than race it to a second version.
    key = f"registered:{event.model}:{event.run_id}"
    async with deps.locks.hold(key):
        if not await once(deps.handled, key, register_and_announce):
            log_event(logger, "candidate already registered; nothing to do", event)


async def move_champion_to_promoted(event: ModelPromoted, deps: RegistryDeps) -> None:
    """Point `champion` at the promoted version; setting an alias again is harmless, so no marks."""
    await asyncio.to_thread(deps.aliases.promote, event)
    log_event(logger, f"champion alias moved to version {event.version}", event)


async def move_champion_on_rollback(event: ModelRolledBack, deps: RegistryDeps) -> None:
    """Point `champion` at the version a rollback returned to (or remove it when none is left)."""
    await asyncio.to_thread(deps.aliases.roll_back, event)
    where = f"version {event.to_version}" if event.to_version else "no version (alias removed)"
    log_event(logger, f"champion alias rolled back to {where}", event)
