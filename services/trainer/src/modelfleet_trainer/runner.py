"""Where trainings run: behind `TrainingRunner`, in Ray tasks or in threads of this process.

The coordinator only sees the interface, so handler tests pass a fake and need neither Ray nor
MLflow. Both real runners open and close MLflow runs from this process (light calls, in a
thread) and run the heavy part, `task.train_in_task`, elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from typing import Any

from modelfleet_common.telemetry import current_traceparent

from .domain import PermanentTrainingError, TrainingJob, TransientTrainingError
from .provenance import Provenance
from .task import TaskConfig, TaskFailure, TrainingResult, train_in_task
from .tracking import MlflowTracking, tracking_for

logger = logging.getLogger("modelfleet.trainer.runner")


class TrainingRunner(ABC):
    """Opens a run per attempt, trains into it, and marks it failed when an attempt fails."""

    provenance: Provenance

    @abstractmethod
    async def start_run(self, job: TrainingJob, attempt: int) -> str:
        """Create the MLflow run of one attempt; returns its id."""

    @abstractmethod
    async def train(self, job: TrainingJob, run_id: str) -> TrainingResult:
        """Fit and log `job` into `run_id`.

        Raises `PermanentTrainingError` when only a change of spec or data can help; any other
        exception is a transient failure that another attempt may not have.
        """

    @abstractmethod
    async def fail_run(self, run_id: str, message: str) -> None:
        """Mark the run of a failed attempt as FAILED, with the reason."""

    async def close(self) -> None:
        """Release what the runner started (called once, when the service stops)."""
        return None  # nothing to release unless a runner started something


def unwrap(outcome: TrainingResult | TaskFailure) -> TrainingResult:
    """The result, or the failure raised as the exception the coordinator classifies by."""
    if isinstance(outcome, TaskFailure):
        if outcome.permanent:
            raise PermanentTrainingError(outcome.message, error_type=outcome.error_type)
        raise TransientTrainingError(outcome.message, error_type=outcome.error_type)
    return outcome


class _MlflowRunner(TrainingRunner):
    def __init__(self, config: TaskConfig, provenance: Provenance) -> None:
        self.config = config
        self.provenance = provenance

    @property
    def _tracking(self) -> MlflowTracking:
        return tracking_for(self.config.tracking_uri, self.config.artifact_root)

    async def start_run(self, job: TrainingJob, attempt: int) -> str:
        return await asyncio.to_thread(self._tracking.start_run, job, attempt, self.provenance)

    async def fail_run(self, run_id: str, message: str) -> None:
        await asyncio.to_thread(self._tracking.fail_run, run_id, message)

    async def train(self, job: TrainingJob, run_id: str) -> TrainingResult:
        return unwrap(await self._execute(job, run_id))

    @abstractmethod
    async def _execute(self, job: TrainingJob, run_id: str) -> TrainingResult | TaskFailure: ...


class InProcessRunner(_MlflowRunner):
    """Trains in a thread of this process: for development and tests, no Ray needed."""

    async def _execute(self, job: TrainingJob, run_id: str) -> TrainingResult | TaskFailure:
        return await asyncio.to_thread(train_in_task, job, run_id, self.config, current_traceparent())


def _tracing_environment() -> dict[str, str]:
    """The variables that say where this process's spans go, for Ray workers to send theirs there."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith("OTEL_") or name == "FLEET_OTEL_EXPORTER"
    }


class RayRunner(_MlflowRunner):
    """Trains in Ray tasks, one CPU each, on a cluster or a local Ray started on first use.

    A cluster comes from `address` (FLEET_RAY_ADDRESS) or the `RAY_ADDRESS` environment variable,
    usually `ray://head:10001` (Ray Client: needs `ray[client]` here and on the head); without
    either, a local instance with `num_cpus` CPUs and no dashboard. Worker logs are kept out of
    this service's log either way. Ray does not retry the task itself (`max_retries=0`): the
    coordinator decides about retries, with one MLflow run per attempt.
    """

    def __init__(
        self, config: TaskConfig, provenance: Provenance, *, address: str | None = None, num_cpus: int = 2
    ) -> None:
        super().__init__(config, provenance)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self._remote: Any = None
        self._init_lock = asyncio.Lock()
        self._started_local_ray = False

    async def _ensure_ray(self) -> Any:
        async with self._init_lock:
            # Ray starts a local instance by itself when a task is submitted while disconnected:
            # in this process, instead of the cluster. Only this runner starts or connects Ray.
            os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
            import ray  # imported on first use: importing Ray costs a second the service may not need

            if self._remote is not None and not ray.is_initialized():
                # Ray Client gives a connection up that it could not restore within its grace
                # period (30 s: the head restarted, the network was cut); connect anew, or every
                # training would fail until the service restarts.
                logger.warning("lost Ray; connecting again", extra={"address": self.address or "local"})
                await asyncio.to_thread(ray.shutdown)
                self._remote = None
            if self._remote is None:
                if not ray.is_initialized():
                    # Worker logs stay out of this service's log, also through Ray Client (whose
                    # server then streams none back). Dashboard and CPUs are a local Ray's only:
                    # a cluster has its own, and Ray Client would forward them to its server.
                    options: dict[str, Any] = {"log_to_driver": False}
                    if tracing := _tracing_environment():
                        # The task's spans go to the trainer's collector (`task.train_in_task`).
                        options["runtime_env"] = {"env_vars": tracing}
                    if self.address:
                        options["address"] = self.address
                    else:
                        options.update(num_cpus=self.num_cpus, include_dashboard=False)
                    logger.info("starting Ray", extra={"address": self.address or "local"})
                    # ray.init blocks for seconds; keep the event loop (and Kafka heartbeats) going.
                    await asyncio.to_thread(ray.init, **options)
                    self._started_local_ray = not self.address
                self._remote = ray.remote(num_cpus=1, max_retries=0)(train_in_task)
            return self._remote

    async def _execute(self, job: TrainingJob, run_id: str) -> TrainingResult | TaskFailure:
        import ray

        remote = await self._ensure_ray()
        # The task's span is a child of the training's: the trace goes on in the Ray worker.
        ref = remote.remote(job, run_id, self.config, current_traceparent())
        try:
            outcome: TrainingResult | TaskFailure = await asyncio.wrap_future(ref.future())
        except asyncio.CancelledError:
            ray.cancel(ref)  # the service is stopping: do not leave the fit running
            raise
        return outcome

    async def close(self) -> None:
        """Shut down the local Ray this runner started (or disconnect from the cluster).

        Must run before the event loop's thread pool stops: Ray ties its processes to the thread
        that started them, and processes killed that way leave their agents running.
        """
        if self._remote is None:
            return
        import ray

        if ray.is_initialized():
            logger.info("stopping Ray", extra={"local": self._started_local_ray})
            ray.shutdown()
        self._remote = None
