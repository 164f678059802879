"""Model specs: what a team declares about one model (spec), and the events that carry it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue

from .envelope import Contract, Event

RiskClass = Literal["low", "medium", "high", "critical"]
ModelName = str
MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,118}[a-z0-9])?$"


class ModelMetadata(Contract):
    """Who owns a model, why it exists, and how much risk it carries."""

    name: ModelName = Field(
        pattern=MODEL_NAME_PATTERN,
        description="Unique model name: lower-case letters, digits, `.`, `_`, `-`; at most 120 characters.",
    )
    owner: str = Field(min_length=1, description="Accountable team or person (e.g. an e-mail).")
    purpose: str = Field(default="", description="One sentence on what the model is for.")
    risk_class: RiskClass = Field(
        description="Drives policy defaults: gates, rollout, approvals and review cadence."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Free-form labels, e.g. market or product."
    )


class DatasetBinding(Contract):
    """Which data a model trains on."""

    name: str = Field(min_length=1, description="Dataset name as known to ingest.")
    version: str = Field(
        default="latest",
        description="Content hash of a dataset version, or `latest` to follow new versions.",
    )
    where: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Row filter, column = value (e.g. `market: se` for one model per market).",
    )


class PipelineRef(Contract):
    """A pinned, versioned pipeline template."""

    template: str = Field(min_length=1, description="Template name, e.g. `tabular-classifier`.")
    version: str = Field(min_length=1, description="Template version, e.g. `1`.")


class MetricThreshold(Contract):
    """A bound on an offline evaluation metric."""

    metric: str = Field(min_length=1, description="Metric name, e.g. `roc_auc` or `rmse`.")
    min: float | None = Field(default=None, description="Lowest acceptable value, if any.")
    max: float | None = Field(default=None, description="Highest acceptable value, if any.")


class GatePolicy(Contract):
    """Overrides of the risk class's evaluation gates; an unset field keeps the policy default."""

    metric_thresholds: list[MetricThreshold] | None = Field(
        default=None, description="Offline metric bounds the candidate must meet."
    )
    non_inferiority_margin: float | None = Field(
        default=None,
        ge=0,
        description="How much worse than the champion the candidate may be (lower confidence bound).",
    )
    max_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="Highest p95 prediction latency per row, in milliseconds."
    )
    max_model_size_mb: float | None = Field(
        default=None, gt=0, description="Largest serialized model size, in megabytes."
    )
    max_fairness_gap: float | None = Field(
        default=None, ge=0, description="Largest metric gap between cohorts."
    )
    min_robustness: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Lowest share of the metric kept under input noise (1 = unaffected).",
    )


class RolloutPolicy(Contract):
    """Overrides of the risk class's rollout policy."""

    shadow: bool | None = Field(default=None, description="Mirror traffic to the candidate first.")
    canary_steps: list[int] | None = Field(
        default=None, description="Traffic percentages of the canary steps, e.g. [10, 50, 100]."
    )
    min_requests_per_step: int | None = Field(
        default=None, ge=1, description="Requests a canary step needs before it may advance."
    )
    requires_approval: bool | None = Field(
        default=None, description="Stop before live traffic until an approver signs off."
    )
    min_live_labels: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Labels a health window needs before its live metric is compared with the champion's: "
            "fewer are too noisy to roll a version back on."
        ),
    )
    kept_versions: int | None = Field(
        default=None,
        ge=2,
        le=1000,
        description=(
            "Passing versions a routing table keeps as rollback targets by name: the newest ones, "
            "plus the champion, the last known good and the version in rollout (default 20)."
        ),
    )


DriftMethod = Literal["psi", "ks", "jensen_shannon", "wasserstein", "chi_square"]


class MonitoringPolicy(Contract):
    """Overrides of the risk class's monitoring policy."""

    drift_method: DriftMethod | None = Field(
        default=None, description="Statistical test used for numeric feature drift."
    )
    drift_threshold: float | None = Field(
        default=None, gt=0, description="Threshold of the drift statistic (or p-value for tests)."
    )
    window_size: int | None = Field(default=None, ge=1, description="Predictions per monitoring window.")
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Error-rate SLO of the serving path."
    )
    max_latency_p99_ms: float | None = Field(
        default=None, gt=0, description="p99 latency SLO of the serving path, in milliseconds."
    )
    drift_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of features that must drift (each by `drift_method`) to call the inputs drifted.",
    )
    max_performance_drop: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Largest relative loss of the live metric, over `window_size` labels, against its value "
            "at evaluation time before the model counts as decayed (0.1 = 10 % worse)."
        ),
    )
    review_interval_seconds: int | None = Field(
        default=None, ge=1, description="Cadence of the model's periodic review report."
    )


