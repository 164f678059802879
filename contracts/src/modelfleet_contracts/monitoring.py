"""What the monitor finds: drift, decay, SLO breaches and periodic health."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from .envelope import Contract, Event
from .specs import MODEL_NAME_PATTERN


class MonitoringWindow(Event):
    """Fields every monitoring event shares: which model version and which window."""

    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Model version observed.")
    window_start: AwareDatetime = Field(description="Start of the observed window.")
    window_end: AwareDatetime = Field(description="End of the observed window.")


class FeatureDrift(Contract):
    """Drift of one feature between the reference profile and the window."""

    feature: str = Field(description="Feature (or `__prediction__` for prediction drift).")
    method: str = Field(description="Statistic used: psi, ks, jensen_shannon, wasserstein, chi_square.")
    statistic: float = Field(description="Value of the statistic (p-value for tests).")
    threshold: float = Field(description="Threshold it was held against.")
    drifted: bool = Field(description="Verdict.")


class DriftDetected(MonitoringWindow):
    """Inputs or predictions of a model version drifted from its training data."""

    event_type: Literal["drift.detected"] = "drift.detected"
    schema_version: Literal[1] = 1
    dataset_version: str = Field(description="Reference: the dataset version the model was trained on.")
    rows: int = Field(ge=0, description="Rows in the window.")
    drift_share: float = Field(ge=0, le=1, description="Share of features that drifted.")
    features: list[FeatureDrift] = Field(description="Per-feature results.")
    drift_share_threshold: float | None = Field(
        default=None, description="Share of drifted features at or above which the inputs count as drifted."
    )
    prediction_drifted: bool | None = Field(
        default=None, description="Whether the predictions drifted from the version's first window."
    )


class PerformanceDegraded(MonitoringWindow):
    """Live performance, measured on arrived labels, fell below its bound."""

    event_type: Literal["performance.degraded"] = "performance.degraded"
    schema_version: Literal[1] = 1
    metric: str = Field(description="Metric, e.g. `accuracy`.")
    baseline: float = Field(description="Value at evaluation time.")
    observed: float = Field(description="Value on live labels.")
    threshold: float = Field(description="Bound that was crossed.")
    labelled_rows: int = Field(ge=0, description="Labels the live value is based on.")


class SloBreached(MonitoringWindow):
    """A serving SLO (error rate, latency) was breached."""

    event_type: Literal["slo.breached"] = "slo.breached"
    schema_version: Literal[1] = 1
    slo: str = Field(description="SLO name, e.g. `error_rate` or `latency_p99_ms`.")
    objective: float = Field(description="Objective.")
    observed: float = Field(description="Observed value.")


class ModelHealthReported(MonitoringWindow):
    """Periodic live health of one model version on one route; the deployer's rollout input."""

    event_type: Literal["model.health.reported"] = "model.health.reported"
    schema_version: Literal[1] = 1
    route: Literal["champion", "challenger", "shadow"] = Field(description="Route observed.")
    requests: int = Field(ge=0, description="Predictions in the window.")
    errors: int = Field(ge=0, description="Failed predictions in the window.")
    latency_p50_ms: float | None = Field(default=None, description="Median latency.")
    latency_p95_ms: float | None = Field(default=None, description="p95 latency.")
    latency_p99_ms: float | None = Field(default=None, description="p99 latency.")
    labelled: int = Field(default=0, ge=0, description="Predictions with ground truth in the window.")
    live_metric: str | None = Field(default=None, description="Name of the live metric, if labels arrived.")
    live_metric_value: float | None = Field(default=None, description="Its value.")
    live_metric_std: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Standard deviation of the per-label scores behind `live_metric_value` (1/0 for a class, "
            "-|error| for a number), so a reader can tell a real difference from noise."
        ),
    )
    business_value: float | None = Field(
        default=None, description="Business KPI earned in the window (labelled correct predictions x value)."
    )


ReviewDecision = Literal["keep", "retrain", "canary", "rollback", "retire"]


class ModelReviewed(Event):
    """The periodic review of one model (cadence by risk class), kept with its audit trail."""

    event_type: Literal["model.reviewed"] = "model.reviewed"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model reviewed.")
    risk_class: str = Field(description="Risk class, which sets the cadence.")
    period_start: AwareDatetime = Field(description="Start of the reviewed period.")
    period_end: AwareDatetime = Field(description="End of the reviewed period.")
    champion: str | None = Field(default=None, description="Champion version at the end of the period.")
    challenger: str | None = Field(default=None, description="Version in shadow or canary, if any.")
    requests: int = Field(ge=0, description="Predictions served in the period.")
    errors: int = Field(ge=0, description="Failed predictions in the period.")
    labelled: int = Field(ge=0, description="Predictions whose labels arrived in the period.")
    live_metric: str | None = Field(default=None, description="Live metric, if labels arrived.")
    live_metric_value: float | None = Field(default=None, description="Its value over the period.")
    drift_events: int = Field(ge=0, description="Drift detections in the period.")
    max_drift_share: float | None = Field(default=None, description="Largest drifted share seen.")
    incidents: list[str] = Field(
        default_factory=list,
        description="SLO breaches, decays, rollbacks and refused artifacts of the period, one line each.",
    )
    compute_seconds: float = Field(
        ge=0, description="Model compute spent serving (sum of latencies): the cost."
    )
    business_kpi: str | None = Field(default=None, description="Name and unit of the business KPI.")
    business_value: float | None = Field(default=None, description="KPI earned on labelled predictions.")
    decision: ReviewDecision = Field(description="What the review concludes.")
    reason: str = Field(description="Why, with the numbers.")
