"""Training requests and the outcome of training runs."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from .envelope import Event
from .specs import MODEL_NAME_PATTERN, ModelSpec

Task = Literal["classification", "regression", "forecasting"]

RetrainReason = Literal["manual", "drift", "decay", "slo_breach", "new_data", "schedule"]


class RetrainRequested(Event):
    """Someone or something asks for a model to be retrained on its newest data."""

    event_type: Literal["model.retrain.requested"] = "model.retrain.requested"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model to retrain.")
    reason: RetrainReason = Field(description="What triggered the request.")
    detail: str = Field(default="", description="Free text: the triggering numbers or a note.")
    data_after: AwareDatetime | None = Field(
        default=None,
        description=(
            "Train on a dataset version announced after this time (e.g. the end of the drifted "
            "window, so the live rows that drifted are in it); the trainer waits a bounded time for "
            "one, then trains on the newest it has."
        ),
    )


class TrainingRun(Event):
    """Fields every training event shares: which model, spec revision, data and template."""

    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    spec_revision: str = Field(description="Revision (content hash) of the spec trained.")
    dataset: str = Field(description="Dataset name.")
    dataset_version: str = Field(description="Content hash of the dataset version trained on.")
    template: str = Field(description="Pipeline template name.")
    template_version: str = Field(description="Pipeline template version.")


class TrainingStarted(TrainingRun):
    """A training run began."""

    event_type: Literal["training.started"] = "training.started"
    schema_version: Literal[1] = 1
    run_id: str = Field(description="MLflow run id.")
    attempt: int = Field(default=1, ge=1, description="1 for the first try, more on retries.")


class TrainingFinished(TrainingRun):
    """A training run produced a candidate model."""

    event_type: Literal["training.finished"] = "training.finished"
    schema_version: Literal[1] = 1
    run_id: str = Field(description="MLflow run id; with the model name, the candidate's natural key.")
    model_uri: str = Field(description="MLflow URI of the logged model.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Training/holdout metrics.")
    duration_seconds: float = Field(ge=0, description="Wall time of the fit.")
    code_version: str = Field(description="Code commit or package version of the template.")
    environment_hash: str = Field(description="Hash of the training environment's packages.")
    task: Task | None = Field(default=None, description="What the template learns.")
    artifact_digest: str | None = Field(
        default=None,
        description="sha256 of the logged model's files; checked before anyone loads it.",
    )
    holdout_uri: str | None = Field(
        default=None, description="Holdout rows (Parquet) the candidate must be evaluated on."
    )
    spec: ModelSpec | None = Field(
        default=None, description="The spec trained, so evaluation applies the same gates and cohorts."
    )


class TrainingFailed(TrainingRun):
    """A training run failed; `permanent` failures are not retried."""

    event_type: Literal["training.failed"] = "training.failed"
    schema_version: Literal[1] = 1
    run_id: str | None = Field(default=None, description="MLflow run id, if one was created.")
    failure: Literal["transient", "permanent"] = Field(
        description="Transient failures were retried with backoff; permanent ones need a fix."
    )
    error_type: str = Field(description="Class of the error, e.g. `InvalidHyperparameter`.")
    message: str = Field(description="What went wrong and what to change.")
    attempt: int = Field(default=1, ge=1, description="Attempt that failed.")
