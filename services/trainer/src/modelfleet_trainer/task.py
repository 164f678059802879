"""One training as a self-contained function: what a Ray task (or a thread) runs.

It reads the dataset version, fits the template and logs the run to MLflow, all in the process
that runs it, so fits and MLflow uploads of many models proceed in parallel. It never raises
for problems it can classify: it returns a `TaskFailure`, so the classification survives the
trip back from a Ray worker unchanged.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from modelfleet_common.settings import ServiceSettings
from modelfleet_common.telemetry import continued_span, ensure_tracing, flush_spans, mark_failed
from modelfleet_contracts.training import Task

from .datasets import DatasetCache
from .domain import PermanentTrainingError, TrainingJob
from .fitting import fit_template
from .templates import get_template
from .tracking import tracking_for

logger = logging.getLogger("modelfleet.trainer.task")


@dataclass(frozen=True)
class TaskConfig:
    """What a training process needs besides the job (plain values: it travels to Ray workers)."""

    tracking_uri: str
    artifact_root: str | None = None
    dataset_cache_size: int = 4


@dataclass(frozen=True)
class TrainingResult:
    """A candidate model, logged to MLflow."""

    run_id: str
    task: Task
    model_uri: str
    holdout_uri: str
    artifact_digest: str
    metrics: dict[str, float]
    duration_seconds: float


@dataclass(frozen=True)
class TaskFailure:
    """Why a training failed, and whether another try could succeed."""

    permanent: bool
    error_type: str
    message: str


@functools.cache
def _dataset_cache(capacity: int) -> DatasetCache:
    return DatasetCache(capacity)


@functools.cache
def _tracing() -> None:
    """A Ray worker's spans go where the trainer's go: `FLEET_OTEL_EXPORTER` and the `OTEL_*`
    variables, which `RayRunner` forwards to its workers (a thread of the trainer has them)."""
    ensure_tracing("trainer", ServiceSettings().otel_exporter)


def train_in_task(
    job: TrainingJob, run_id: str, config: TaskConfig, traceparent: str | None = None
) -> TrainingResult | TaskFailure:
    """Read, fit and log one training into the already created run `run_id`, in a span that is a
    child of `traceparent` (the span of the training's request, in the trainer)."""
    _tracing()
    with continued_span(
        "training task", traceparent, attributes={"modelfleet.model": job.model, "mlflow.run_id": run_id}
    ) as span:
        outcome = _train(job, run_id, config)
        if isinstance(outcome, TaskFailure):
            mark_failed(span, outcome.message)
    # A Ray worker lives on between tasks: send its spans now rather than at its next batch.
    flush_spans()
    return outcome


def _train(job: TrainingJob, run_id: str, config: TaskConfig) -> TrainingResult | TaskFailure:
    label = f"dataset {job.data.dataset!r} version {job.data.version[:12]}"
    try:
        template = get_template(job.template, job.template_version)
        params = template.parse_params(job.spec.spec.hyperparameters)
        frame = _dataset_cache(config.dataset_cache_size).read(job.data.uri, label=label)
        fitted = fit_template(template, params, frame, job.spec.spec, dataset=label)
        logged = tracking_for(config.tracking_uri, config.artifact_root).log_training(
            run_id, job, template, params, fitted, frame
        )
    except PermanentTrainingError as error:
        return TaskFailure(permanent=True, error_type=error.error_type, message=str(error))
    except Exception as error:
        # Anything else (MLflow, network, disk) may pass on another try.
        logger.warning("training failed transiently", exc_info=True, extra={"model": job.model})
        return TaskFailure(
            permanent=False, error_type=type(error).__name__, message=str(error) or repr(error)
        )
    return TrainingResult(
        run_id=run_id,
        task=template.task,
        model_uri=logged.model_uri,
        holdout_uri=logged.holdout_uri,
        artifact_digest=logged.artifact_digest,
        metrics=fitted.metrics,
        duration_seconds=fitted.duration_seconds,
    )
