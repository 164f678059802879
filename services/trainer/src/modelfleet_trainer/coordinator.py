"""Runs one training to its end: bounded concurrency, retries with backoff, and the events.

Every training ends in exactly one published outcome: `TrainingFinished`, or `TrainingFailed`
as `permanent` (fix the spec or data; never retried) or `transient` (retried with exponential
backoff until the attempts ran out). Each attempt is its own MLflow run and `TrainingStarted`.
Failures never escape to the consumer, except a failed publish, which the consumer retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from modelfleet_contracts import TrainingFailed, TrainingFinished, TrainingStarted
from modelfleet_contracts.envelope import Event

from .domain import KnownSpec, PermanentTrainingError, TrainingJob, TransientTrainingError
from .metrics import TrainerMetrics
from .runner import TrainingRunner
from .task import TrainingResult
from .templates import get_template

logger = logging.getLogger("modelfleet.trainer")
SERVICE = "trainer"
#: Longest wait between two attempts, however many there are.
MAX_BACKOFF_SECONDS = 60.0


@dataclass
class _Progress:
    attempt: int = 0
    run_id: str | None = None


@dataclass
class TrainingCoordinator:
    """Trains jobs through a runner, at most `max_concurrent` at a time, and publishes outcomes."""

    runner: TrainingRunner
    publish: Callable[[Event], Awaitable[None]]
    max_concurrent: int = 2
    max_attempts: int = 3
    backoff_seconds: float = 1.0
    #: Trainings by trigger and outcome; None counts nothing.
    metrics: TrainerMetrics | None = None
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrent)

    async def train(self, job: TrainingJob, cause: Event) -> None:
        """Train `job` (caused by `cause`) and publish how it ended."""
        try:
            # Cheap checks first: a typo in the spec should not cost a run, a slot or data reads.
            template = get_template(job.template, job.template_version)
            template.check_features(
                template.parse_params(job.spec.spec.hyperparameters), job.spec.spec.features
            )
        except PermanentTrainingError as error:
            await self._publish_failure(job, cause, error, "permanent", _Progress(attempt=1))
            return

        progress = _Progress()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=MAX_BACKOFF_SECONDS),
            retry=retry_if_exception_type(TransientTrainingError),
            before_sleep=lambda state: _log_retry(job, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    progress.attempt, progress.run_id = attempt.retry_state.attempt_number, None
                    # The slot is held for one attempt only: backoff waits do not block others.
                    async with self._slots:
                        result = await self._attempt(job, cause, progress)
        except PermanentTrainingError as error:
            await self._publish_failure(job, cause, error, "permanent", progress)
            return
        except TransientTrainingError as error:
            await self._publish_failure(job, cause, error, "transient", progress)
            return
        await self._publish_finished(job, cause, result)

    async def reject(
        self, cause: Event, model: str, error: PermanentTrainingError, known: KnownSpec | None, *, reason: str
    ) -> None:
        """Publish a permanent failure for a request (triggered by `reason`) that could not become a
        training job."""
        pipeline = known.spec.spec.pipeline if known else None
        await self.publish(
            TrainingFailed(
                producer=SERVICE,
                model=model,
                spec_revision=known.revision if known else "",
                dataset=known.binding.name if known else "",
                dataset_version="",
                template=pipeline.template if pipeline else "",
                template_version=pipeline.version if pipeline else "",
                failure="permanent",
                error_type=error.error_type,
                message=str(error),
                **cause.caused(),
            )
        )
        if self.metrics is not None:
            self.metrics.count(reason, "failed")
        logger.warning(
            "training refused", extra={"model": model, "error_type": error.error_type, "error": str(error)}
        )

    async def _attempt(self, job: TrainingJob, cause: Event, progress: _Progress) -> TrainingResult:
        try:
            progress.run_id = run_id = await self.runner.start_run(job, progress.attempt)
        except Exception as error:
            raise _as_transient(error) from error
        try:
            await self.publish(
                TrainingStarted(
                    producer=SERVICE,
                    **_run_fields(job),
                    run_id=run_id,
                    attempt=progress.attempt,
                    **cause.caused(),
                )
            )
        except Exception as error:
            # Not the training's fault: leave it to the consumer, which retries the whole event.
            await self._close_failed_run(run_id, error)
            raise
        try:
            return await self.runner.train(job, run_id)
        except PermanentTrainingError as error:
            await self._close_failed_run(run_id, error)
            raise
        except Exception as error:
            await self._close_failed_run(run_id, error)
            if isinstance(error, TransientTrainingError):
                raise
            raise _as_transient(error) from error

    async def _close_failed_run(self, run_id: str, error: BaseException) -> None:
        try:
            await self.runner.fail_run(run_id, f"{_error_type(error)}: {error}")
        except Exception:
            # Best effort: the outcome event is what consumers act on, not the run's status.
            logger.warning("could not mark run failed", exc_info=True, extra={"run_id": run_id})

    async def _publish_finished(self, job: TrainingJob, cause: Event, result: TrainingResult) -> None:
        provenance = self.runner.provenance
        await self.publish(
            TrainingFinished(
                producer=SERVICE,
                **_run_fields(job),
                run_id=result.run_id,
                model_uri=result.model_uri,
                metrics=result.metrics,
                duration_seconds=result.duration_seconds,
                code_version=provenance.code_version,
                environment_hash=provenance.environment_hash,
                task=result.task,
                artifact_digest=result.artifact_digest,
                holdout_uri=result.holdout_uri,
                spec=job.spec,
                **cause.caused(),
            )
        )
        if self.metrics is not None:
            self.metrics.count(job.trigger, "succeeded")
        logger.info(
            "training finished",
            extra={"model": job.model, "run_id": result.run_id, "metrics": result.metrics},
        )

    async def _publish_failure(
        self,
        job: TrainingJob,
        cause: Event,
        error: PermanentTrainingError | TransientTrainingError,
        failure: Literal["permanent", "transient"],
        progress: _Progress,
    ) -> None:
        message = str(error)
        if failure == "transient":
            message = f"gave up after {progress.attempt} attempt(s); last error: {message}"
        await self.publish(
            TrainingFailed(
                producer=SERVICE,
                **_run_fields(job),
                run_id=progress.run_id,
                failure=failure,
                error_type=error.error_type,
                message=message,
                attempt=max(progress.attempt, 1),
                **cause.caused(),
            )
        )
        if self.metrics is not None:
            self.metrics.count(job.trigger, "failed")
        logger.warning(
            "training failed",
            extra={"model": job.model, "failure": failure, "error_type": error.error_type, "error": message},
        )


def _run_fields(job: TrainingJob) -> dict[str, Any]:
    return {
        "model": job.model,
        "spec_revision": job.spec_revision,
        "dataset": job.data.dataset,
        "dataset_version": job.data.version,
        "template": job.template,
        "template_version": job.template_version,
    }


def _error_type(error: BaseException) -> str:
    return str(getattr(error, "error_type", type(error).__name__))


def _as_transient(error: BaseException) -> TransientTrainingError:
    return TransientTrainingError(str(error) or repr(error), error_type=_error_type(error))


def _log_retry(job: TrainingJob, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning(
        "training failed transiently; retrying",
        extra={"model": job.model, "attempt": state.attempt_number, "error": repr(error)},
    )
