"""One resolver: a model's effective policy is its risk class's, overridden by its spec, and a spec
may tighten what the policy marks as a floor but never loosen it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_common.policies import (
    InvalidPolicy,
    Overrides,
    PolicyFloorError,
    load_policies,
    resolve_policy,
)
from modelfleet_contracts.policies import RiskPolicy
from modelfleet_contracts.specs import (
    GatePolicy,
    MetricThreshold,
    MonitoringPolicy,
    RetrainPolicy,
    RiskClass,
    RolloutPolicy,
)

POLICIES = load_policies(Path(__file__).resolve().parents[3] / "policies")


def policy(risk_class: RiskClass) -> RiskPolicy:
    return POLICIES[risk_class]


def test_without_overrides_the_effective_policy_is_the_risk_policy() -> None:
    effective = resolve_policy(policy("critical"))
    assert effective.risk_class == "critical"
    assert effective.gates == policy("critical").spec.gates
    assert effective.rollout.canary_steps == (1, 5, 25, 50, 100)
    assert effective.rollout.requires_approval is True
    assert effective.approvers == ("risk-officer", "head-of-ml")
    assert effective.floored == ()


def test_a_critical_spec_without_approval_is_refused_naming_the_field_its_value_and_the_floor() -> None:
    with pytest.raises(PolicyFloorError) as refused:
        resolve_policy(policy("critical"), Overrides(rollout=RolloutPolicy(requires_approval=False)))
    [violation] = refused.value.violations
    assert (violation.field, violation.value, violation.floor) == ("rollout.requires_approval", False, True)
    assert "rollout.requires_approval: false loosens the floor true" in str(refused.value)


def test_every_loosened_floor_is_listed() -> None:
    loose = Overrides(
        gates=GatePolicy(
            metric_thresholds=[MetricThreshold(metric="roc_auc", min=0.5)],
            non_inferiority_margin=0.2,
            max_latency_p95_ms=1000,
            max_model_size_mb=1000,
            max_fairness_gap=0.5,
            min_robustness=0.1,
        ),
        rollout=RolloutPolicy(
            shadow=False,
            canary_steps=[50, 100],
            min_requests_per_step=10,
            requires_approval=False,
            min_live_labels=5,
        ),
        approvers=("intern",),
    )
    with pytest.raises(PolicyFloorError) as refused:
        resolve_policy(policy("critical"), loose)
    assert {(v.field, v.floor) for v in refused.value.violations} == {
        ("gates.metric_thresholds[roc_auc].min", 0.75),
        ("gates.non_inferiority_margin", 0.01),
        ("gates.max_latency_p95_ms", 100),
        ("gates.max_model_size_mb", 100),
        ("gates.max_fairness_gap", 0.05),
        ("gates.min_robustness", 0.9),
        ("rollout.shadow", True),
        ("rollout.canary_steps", (1, 5, 25, 50, 100)),
        ("rollout.min_requests_per_step", 5000),
        ("rollout.requires_approval", True),
        ("rollout.min_live_labels", 100),
        ("approvers", ("risk-officer", "head-of-ml")),
    }


def test_a_spec_tightening_every_floor_is_taken_as_written() -> None:
    tight = Overrides(
        gates=GatePolicy(
            metric_thresholds=[MetricThreshold(metric="roc_auc", min=0.95)],
            non_inferiority_margin=0.0,
            max_latency_p95_ms=20,
            max_model_size_mb=10,
            max_fairness_gap=0.01,
            min_robustness=0.99,
        ),
        rollout=RolloutPolicy(
            shadow=True,
            canary_steps=[1, 2, 5, 10, 25, 50, 100],
            min_requests_per_step=10_000,
            requires_approval=True,
            min_live_labels=500,
        ),
        approvers=("head-of-ml",),
    )
    effective = resolve_policy(policy("critical"), tight)
    assert effective.gates.metric_thresholds["classification"] == [
        MetricThreshold(metric="roc_auc", min=0.95)
    ]
    assert effective.gates.max_latency_p95_ms == 20
    assert effective.gates.min_robustness == 0.99
    assert effective.rollout.canary_steps == (1, 2, 5, 10, 25, 50, 100)
    assert effective.rollout.min_requests_per_step == 10_000
    assert effective.rollout.min_live_labels == 500
    assert effective.approvers == ("head-of-ml",)


def test_a_service_acting_on_a_loosening_spec_gets_the_floor_and_the_list_of_what_was_floored() -> None:
    spec = Overrides(rollout=RolloutPolicy(requires_approval=False, min_live_labels=500))
    effective = resolve_policy(policy("critical"), spec, loosened="floor")
    assert effective.rollout.requires_approval is True
    assert effective.rollout.min_live_labels == 500  # the tightening is kept
    assert [v.field for v in effective.floored] == ["rollout.requires_approval"]


def test_fields_the_policy_does_not_mark_as_floors_are_overridden_freely() -> None:
    effective = resolve_policy(
        policy("low"), Overrides(rollout=RolloutPolicy(canary_steps=[100], min_requests_per_step=1))
    )
    assert effective.rollout.canary_steps == (100,)
    assert effective.rollout.min_requests_per_step == 1
    high = resolve_policy(policy("high"), Overrides(rollout=RolloutPolicy(canary_steps=[5, 25, 100])))
    assert high.rollout.canary_steps == (5, 25, 100)


@pytest.mark.parametrize(
    ("steps", "allowed"),
    [
        ([1, 5, 25, 50, 100], True),
        ([1, 2, 5, 25, 50, 100], True),
        ([1, 5, 20, 50, 100], True),
        ([5, 25, 50, 100], False),  # fewer steps: full traffic one step sooner
        ([2, 5, 25, 50, 100], False),  # a larger first step
        ([1, 5, 25, 100], False),
    ],
)
def test_canary_steps_are_tighter_when_no_step_sends_more_traffic_than_the_floors_step(
    steps: list[int], allowed: bool
) -> None:
    spec = Overrides(rollout=RolloutPolicy(canary_steps=steps))
    if allowed:
        assert resolve_policy(policy("critical"), spec).rollout.canary_steps == tuple(steps)
    else:
        with pytest.raises(PolicyFloorError, match=r"rollout\.canary_steps: \[.*\] loosens the floor \[1, 5"):
            resolve_policy(policy("critical"), spec)


def test_canary_steps_that_do_not_increase_are_invalid_even_for_a_service_that_floors() -> None:
    for loosened in ("refuse", "floor"):
        with pytest.raises(InvalidPolicy, match="must strictly increase"):
            resolve_policy(
                policy("low"), Overrides(rollout=RolloutPolicy(canary_steps=[50, 10])), loosened=loosened
            )


def test_with_the_floor_the_specs_thresholds_add_to_the_policys_and_may_only_be_stricter() -> None:
    spec = Overrides(gates=GatePolicy(metric_thresholds=[MetricThreshold(metric="accuracy", min=0.8)]))
    gates = resolve_policy(policy("high"), spec).gates
    assert gates.metric_thresholds["classification"] == [
        MetricThreshold(metric="roc_auc", min=0.7),
        MetricThreshold(metric="accuracy", min=0.8),
    ]
    looser = Overrides(gates=GatePolicy(metric_thresholds=[MetricThreshold(metric="smape", max=0.9)]))
    with pytest.raises(
        PolicyFloorError, match=r"gates\.metric_thresholds\[smape\]\.max: 0\.9 loosens the floor"
    ):
        resolve_policy(policy("high"), looser)
    floored = resolve_policy(policy("high"), looser, loosened="floor").gates
    assert floored.metric_thresholds["forecasting"] == [MetricThreshold(metric="smape", max=0.25)]


def test_without_the_floor_the_specs_thresholds_replace_the_policys() -> None:
    unfloored = policy("low").model_copy(
        update={"spec": policy("low").spec.model_copy(update={"floors": []})}
    )
    spec = Overrides(gates=GatePolicy(metric_thresholds=[MetricThreshold(metric="roc_auc", min=0.1)]))
    gates = resolve_policy(unfloored, spec).gates
    assert gates.metric_thresholds["classification"] == [MetricThreshold(metric="roc_auc", min=0.1)]


def test_monitoring_is_overridden_field_by_field_and_retraining_needs_both_to_allow_it() -> None:
    effective = resolve_policy(
        policy("medium"),
        Overrides(
            monitoring=MonitoringPolicy(max_error_rate=0.5),
            retrain=RetrainPolicy(on_drift=False, cooldown_seconds=60),
        ),
    )
    assert effective.monitoring.max_error_rate == 0.5
    assert effective.monitoring.drift_threshold == policy("medium").spec.monitoring.drift_threshold
    assert effective.retrain == RetrainPolicy(on_drift=False, on_decay=True, cooldown_seconds=60)
    no_decay = policy("medium").model_copy(
        update={
            "spec": policy("medium").spec.model_copy(
                update={"retrain": RetrainPolicy(on_decay=False, cooldown_seconds=10)}
            )
        }
    )
    assert resolve_policy(no_decay).retrain == RetrainPolicy(
        on_drift=True, on_decay=False, cooldown_seconds=10
    )
