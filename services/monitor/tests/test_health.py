"""The window math of `health`: counts, percentiles, live metrics, dedupe and the memory bound."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from pydantic import JsonValue

from modelfleet_contracts.serving import LabeledPrediction, PredictionRecord, Route
from modelfleet_contracts.specs import MonitoringPolicy
from modelfleet_monitor.health import (
    HealthTracker,
    LabelScore,
    LiveTask,
    WindowKey,
    label_score,
    live_task_of_template,
    slo_violations,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    request_id: str,
    *,
    version: str = "1",
    route: Route = "champion",
    latency_ms: float = 10.0,
    prediction: int | float | str | None = 1,
    error: str | None = None,
) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        version=version,
        route=route,
        features={"x": 1.0},
        prediction=None if error else prediction,
        latency_ms=latency_ms,
        error=error,
        predicted_at=T0,
    )


def tracker(*, dedupe: int = 1000) -> HealthTracker:
    return HealthTracker(dedupe_per_model=dedupe, started_at=T0)


def joined(
    request_id: str,
    label: JsonValue,
    *,
    version: str = "1",
    route: Route = "champion",
    prediction: JsonValue = 1,
) -> LabeledPrediction:
    """One answer of a request, joined with its label by ingest."""
    return LabeledPrediction(
        request_id=request_id,
        version=version,
        route=route,
        prediction=prediction,
        predicted_at=T0,
        label=label,
        observed_at=T0,
    )


def add_join(
    health: HealthTracker,
    model: str,
    *labeled: LabeledPrediction,
    task: LiveTask = "classification",
    join: UUID | None = None,
) -> list[LabelScore]:
    return health.add_labeled(model, join or uuid4(), labeled, task)


def test_a_window_counts_requests_and_errors_per_version_and_route() -> None:
    health = tracker()
    batch = [record(f"r{i}", latency_ms=float(i)) for i in range(1, 9)]
    batch += [record("r9", error="boom"), record("r10", error="boom")]
    batch += [record("s1", version="2", route="shadow"), record("s2", version="2", route="shadow")]
    health.add_predictions("churn", batch, now=0.0)

    summaries = health.drain(T0 + timedelta(seconds=10))

    assert [s.key for s in summaries] == [
        WindowKey("churn", "1", "champion"),
        WindowKey("churn", "2", "shadow"),
    ]
    champion, shadow = summaries
    assert (champion.requests, champion.errors, champion.error_rate) == (10, 2, 0.2)
    assert (shadow.requests, shadow.errors) == (2, 0)
    assert (champion.window_start, champion.window_end) == (T0, T0 + timedelta(seconds=10))


def test_latency_percentiles_cover_every_batch_of_the_window() -> None:
    health = tracker()
    health.add_predictions("churn", [record(f"a{i}", latency_ms=float(i)) for i in range(1, 51)], now=0.0)
    health.add_predictions("churn", [record(f"b{i}", latency_ms=float(i)) for i in range(51, 101)], now=1.0)

    (summary,) = health.drain(T0)

    assert summary.latency_p50_ms == pytest.approx(50.5)
    assert summary.latency_p95_ms == pytest.approx(95.05)
    assert summary.latency_p99_ms == pytest.approx(99.01)


def test_draining_closes_the_window_and_a_silent_version_is_not_reported() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1")], now=0.0)
    health.drain(T0 + timedelta(seconds=10))
    health.add_predictions("churn", [record("r2", version="2", route="challenger")], now=15.0)

    summaries = health.drain(T0 + timedelta(seconds=20))

    assert [(s.key.version, s.requests) for s in summaries] == [("2", 1)]
    assert summaries[0].window_start == T0 + timedelta(seconds=10)


def test_a_redelivered_batch_does_not_double_count() -> None:
    health = tracker()
    batch = [record("r1"), record("r2", error="boom")]
    assert len(health.add_predictions("churn", batch, now=0.0)) == 2

    assert len(health.add_predictions("churn", batch, now=1.0)) == 0
    (summary,) = health.drain(T0)

    assert (summary.requests, summary.errors) == (2, 1)


def test_a_redelivery_after_the_report_is_not_counted_again() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1")], now=0.0)
    health.drain(T0)

    assert len(health.add_predictions("churn", [record("r1")], now=5.0)) == 0
    assert health.drain(T0 + timedelta(seconds=10)) == []


def test_the_same_request_mirrored_to_a_shadow_counts_for_both_versions() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1"), record("r1", version="2", route="shadow")], now=0.0)
    assert [s.requests for s in health.drain(T0)] == [1, 1]


def test_live_accuracy_is_the_share_of_labels_the_version_predicted() -> None:
    health = tracker()
    health.add_predictions(
        "churn",
        [record("r1", prediction=1), record("r2", prediction=0), record("r3", prediction="yes")],
        now=0.0,
    )
    health.add_predictions("churn", [record("r1", version="2", route="shadow", prediction=0)], now=0.0)

    assert (
        len(
            add_join(
                health, "churn", joined("r1", 1), joined("r1", 1, version="2", route="shadow", prediction=0)
            )
        )
        == 2
    )
    assert len(add_join(health, "churn", joined("r2", 1, prediction=0))) == 1
    assert len(add_join(health, "churn", joined("r3", "yes", prediction="yes"))) == 1
    champion, shadow = health.drain(T0)

    assert (champion.labelled, champion.live_metric) == (3, "accuracy")
    assert champion.live_metric_value == pytest.approx(2 / 3)
    assert (shadow.labelled, shadow.live_metric_value) == (1, 0.0)


def test_a_window_without_labels_has_no_live_metric() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1")], now=0.0)
    (summary,) = health.drain(T0)
    assert (summary.labelled, summary.live_metric, summary.live_metric_value) == (0, None, None)


def test_regression_labels_give_the_negated_mean_absolute_error() -> None:
    health = tracker()
    health.add_predictions("price", [record("r1", prediction=10.0), record("r2", prediction=4.0)], now=0.0)
    add_join(
        health,
        "price",
        joined("r1", 12.0, prediction=10.0),
        joined("r2", 3, prediction=4.0),
        task="regression",
    )

    (summary,) = health.drain(T0)

    assert summary.live_metric == "neg_mae"
    assert summary.live_metric_value == pytest.approx(-1.5)


def test_a_republished_join_is_scored_once() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1", prediction=1)], now=0.0)
    join = uuid4()
    assert len(add_join(health, "churn", joined("r1", 0), join=join)) == 1
    assert len(add_join(health, "churn", joined("r1", 0), join=join)) == 0
    (summary,) = health.drain(T0)
    assert (summary.labelled, summary.live_metric_value) == (1, 0.0)


def test_a_label_that_is_not_comparable_scores_nothing() -> None:
    health = tracker()
    assert add_join(health, "price", joined("r1", "high", prediction=3.0), task="regression") == []
    assert add_join(health, "price", joined("r2", None, prediction=3.0), task="regression") == []


def test_a_join_hours_after_its_prediction_counts_for_the_version_and_route_that_made_it() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1", version="2", route="challenger", prediction=1)], now=0.0)
    health.drain(T0)  # many reports later (the monitor once forgot predictions after an hour)

    add_join(health, "churn", joined("r1", 1, version="2", route="challenger"))
    health.add_predictions("churn", [record("r2", version="2", route="challenger")], now=5 * 3600.0)
    (summary,) = health.drain(T0 + timedelta(hours=5))

    assert summary.key == WindowKey("churn", "2", "challenger")
    assert (summary.requests, summary.labelled, summary.live_metric_value) == (1, 1, 1.0)


def test_labels_arriving_between_reports_count_in_the_next_window_with_traffic() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1", prediction=1)], now=0.0)
    health.drain(T0)
    add_join(health, "churn", joined("r1", 1))
    assert health.drain(T0 + timedelta(seconds=10)) == []

    health.add_predictions("churn", [record("r2")], now=12.0)
    (summary,) = health.drain(T0 + timedelta(seconds=20))

    assert (summary.requests, summary.labelled, summary.live_metric_value) == (1, 1, 1.0)


def test_the_memory_of_recent_predictions_and_joins_is_bounded() -> None:
    health = tracker(dedupe=3)
    health.add_predictions("churn", [record(f"r{i}") for i in range(5)], now=0.0)
    health.drain(T0)

    # r0 and r1 were forgotten: a redelivery of them counts again, of r4 it does not.
    assert [r.request_id for r in health.add_predictions("churn", [record("r0"), record("r4")], now=1.0)] == [
        "r0"
    ]
    joins = [uuid4() for _ in range(5)]
    for join in joins:
        add_join(health, "churn", joined("r1", 1), join=join)
    assert add_join(health, "churn", joined("r1", 1), join=joins[0]) != []
    assert add_join(health, "churn", joined("r1", 1), join=joins[4]) == []


def test_forgetting_a_model_drops_its_windows_and_memory() -> None:
    health = tracker()
    health.add_predictions("churn", [record("r1")], now=0.0)
    add_join(health, "churn", joined("r1", 1))
    health.forget("churn")
    assert (health.models(), health.drain(T0)) == (set(), [])


def test_a_tracker_needs_a_positive_memory() -> None:
    with pytest.raises(ValueError, match="dedupe_per_model must be at least 1"):
        HealthTracker(dedupe_per_model=0, started_at=T0)


def test_error_rate_and_p99_above_their_bounds_are_violations() -> None:
    health = tracker()
    health.add_predictions(
        "churn", [record("r1", latency_ms=500.0, error="boom"), record("r2", latency_ms=500.0)], now=0.0
    )
    (summary,) = health.drain(T0)
    policy = MonitoringPolicy(max_error_rate=0.1, max_latency_p99_ms=250)

    violations = slo_violations(summary, policy)

    assert [(v.slo, v.objective, v.observed) for v in violations] == [
        ("error_rate", 0.1, 0.5),
        ("latency_p99_ms", 250, 500.0),
    ]
    assert slo_violations(summary, policy, min_requests=3) == []
    assert slo_violations(summary, MonitoringPolicy(max_error_rate=0.5, max_latency_p99_ms=500)) == []


def test_regressor_and_forecaster_templates_score_numbers_and_others_score_classes() -> None:
    assert live_task_of_template("tabular-regressor") == "regression"
    assert live_task_of_template("demand-forecaster") == "regression"
    assert live_task_of_template("tabular-classifier") == "classification"
    assert live_task_of_template(None) == "classification"


def test_classes_spelled_as_int_or_float_are_the_same_class() -> None:
    assert label_score(1, 1.0, "classification") == 1.0
    assert label_score("a", "b", "classification") == 0.0
    assert label_score("a", 3.0, "regression") is None


def test_a_window_reports_the_spread_of_its_label_scores() -> None:
    health = tracker()
    health.add_predictions("price", [record("r1", prediction=10.0), record("r2", prediction=4.0)], now=0.0)
    add_join(health, "price", joined("r1", 12.0, prediction=10.0), task="regression")  # score -2
    add_join(health, "price", joined("r2", 0.0, prediction=4.0), task="regression")  # score -4
    (summary,) = health.drain(T0)
    assert (summary.live_metric_value, summary.live_metric_std) == (-3.0, 1.0)
