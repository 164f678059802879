"""Risk-class policies: the defaults a spec's gates, rollout, monitoring and retraining start from.

Policies are code reviewed like any other: YAML documents in `policies/`, one per risk class
(`kind: RiskPolicy`). A spec overrides any field for its own model; the rest comes from here.
Fields the policy lists under `floors` are minimums: a spec may tighten them, never loosen them
(`modelfleet_common.policies.resolve_policy` says what tighter means for each).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .envelope import Contract
from .specs import MetricThreshold, MonitoringPolicy, RetrainPolicy, RiskClass, RolloutPolicy
from .training import Task


class GateDefaults(Contract):
    """Evaluation gates of a risk class; every gate is always applied."""

    metric_thresholds: dict[Task, list[MetricThreshold]] = Field(
        description="Offline metric bounds per task, e.g. `classification: [{metric: roc_auc, min: 0.7}]`."
    )
    non_inferiority_margin: float = Field(
        ge=0, description="How much worse than the champion the candidate's lower confidence bound may be."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="One-sided confidence of the non-inferiority bound."
    )
    bootstrap_samples: int = Field(
        default=200, ge=50, description="Bootstrap resamples of the holdout for the confidence bound."
    )
    max_latency_p95_ms: float = Field(gt=0, description="Highest p95 single-row prediction latency, ms.")
    max_model_size_mb: float = Field(gt=0, description="Largest artifact size, in megabytes.")
    max_fairness_gap: float = Field(ge=0, description="Largest gap of the primary metric between cohorts.")
    min_cohort_rows: int = Field(
        default=30, ge=1, description="Cohorts with fewer holdout rows are left out of the fairness gap."
    )
    min_robustness: float = Field(
        ge=0, le=1, description="Lowest share of the primary metric kept under input noise."
    )
    noise_scale: float = Field(
        default=0.1, gt=0, description="Noise added for robustness, in standard deviations per feature."
    )


#: Fields a policy may mark as floors (`spec.floors`), by their path in a spec's `spec` section.
FloorField = Literal[
    "gates.metric_thresholds",
    "gates.non_inferiority_margin",
    "gates.max_latency_p95_ms",
    "gates.max_model_size_mb",
    "gates.max_fairness_gap",
    "gates.min_robustness",
    "rollout.shadow",
    "rollout.requires_approval",
    "rollout.canary_steps",
    "rollout.min_requests_per_step",
    "rollout.min_live_labels",
    "approvers",
]


class RiskPolicyMetadata(Contract):
    """Which risk class a policy is for."""

    name: RiskClass = Field(description="The risk class this policy governs.")


class RiskPolicySpec(Contract):
    """Everything a risk class implies."""

    gates: GateDefaults = Field(description="Evaluation gates.")
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy, description="Rollout defaults.")
    monitoring: MonitoringPolicy = Field(default_factory=MonitoringPolicy, description="Monitoring defaults.")
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy, description="Retraining defaults.")
    approvers: list[str] = Field(
        default_factory=list, description="People whose signed approval lets a version take traffic."
    )
    floors: list[FloorField] = Field(
        default_factory=list,
        description=(
            "Fields a spec may tighten but never loosen (e.g. `rollout.requires_approval`); "
            "unlisted fields a spec may set to anything."
        ),
    )


class RiskPolicy(Contract):
    """A `RiskPolicy` document (`apiVersion: modelfleet/v1`)."""

    api_version: Literal["modelfleet/v1"] = Field(
        default="modelfleet/v1", alias="apiVersion", description="Policy format version."
    )
    kind: Literal["RiskPolicy"] = Field(default="RiskPolicy", description="Document kind.")
    metadata: RiskPolicyMetadata = Field(description="Risk class.")
    spec: RiskPolicySpec = Field(description="Gates, rollout, monitoring, retraining, approvers.")

    model_config = Contract.model_config | {"populate_by_name": True}
