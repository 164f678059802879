"""The gate math on numbers worked out by hand (or by scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score

from modelfleet_contracts.policies import GateDefaults
from modelfleet_contracts.specs import MetricThreshold
from modelfleet_evaluator.domain import (
    Outcomes,
    bootstrap_non_inferiority,
    cohort_metrics,
    fairness_gate,
    gates_for,
    headroom,
    metric_gates,
    metric_value,
    non_inferiority_gate,
    robustness_ratio,
    threshold_gate,
    with_gaussian_noise,
)


def binary(truth: list[int], positive_scores: list[float]) -> Outcomes:
    scores = np.column_stack([1 - np.asarray(positive_scores), np.asarray(positive_scores)])
    return Outcomes(truth=np.asarray(truth), predicted=scores.argmax(axis=1), scores=scores)


def numeric(truth: list[float], predicted: list[float]) -> Outcomes:
    return Outcomes(truth=np.asarray(truth, dtype=float), predicted=np.asarray(predicted, dtype=float))


def noisy_classifier(truth: np.ndarray, noise: float, seed: int) -> Outcomes:
    rng = np.random.default_rng(seed)
    positive = 1 / (1 + np.exp(-(2 * truth - 1 + rng.normal(0, noise, len(truth)))))
    return binary(truth.tolist(), positive.tolist())


def test_roc_auc_and_accuracy_agree_with_scikit_learn_including_ties() -> None:
    truth = [0, 0, 1, 1, 0, 1, 1, 0]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.2]
    outcomes = binary(truth, scores)
    assert metric_value("roc_auc", outcomes) == pytest.approx(roc_auc_score(truth, scores))
    assert metric_value("accuracy", outcomes) == pytest.approx(6 / 8)  # rows 2 and 5 misclassified


def test_roc_auc_of_a_single_class_is_undefined() -> None:
    assert math.isnan(metric_value("roc_auc", binary([1, 1, 1], [0.2, 0.5, 0.9])))


def test_multiclass_roc_auc_is_the_macro_one_vs_rest_average() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 60)
    scores = rng.dirichlet([1, 1, 1], 60) + np.eye(3)[truth] * 0.3
    scores /= scores.sum(axis=1, keepdims=True)
    outcomes = Outcomes(truth=truth, predicted=scores.argmax(axis=1), scores=scores)
    expected = roc_auc_score(truth, scores, multi_class="ovr", average="macro")
    assert metric_value("roc_auc", outcomes) == pytest.approx(expected)


def test_regression_metrics_match_hand_computed_values() -> None:
    truth, predicted = [3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]
    outcomes = numeric(truth, predicted)
    assert metric_value("r2", outcomes) == pytest.approx(r2_score(truth, predicted))
    assert metric_value("mae", outcomes) == pytest.approx(mean_absolute_error(truth, predicted))
    assert metric_value("rmse", outcomes) == pytest.approx(math.sqrt((0.25 + 0.25 + 0 + 1) / 4))


def test_smape_is_a_fraction_and_two_zeros_count_as_exact() -> None:
    # |100-110|*2/210, |0-0| -> 0, |50-0|*2/50 = 2
    outcomes = numeric([100.0, 0.0, 50.0], [110.0, 0.0, 0.0])
    assert metric_value("smape", outcomes) == pytest.approx((20 / 210 + 0 + 2) / 3)


def test_a_candidate_clearly_worse_than_the_champion_fails_non_inferiority() -> None:
    truth = np.random.default_rng(0).integers(0, 2, 300)
    champion = noisy_classifier(truth, noise=0.5, seed=1)
    candidate = noisy_classifier(truth, noise=3.0, seed=2)
    result = bootstrap_non_inferiority(
        "classification", candidate, champion, margin=0.02, confidence=0.95, samples=200, seed=0
    )
    assert result.candidate < result.champion
    assert result.lower_bound < -0.02
    assert not result.passed
    assert non_inferiority_gate(result, "4").passed is False


def test_a_candidate_equal_to_the_champion_passes_non_inferiority() -> None:
    truth = np.random.default_rng(0).integers(0, 2, 300)
    champion = noisy_classifier(truth, noise=1.0, seed=1)
    result = bootstrap_non_inferiority(
        "classification", champion, champion, margin=0.0, confidence=0.95, samples=100, seed=0
    )
    assert result.lower_bound == 0.0
    gate = non_inferiority_gate(result, "4")
    assert gate.passed
    assert "champion v4" in gate.detail


def test_non_inferiority_flips_the_sign_of_smape_so_lower_is_better() -> None:
    truth = np.linspace(10, 20, 100)
    exact = numeric(truth.tolist(), truth.tolist())
    off = numeric(truth.tolist(), (truth * 1.3).tolist())
    worse = bootstrap_non_inferiority(
        "forecasting", off, exact, margin=0.01, confidence=0.9, samples=50, seed=0
    )
    better = bootstrap_non_inferiority(
        "forecasting", exact, off, margin=0.01, confidence=0.9, samples=50, seed=0
    )
    assert not worse.passed
    assert better.passed
    assert better.mean_difference > 0


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    truth = np.random.default_rng(0).integers(0, 2, 120)
    a, b = noisy_classifier(truth, 1.0, 1), noisy_classifier(truth, 1.5, 2)
    first = bootstrap_non_inferiority("classification", a, b, margin=0.05, confidence=0.9, samples=80, seed=3)
    again = bootstrap_non_inferiority("classification", a, b, margin=0.05, confidence=0.9, samples=80, seed=3)
    assert first == again


def test_the_fairness_gap_is_the_largest_cohort_difference_of_the_primary_metric() -> None:
    # north: every prediction right (r2 = 1); south: r2 = 1 - 8/8 = 0; east has too few rows.
    outcomes = numeric(
        [1.0, 2.0, 3.0, 4.0, 1.0, 3.0, 5.0, 3.0, 9.0],
        [1.0, 2.0, 3.0, 4.0, 3.0, 3.0, 3.0, 3.0, 0.0],
    )
    cohorts = pd.DataFrame({"region": ["north"] * 4 + ["south"] * 4 + ["east"]})
    [region] = cohort_metrics("r2", outcomes, cohorts, min_rows=2)
    assert region.metrics == {"north": pytest.approx(1.0), "south": pytest.approx(0.0)}
    assert region.too_small == ["east"]
    gate = fairness_gate("r2", [region], max_gap=0.5, min_rows=2)
    assert not gate.passed
    assert gate.value == pytest.approx(1.0)
    assert "north=1" in gate.detail
    assert "1 cohort(s) under 2 rows left out" in gate.detail


def test_fairness_passes_with_a_reason_when_no_cohorts_can_be_compared() -> None:
    assert "no cohort columns" in fairness_gate("r2", [], max_gap=0.1, min_rows=30).detail
    outcomes = numeric([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    per_column = cohort_metrics("r2", outcomes, pd.DataFrame({"region": ["a", "a", "b"]}), min_rows=30)
    gate = fairness_gate("r2", per_column, max_gap=0.1, min_rows=30)
    assert gate.passed
    assert "has two cohorts with ≥ 30 rows" in gate.detail


def test_robustness_is_the_share_of_the_metric_kept_and_inverted_when_lower_is_better() -> None:
    assert robustness_ratio("roc_auc", clean=0.8, noisy=0.6) == pytest.approx(0.75)
    assert robustness_ratio("smape", clean=0.1, noisy=0.4) == pytest.approx(0.25)
    assert robustness_ratio("roc_auc", clean=0.8, noisy=0.9) == 1.0
    assert robustness_ratio("r2", clean=-0.2, noisy=-0.1) is None


def test_noise_touches_numeric_columns_only_and_scales_with_their_spread() -> None:
    frame = pd.DataFrame({"wide": np.linspace(0, 100, 200), "flag": [True, False] * 100, "site": ["a"] * 200})
    noisy = with_gaussian_noise(frame, 0.1, np.random.default_rng(0))
    change = (noisy["wide"] - frame["wide"]).std()
    assert change == pytest.approx(0.1 * frame["wide"].std(ddof=0), rel=0.2)
    assert noisy["flag"].equals(frame["flag"])
    assert noisy["site"].equals(frame["site"])


def test_a_candidate_is_held_to_the_effective_gates_of_its_task() -> None:
    defaults = GateDefaults(
        metric_thresholds={
            "classification": [MetricThreshold(metric="roc_auc", min=0.7)],
            "regression": [MetricThreshold(metric="r2", min=0.5)],
        },
        non_inferiority_margin=0.02,
        max_latency_p95_ms=100,
        max_model_size_mb=50,
        max_fairness_gap=0.1,
        min_robustness=0.8,
    )
    gates = gates_for(defaults, "classification")
    assert [t.metric for t in gates.metric_thresholds] == ["roc_auc"]
    assert (gates.max_latency_p95_ms, gates.max_model_size_mb, gates.non_inferiority_margin) == (
        100,
        50,
        0.02,
    )
    assert [t.metric for t in gates_for(defaults, "regression").metric_thresholds] == ["r2"]
    assert gates_for(defaults, "forecasting").metric_thresholds == ()


def test_a_threshold_on_a_metric_the_task_does_not_know_fails_with_the_known_ones() -> None:
    [gate] = metric_gates("regression", [MetricThreshold(metric="roc_auc", min=0.7)], numeric([1.0], [1.0]))
    assert not gate.passed
    assert "r2, rmse, mae" in gate.detail


def test_a_metric_that_cannot_be_computed_fails_its_gate() -> None:
    gate = threshold_gate("metric:roc_auc", math.nan, minimum=0.7)
    assert not gate.passed
    assert gate.value is None
    assert gate.detail == "could not be computed"


def test_headroom_is_positive_on_the_passing_side_whatever_the_direction() -> None:
    assert headroom(threshold_gate("latency_p95", 50.0, maximum=100.0)) == pytest.approx(0.5)
    assert headroom(threshold_gate("metric:roc_auc", 0.6, minimum=0.75)) == pytest.approx(-0.2)
