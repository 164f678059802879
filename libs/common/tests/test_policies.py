"""The committed risk policies are valid, ordered by strictness, and a bad file is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_common.policies import FLOOR_RULES, RISK_CLASSES, PolicyError, load_policies, load_policy
from modelfleet_contracts.training import Task

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"
DEMO_POLICY_DIR = Path(__file__).resolve().parents[3] / "examples" / "demo" / "policies"


def test_every_committed_policy_file_is_a_valid_risk_policy() -> None:
    policies = load_policies(POLICY_DIR)
    assert sorted(policies) == sorted(RISK_CLASSES)
    assert sorted(p.stem for p in POLICY_DIR.glob("*.yaml")) == sorted(RISK_CLASSES)
    for risk_class, policy in policies.items():
        assert policy.metadata.name == risk_class


def test_classes_that_require_approval_list_approvers_and_the_others_none() -> None:
    policies = load_policies(POLICY_DIR)
    for risk_class in ("high", "critical"):
        assert policies[risk_class].spec.rollout.requires_approval is True
        assert policies[risk_class].spec.approvers == ["risk-officer", "head-of-ml"]
    for risk_class in ("low", "medium"):
        assert not policies[risk_class].spec.rollout.requires_approval
        assert policies[risk_class].spec.approvers == []


def test_gates_and_rollout_get_stricter_with_the_risk_class() -> None:
    policies = [load_policies(POLICY_DIR)[risk_class] for risk_class in ("low", "medium", "high", "critical")]

    def bound(index: int, task: Task) -> float:
        [threshold] = policies[index].spec.gates.metric_thresholds[task]
        value = threshold.min if threshold.min is not None else threshold.max
        assert value is not None
        return float(value)

    for lower, higher in zip(range(3), range(1, 4), strict=True):
        assert bound(higher, "classification") >= bound(lower, "classification")
        assert bound(higher, "regression") >= bound(lower, "regression")
        assert bound(higher, "forecasting") <= bound(lower, "forecasting")
        assert (
            policies[higher].spec.gates.non_inferiority_margin
            <= policies[lower].spec.gates.non_inferiority_margin
        )
        assert policies[higher].spec.gates.max_fairness_gap <= policies[lower].spec.gates.max_fairness_gap
        assert policies[higher].spec.gates.min_robustness >= policies[lower].spec.gates.min_robustness
    for policy in policies[2:]:
        assert policy.spec.rollout.shadow is True
        assert policy.spec.rollout.requires_approval is True


def test_an_invalid_policy_names_the_file_and_the_field(tmp_path: Path) -> None:
    text = (POLICY_DIR / "low.yaml").read_text().replace("max_latency_p95_ms: 250", "max_latency_p95_ms: -1")
    (tmp_path / "low.yaml").write_text(text)
    with pytest.raises(
        PolicyError, match=r"low\.yaml: invalid RiskPolicy: spec\.gates\.max_latency_p95_ms: "
    ):
        load_policy(tmp_path / "low.yaml")


def test_a_policy_must_be_named_for_its_file(tmp_path: Path) -> None:
    (tmp_path / "high.yaml").write_text((POLICY_DIR / "low.yaml").read_text())
    with pytest.raises(PolicyError, match=r"high\.yaml: metadata\.name is 'low'"):
        load_policy(tmp_path / "high.yaml")


def test_a_policy_without_thresholds_for_a_task_is_refused(tmp_path: Path) -> None:
    text = (POLICY_DIR / "medium.yaml").read_text()
    text = text.replace("      forecasting:\n        - {metric: smape, max: 0.3}\n", "")
    (tmp_path / "medium.yaml").write_text(text)
    with pytest.raises(PolicyError, match=r"medium\.yaml: .*no thresholds for forecasting"):
        load_policy(tmp_path / "medium.yaml")


def test_a_missing_policy_directory_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="set FLEET_POLICY_DIR"):
        load_policies(tmp_path / "nowhere")


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "low.yaml").write_text((POLICY_DIR / "low.yaml").read_text())
    with pytest.raises(PolicyError, match=r"medium\.yaml: cannot read the policy file"):
        load_policies(tmp_path)


def test_an_unknown_floor_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = (
        (POLICY_DIR / "low.yaml").read_text().replace("    - gates.min_robustness\n", "    - gates.vibes\n")
    )
    (tmp_path / "low.yaml").write_text(text)
    with pytest.raises(
        PolicyError, match=r"low\.yaml: invalid RiskPolicy: spec\.floors\.\d+: Input should be"
    ):
        load_policy(tmp_path / "low.yaml")


def test_a_policy_whose_canary_steps_do_not_increase_is_refused(tmp_path: Path) -> None:
    text = (POLICY_DIR / "low.yaml").read_text().replace("canary_steps: [50, 100]", "canary_steps: [100, 50]")
    (tmp_path / "low.yaml").write_text(text)
    with pytest.raises(
        PolicyError,
        match=r"low\.yaml: rollout\.canary_steps must strictly increase .*\(the low risk policy\)",
    ):
        load_policy(tmp_path / "low.yaml")


def test_approval_is_a_floor_where_it_is_required_and_every_class_floors_its_gates() -> None:
    for directory in (POLICY_DIR, DEMO_POLICY_DIR):
        policies = load_policies(directory)
        for risk_class in ("high", "critical"):
            assert {"rollout.requires_approval", "rollout.shadow", "approvers"} <= set(
                policies[risk_class].spec.floors
            )
        assert set(policies["critical"].spec.floors) == set(FLOOR_RULES)
        for policy in policies.values():
            assert {f for f in FLOOR_RULES if f.startswith("gates.")} <= set(policy.spec.floors)
