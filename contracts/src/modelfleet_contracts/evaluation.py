"""Policy-gated evaluation of a candidate model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .envelope import Contract, Event
from .specs import MODEL_NAME_PATTERN


class GateResult(Contract):
    """The verdict of one gate, with the numbers behind it."""

    gate: str = Field(description="Gate name, e.g. `metric:roc_auc`, `non_inferiority`, `latency_p95`.")
    passed: bool = Field(description="Whether the candidate passed this gate.")
    value: float | None = Field(default=None, description="Measured value.")
    threshold: float | None = Field(default=None, description="Threshold it was held against.")
    detail: str = Field(default="", description="Readable reason, especially on failure.")


class ModelEvaluated(Event):
    """A candidate was evaluated gate by gate; it may be promoted only if `passed`."""

    event_type: Literal["model.evaluated"] = "model.evaluated"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    run_id: str = Field(description="MLflow run id of the candidate.")
    model_uri: str = Field(description="MLflow URI of the candidate model.")
    spec_revision: str = Field(description="Spec revision the candidate was trained for.")
    passed: bool = Field(description="True when every gate passed.")
    gates: list[GateResult] = Field(description="Every gate's verdict.")
    champion_version: str | None = Field(
        default=None, description="Registry version it was compared with, if a champion exists."
    )
    report_uri: str | None = Field(default=None, description="Readable evaluation report (MLflow artifact).")
    artifact_digest: str | None = Field(
        default=None, description="sha256 of the model's files, verified before evaluation loaded them."
    )
    lineage: dict[str, str] = Field(
        default_factory=dict,
        description="Dataset and version, template and version, spec revision, code, environment.",
    )
