"""The demo's traffic comes from each model's own slice, drift is a real shift with true labels, and
the time from drift to promotion is read from the fleet's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelfleet_cli.manifests import DeclaredModel
from modelfleet_contracts import (
    DriftDetected,
    ModelPromoted,
    ModelRegistered,
    ModelSpec,
    ModelSpecSubmitted,
    PerformanceDegraded,
    RetrainRequested,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.monitoring import FeatureDrift
from modelfleet_contracts.specs import MonitoringPolicy, RolloutPolicy
from modelfleet_devkit.demo import DemoState, load_policies, prepare_models
from modelfleet_devkit.fleet import DEMO_POLICY_DIR
from modelfleet_devkit.loop_driver import (
    DriftCandidate,
    choose_drift_models,
    drift_features,
    drifted_rows,
    loop_timelines,
    model_slice,
    rollout_requests,
    traffic_for,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spec(name: str = "pump-gbg", where: dict[str, str | int] | None = None, risk: str = "low") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "apiVersion": "modelfleet/v1",
            "kind": "ModelSpec",
            "metadata": {
                "name": name,
                "owner": "ops@example.com",
                "risk_class": risk,
                "labels": {"use_case": "maintenance"},
            },
            "spec": {
                "dataset": {"name": "sensors", "where": where if where is not None else {"site": "gbg"}},
                "features": ["temperature", "vibration", "machine"],
                "target": "fails",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
            },
        }
    )


@pytest.fixture
def sensors() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = 400
    temperature = rng.normal(60, 8, rows).round(1)
    vibration = rng.gamma(2.0, 1.0, rows).round(2)
    return pd.DataFrame(
        {
            "site": np.where(np.arange(rows) % 2 == 0, "gbg", "lul"),
            "line": np.arange(rows) % 4,
            "machine": rng.choice(["pump", "fan"], rows),
            "temperature": temperature,
            "vibration": vibration,
            "fails": (temperature + 8 * vibration + rng.normal(0, 4, rows) > 80).astype(int),
        }
    )


def test_a_models_traffic_comes_only_from_its_where_slice(sensors: pd.DataFrame) -> None:
    rows = model_slice(sensors, spec(where={"site": "gbg", "line": 2}))
    assert len(rows) == 100
    assert set(rows["site"]) == {"gbg"}
    assert set(rows["line"]) == {2}


def test_requests_carry_the_features_as_inputs_every_other_column_as_context_and_the_true_label(
    sensors: pd.DataFrame,
) -> None:
    rows = model_slice(sensors, spec())
    traffic = traffic_for(spec(), rows)
    assert len(traffic.rows) == len(rows) == len(traffic.labels) == len(traffic.context)
    features = set(spec().spec.features)
    assert set(traffic.rows[0]) == features
    columns = {"site", "line", "machine", "temperature", "vibration"}
    assert set(traffic.rows[0]) | set(traffic.context[0]) == columns
    assert not features & set(traffic.context[0])
    assert traffic.labels[7] == rows["fails"].iloc[7]
    assert isinstance(traffic.labels[7], int)
    assert traffic.rows[7]["temperature"] == rows["temperature"].iloc[7]


def test_missing_values_are_sent_as_null_not_nan(sensors: pd.DataFrame) -> None:
    sensors.loc[0, "temperature"] = np.nan
    traffic = traffic_for(spec(), model_slice(sensors, spec()))
    assert traffic.rows[0]["temperature"] is None


def test_the_drifted_sample_shifts_the_chosen_feature_and_keeps_true_labels(sensors: pd.DataFrame) -> None:
    rows = model_slice(sensors, spec())
    drifted = drifted_rows(rows, ["vibration"], top_share=0.3)
    assert len(drifted) == 60
    assert drifted["vibration"].min() >= rows["vibration"].quantile(0.69)
    assert drifted["vibration"].mean() > rows["vibration"].mean() + rows["vibration"].std()
    truth = rows.set_index(["temperature", "vibration", "machine"])["fails"]
    for record in drifted.itertuples():
        assert truth.loc[(record.temperature, record.vibration, record.machine)].max() == record.fails


def test_drift_over_two_features_raises_both(sensors: pd.DataFrame) -> None:
    rows = model_slice(sensors, spec())
    drifted = drifted_rows(rows, ["vibration", "temperature"])
    for feature in ("vibration", "temperature"):
        assert drifted[feature].mean() > rows[feature].mean() + 0.5 * rows[feature].std()


def test_drift_needs_a_feature_and_a_share_between_zero_and_one(sensors: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="at least one feature"):
        drifted_rows(sensors, [])
    with pytest.raises(ValueError, match="top_share must be between 0 and 1"):
        drifted_rows(sensors, ["vibration"], top_share=1.5)


def test_enough_numeric_features_are_shifted_for_the_policys_drift_share(sensors: pd.DataFrame) -> None:
    rows = model_slice(sensors, spec())
    one = drift_features(rows, spec(), MonitoringPolicy(drift_share=0.3))
    both = drift_features(rows, spec(), MonitoringPolicy(drift_share=0.5))
    assert len(one) == 1
    assert sorted(both) == ["temperature", "vibration"]
    assert "machine" not in both


def test_a_canary_at_five_percent_costs_more_requests_than_one_at_fifty() -> None:
    slow = rollout_requests(RolloutPolicy(shadow=True, canary_steps=[5, 100], min_requests_per_step=100))
    fast = rollout_requests(RolloutPolicy(shadow=False, canary_steps=[50, 100], min_requests_per_step=60))
    assert slow == 100 + 2000 + 100
    assert fast == 120 + 60


def test_drifted_models_span_three_use_cases_cheapest_first() -> None:
    candidates = [
        DriftCandidate("demand-a", "demand", 180),
        DriftCandidate("demand-b", "demand", 180),
        DriftCandidate("fuel-a", "fuel", 300),
        DriftCandidate("pump-a", "maintenance", 1300),
        DriftCandidate("churn-se", "churn", 13000),
    ]
    assert choose_drift_models(candidates, 4) == ["demand-a", "fuel-a", "pump-a", "demand-b"]
    with pytest.raises(ValueError, match="span 2 use cases; 3 wanted"):
        choose_drift_models(candidates[:3], 3)
    with pytest.raises(ValueError, match="cannot drift 6 of 5"):
        choose_drift_models(candidates, 6)


def drift(model: str, seconds: float) -> DriftDetected:
    return DriftDetected(
        producer="monitor",
        occurred_at=at(seconds),
        model=model,
        version="1",
        window_start=at(seconds - 20),
        window_end=at(seconds),
        dataset_version="e" * 64,
        rows=200,
        drift_share=0.5,
        features=[
            FeatureDrift(feature="vibration", method="psi", statistic=0.9, threshold=0.25, drifted=True),
            FeatureDrift(feature="temperature", method="psi", statistic=0.1, threshold=0.25, drifted=False),
        ],
    )


def promoted(model: str, version: str, seconds: float) -> ModelPromoted:
    return ModelPromoted(
        producer="deployer",
        occurred_at=at(seconds),
        model=model,
        version=version,
        previous_version=None if version == "1" else str(int(version) - 1),
        decided_by="deployer",
        reason="canary passed",
    )


def registered(model: str, version: str, seconds: float) -> ModelRegistered:
    return ModelRegistered(
        producer="registry",
        occurred_at=at(seconds),
        model=model,
        version=version,
        run_id="r" * 16,
        model_uri=f"models:/{model}/{version}",
        digest="d" * 64,
        signature="s",
        signing_key_id="k",
        passed_evaluation=True,
    )


def retrain(model: str, seconds: float) -> RetrainRequested:
    return RetrainRequested(producer="trainer", occurred_at=at(seconds), model=model, reason="drift")


def loop_events() -> list[Event]:
    return [
        promoted("pump", "1", 0),
        promoted("fan", "1", 5),
        drift("pump", 100),
        drift("pump", 110),
        retrain("pump", 101),
        registered("pump", "2", 160),
        promoted("pump", "2", 250),
        drift("fan", 120),
        retrain("fan", 121),
    ]


def test_drift_to_promotion_is_timed_from_the_first_drifted_window_to_the_new_champion() -> None:
    events = sorted(loop_events(), key=lambda e: e.occurred_at)
    lines = loop_timelines(events, ["pump", "fan", "quiet"], since=at(50))
    pump = lines["pump"]
    assert (pump.detected_at, pump.retrain_at, pump.retrain_reason) == (at(100), at(101), "drift")
    assert pump.drift_windows == 2
    assert (pump.champion_before, pump.registered_version, pump.promoted_version) == ("1", "2", "2")
    assert pump.detection_to_promotion_seconds == 150
    assert pump.finding == "drift: share 0.50 · vibration"
    assert lines["fan"].retrain_at == at(121)
    assert lines["fan"].detection_to_promotion_seconds is None
    assert lines["quiet"].detected_at is None


def test_events_before_the_start_do_not_count_as_the_loops_drift() -> None:
    events = sorted(loop_events(), key=lambda e: e.occurred_at)
    lines = loop_timelines(events, ["pump"], since=at(105))
    assert lines["pump"].detected_at == at(110)
    assert lines["pump"].retrain_at is None
    assert lines["pump"].promoted_at is None


def test_the_first_version_becoming_champion_is_not_a_drift_promotion() -> None:
    events = [drift("pump", 10), promoted("pump", "1", 20)]
    assert loop_timelines(events, ["pump"], since=T0).get("pump").promoted_at is None  # type: ignore[union-attr]


def test_the_demo_view_folds_lifecycle_drift_and_retrains_per_model(sensors: pd.DataFrame) -> None:
    policies = load_policies(DEMO_POLICY_DIR)
    declared = [DeclaredModel(spec(name), "rev", Path("fleet.yaml"), "fleet") for name in ("pump", "fan")]
    models = prepare_models(declared, {"sensors": sensors}, policies)
    assert models["pump"].window_size == 200
    assert models["pump"].drift_eligible
    state = DemoState(models, started_at=at(50))
    submitted = ModelSpecSubmitted(
        producer="cli:ana", model="pump", revision="rev", spec=spec("pump"), occurred_at=at(1)
    )
    state.fold(sorted([submitted, *loop_events()], key=lambda e: e.occurred_at))
    assert state.champion("pump") == "2"
    assert state.status["pump"].risk_class == "low"
    assert state.drift_counts == {"pump": 2, "fan": 1}
    assert [r.reason for r in state.retrains["fan"]] == ["drift"]
    assert state.promoted("pump")
    assert not state.promoted("fan")


def test_a_decay_found_before_any_drift_starts_the_loop_too() -> None:
    decay = PerformanceDegraded(
        producer="monitor",
        occurred_at=at(100),
        model="pump",
        version="1",
        window_start=at(40),
        window_end=at(100),
        metric="accuracy",
        baseline=0.9,
        observed=0.7,
        threshold=0.8,
        labelled_rows=200,
    )
    events = [promoted("pump", "1", 0), decay, retrain("pump", 101), drift("pump", 120)]
    events += [registered("pump", "2", 150), promoted("pump", "2", 200)]
    line = loop_timelines(events, ["pump"], since=at(50))["pump"]
    assert line.finding == "decay: accuracy 0.7 < 0.8 on 200 labels"
    assert not line.is_drift
    assert line.drift_windows == 1
    assert line.detection_to_promotion_seconds == 100


def test_a_retrained_version_rolled_back_by_its_canary_settles_the_models_turn() -> None:
    from datetime import UTC, datetime, timedelta

    from modelfleet_contracts import (
        DriftDetected,
        ModelRegistered,
        ModelRolledBack,
        RetrainRequested,
    )
    from modelfleet_devkit.loop_driver import loop_timelines

    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    drift = DriftDetected(
        producer="monitor",
        occurred_at=t0 + timedelta(seconds=10),
        model="m",
        version="1",
        window_start=t0,
        window_end=t0 + timedelta(seconds=10),
        dataset_version="v",
        rows=200,
        drift_share=0.5,
        features=[],
    )
    retrain = RetrainRequested(
        producer="trainer", occurred_at=t0 + timedelta(seconds=11), model="m", reason="drift"
    )
    registered = ModelRegistered(
        producer="registry",
        occurred_at=t0 + timedelta(seconds=30),
        model="m",
        version="2",
        run_id="r",
        model_uri="models:/m/2",
        digest="d",
        signature="s",
        signing_key_id="k",
        passed_evaluation=True,
    )
    rolled_back = ModelRolledBack(
        producer="deployer",
        occurred_at=t0 + timedelta(seconds=60),
        model="m",
        from_version="2",
        to_version="1",
        decided_by="deployer",
        reason="live accuracy 0.5 below 0.77",
    )
    [line] = loop_timelines([drift, retrain, registered, rolled_back], ["m"], since=t0).values()
    assert line.settled
    assert (line.promoted_at, line.rolled_back_version) == (None, "2")
    assert line.rolled_back_reason == "live accuracy 0.5 below 0.77"
