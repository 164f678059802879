"""Handlers of evaluator: one function per consumed event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_common.state import KeyLocks
from modelfleet_contracts import ModelEvaluated, TrainingFinished
from modelfleet_contracts.envelope import Event

from .metrics import EvaluatorMetrics

logger = logging.getLogger("modelfleet.evaluator")


class CandidateEvaluator(Protocol):
    """Turns a training outcome into a verdict (blocking; `Evaluator` is the real one)."""

    def evaluate(self, event: TrainingFinished) -> ModelEvaluated: ...


@dataclass
class EvaluatorDeps:
    evaluator: CandidateEvaluator
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]
    #: Per-key locks shared by the replicas (PostgreSQL advisory locks), this process's otherwise.
    locks: KeyLocks = field(default_factory=KeyLocks)
    #: Evaluations by risk class and verdict; None counts nothing.
    metrics: EvaluatorMetrics | None = None


async def evaluate_candidate(event: TrainingFinished, deps: EvaluatorDeps) -> None:
    """Evaluate the candidate against its gates and publish the verdict, once per (model, run)."""

    async def evaluate_and_publish() -> None:
        # MLflow, the model and the plots block: keep the event loop (and /healthz) responsive.
        verdict = await asyncio.to_thread(deps.evaluator.evaluate, event)
        await deps.publish(verdict)
        if deps.metrics is not None:
            deps.metrics.count(verdict)
        log_event(logger, f"candidate evaluated: {'passed' if verdict.passed else 'failed'}", verdict)

    # The run id is the candidate's natural key; a redelivery whose mark was lost still gets the
    # verdict recorded on the run (see `Evaluator.evaluate`), never a second, different one.
    # A redelivery to another replica while this one evaluates waits for the mark (see registry).
    key = f"evaluated:{event.model}:{event.run_id}"
    async with deps.locks.hold(key):
        if not await once(deps.handled, key, evaluate_and_publish):
            log_event(logger, "candidate already evaluated; nothing to do", event)