class RetrainPolicy(Contract):
    """When the fleet retrains this model without a human."""

    on_drift: bool = Field(default=True, description="Retrain when data drift is detected.")
    on_decay: bool = Field(default=True, description="Retrain when live performance decays.")
    cooldown_seconds: int | None = Field(
        default=None, ge=0, description="Minimum time between two automatic retrains."
    )


class BusinessKpi(Contract):
    """The business value the model is judged by."""

    name: str = Field(min_length=1, description="KPI name, e.g. `avoided_downtime_hours`.")
    unit: str | None = Field(default=None, description="Unit of the KPI.")
    value_per_correct_prediction: float | None = Field(
        default=None, description="Business value of one correct prediction, in the KPI's unit."
    )


class ModelSpecBody(Contract):
    """The declarative part of a model spec: data, pipeline and policies."""

    dataset: DatasetBinding = Field(description="Data the model trains on.")
    features: list[str] = Field(min_length=1, description="Input feature columns.")
    target: str = Field(min_length=1, description="Label column.")
    cohort_columns: list[str] = Field(
        default_factory=list, description="Columns that define cohorts for fairness gates."
    )
    pipeline: PipelineRef = Field(description="Pipeline template and its pinned version.")
    hyperparameters: dict[str, JsonValue] = Field(
        default_factory=dict, description="Template parameters; validated by the template."
    )
    gates: GatePolicy = Field(default_factory=GatePolicy, description="Evaluation gate overrides.")
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy, description="Rollout overrides.")
    monitoring: MonitoringPolicy = Field(
        default_factory=MonitoringPolicy, description="Monitoring overrides."
    )
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy, description="Retrain policy.")
    approvers: list[str] | None = Field(
        default=None,
        description=(
            "Who may approve this model's versions: some of its risk class's approvers (fewer "
            "people, never others); unset = all of them."
        ),
    )
    business_kpi: BusinessKpi | None = Field(default=None, description="Business KPI, if any.")


class ModelSpec(Contract):
    """A `ModelSpec` document as written by a team (`apiVersion: modelfleet/v1`)."""

    api_version: Literal["modelfleet/v1"] = Field(
        default="modelfleet/v1", alias="apiVersion", description="Spec format version."
    )
    kind: Literal["ModelSpec"] = Field(default="ModelSpec", description="Document kind.")
    metadata: ModelMetadata = Field(description="Ownership and risk.")
    spec: ModelSpecBody = Field(description="Data, pipeline and policies.")

    model_config = Contract.model_config | {"populate_by_name": True}


class FleetMetadata(Contract):
    """Name and owner of a `ModelFleet` document."""

    name: str = Field(pattern=MODEL_NAME_PATTERN, description="Name of the fleet document.")
    owner: str = Field(default="", description="Team or person accountable for the fleet.")


class FleetMatrix(Contract):
    """A spec template and the matrix it is expanded over."""

    matrix: dict[str, list[str | int | float]] = Field(
        min_length=1,
        description="Axis name to its values; one model per combination (e.g. market x product).",
    )
    template: dict[str, JsonValue] = Field(
        description=(
            "A ModelSpec with `${axis}` placeholders; `$$` is a literal `$`. Each combination must "
            "give a distinct `metadata.name`."
        )
    )


class ModelFleet(Contract):
    """A `ModelFleet` document: one file, many models (`apiVersion: modelfleet/v1`)."""

    api_version: Literal["modelfleet/v1"] = Field(
        default="modelfleet/v1", alias="apiVersion", description="Spec format version."
    )
    kind: Literal["ModelFleet"] = Field(default="ModelFleet", description="Document kind.")
    metadata: FleetMetadata = Field(description="Name and owner of the fleet.")
    spec: FleetMatrix = Field(description="Template and matrix.")

    model_config = Contract.model_config | {"populate_by_name": True}


class ModelSpecSubmitted(Event):
    """A new or changed spec was applied. Compacted by model: the latest one is the desired state."""

    event_type: Literal["model.spec.submitted"] = "model.spec.submitted"
    schema_version: Literal[1] = 1
    model: ModelName = Field(pattern=MODEL_NAME_PATTERN, description="Model name (= metadata.name).")
    revision: str = Field(
        min_length=1, description="Content hash of the canonical spec; unchanged spec, same revision."
    )
    spec: ModelSpec = Field(description="The whole spec document.")


class ModelSpecRetired(Event):
    """A model leaves the fleet: stop training, serving and monitoring it."""

    event_type: Literal["model.spec.retired"] = "model.spec.retired"
    schema_version: Literal[1] = 1
    model: ModelName = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    reason: str = Field(min_length=1, description="Why it is retired.")


#: What the compacted `model-specs` topic carries: a submission or a retirement.
SpecEvent = Annotated[ModelSpecSubmitted | ModelSpecRetired, Field(discriminator="event_type")]
