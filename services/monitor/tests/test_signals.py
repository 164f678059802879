"""Drift, decay and review events from the monitor's handlers, with fake profiles and a fake clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from modelfleet_contracts import (
    DatasetVersionCreated,
    DeploymentChanged,
    DriftDetected,
    LabeledPrediction,
    ModelPromoted,
    ModelRegistered,
    ModelReviewed,
    ModelSpec,
    ModelSpecSubmitted,
    PerformanceDegraded,
    PredictionLogged,
    PredictionsLabeled,
    TrainingFinished,
)
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_monitor import handlers
from modelfleet_monitor.health import HealthTracker
from modelfleet_monitor.references import ReferenceCache

from .profiles import profile_of
from .test_handlers import T0, make_deps

PROFILE_URI = "memory://datasets/telemetry/v1.profile.json"
WINDOW = 200


class FakeProfiles:
    def __init__(
        self, profiles: dict[str, dict[str, Any]], tables: dict[str, pa.Table] | None = None
    ) -> None:
        self.profiles = profiles
        self.tables = tables or {}
        self.reads = 0

    def read(self, uri: str) -> dict[str, Any]:
        self.reads += 1
        return self.profiles[uri]

    def read_table(self, uri: str) -> pa.Table:
        self.reads += 1
        return self.tables[uri]


def spec_event(model: str = "pump", **monitoring: Any) -> ModelSpecSubmitted:
    spec = ModelSpec.model_validate(
        {
            "metadata": {"name": model, "owner": "team@example.com", "risk_class": "medium"},
            "spec": {
                "dataset": {"name": "telemetry"},
                "features": ["temperature", "vibration", "site"],
                "target": "failed",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
                "monitoring": {"window_size": WINDOW, **monitoring},
                "business_kpi": {"name": "avoided_downtime", "unit": "h", "value_per_correct_prediction": 16},
            },
        }
    )
    return ModelSpecSubmitted(producer="cli:test", model=model, revision="r1", spec=spec)


def pump_profiles() -> FakeProfiles:
    """The reference profile of the dataset version the pump model is trained on."""
    rng = np.random.default_rng(5)
    reference = {
        "temperature": rng.normal(70, 5, 3000),
        "vibration": rng.normal(0.3, 0.05, 3000),
        "site": rng.choice(["gbg", "lul"], 3000).tolist(),
        "failed": rng.integers(0, 2, 3000).tolist(),
    }
    return FakeProfiles({PROFILE_URI: profile_of(reference)})


async def fleet_with_one_model(**monitoring: Any) -> tuple[handlers.MonitorDeps, Any, Any]:
    deps, publisher, clock = make_deps()
    deps.tracker = HealthTracker(dedupe_per_model=10_000, started_at=T0)
    deps.references = ReferenceCache(pump_profiles())
    await tell_about_pump(deps, **monitoring)
    return deps, publisher, clock


async def tell_about_pump(deps: handlers.MonitorDeps, **monitoring: Any) -> None:
    """The events the monitor learns the pump model from: spec, dataset version, run, registration."""
    await handlers.note_model_spec(spec_event(**monitoring), deps)
    await handlers.note_dataset_version_created(
        DatasetVersionCreated(
            producer="ingest",
            dataset="telemetry",
            version="v1",
            uri="memory://datasets/telemetry/v1.parquet",
            row_count=3000,
            columns=[],
            source_uri="memory://batches/1.csv",
            profile_uri=PROFILE_URI,
        ),
        deps,
    )
    await handlers.note_training_finished(
        TrainingFinished(
            producer="trainer",
            model="pump",
            spec_revision="r1",
            dataset="telemetry",
            dataset_version="v1",
            template="tabular-classifier",
            template_version="1",
            run_id="run1",
            model_uri="runs:/run1/model",
            metrics={"accuracy": 0.9, "roc_auc": 0.95},
            duration_seconds=1.0,
            code_version="test",
            environment_hash="env",
        ),
        deps,
    )
    await handlers.note_model_registered(
        ModelRegistered(
            producer="registry",
            model="pump",
            version="1",
            run_id="run1",
            model_uri="models:/pump/1",
            digest="d",
            signature="s",
            signing_key_id="k",
            passed_evaluation=True,
            lineage={"dataset": "telemetry", "dataset_version": "v1"},
        ),
        deps,
    )


def traffic(count: int, *, temperature: float = 70.0, prefix: str = "r", seed: int = 1) -> PredictionLogged:
    rng = np.random.default_rng(seed)
    records = [
        PredictionRecord(
            request_id=f"{prefix}{i}",
            version="1",
            route="champion",
            features={
                "temperature": float(rng.normal(temperature, 5)),
                "vibration": float(rng.normal(0.3, 0.05)),
                "site": str(rng.choice(["gbg", "lul"])),
            },
            prediction=int(rng.integers(0, 2)),
            latency_ms=2.0,
            dataset_version="v1",
            predicted_at=T0,
        )
        for i in range(count)
    ]
    return PredictionLogged(producer="serving", model="pump", predictions=records)


def drift_events(publisher: Any) -> list[DriftDetected]:
    return [event for event in publisher.events if isinstance(event, DriftDetected)]


async def test_a_window_like_the_training_data_publishes_no_drift() -> None:
    deps, publisher, _clock = await fleet_with_one_model()
    for batch in range(4):
        await handlers.record_predictions(traffic(100, prefix=f"b{batch}-", seed=batch), deps)
    assert drift_events(publisher) == []
    assert deps.metrics.drift_checks.labels("medium")._value.get() == 2


async def test_a_full_window_of_shifted_inputs_publishes_drift_with_its_numbers() -> None:
    deps, publisher, _clock = await fleet_with_one_model()
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), deps)  # the prediction baseline
    assert drift_events(publisher) == []
    await handlers.record_predictions(traffic(WINDOW - 1, temperature=95.0, prefix="hot-"), deps)
    assert drift_events(publisher) == []  # the window is not full yet
    await handlers.record_predictions(traffic(1, temperature=95.0, prefix="last-"), deps)

    [drift] = drift_events(publisher)
    by_feature = {feature.feature: feature for feature in drift.features}
    assert (drift.model, drift.version, drift.dataset_version, drift.rows) == ("pump", "1", "v1", WINDOW)
    assert by_feature["temperature"].drifted
    assert by_feature["temperature"].method == "psi"
    assert by_feature["temperature"].statistic > by_feature["temperature"].threshold == 0.2
    assert not by_feature["vibration"].drifted
    assert by_feature["site"].method == "psi"
    assert drift.drift_share == 1 / 3
    assert drift.drift_share_threshold == 0.3  # medium's default
    assert "__prediction__" in by_feature
    assert deps.review("pump").drift_events == 1


async def test_the_method_and_threshold_come_from_the_spec() -> None:
    deps, publisher, _clock = await fleet_with_one_model(
        drift_method="ks", drift_threshold=0.01, drift_share=0.6
    )
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0), deps)
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="more-"), deps)
    # Only one of three features drifted: below the spec's share of 0.6, so no event.
    assert drift_events(publisher) == []


async def test_live_accuracy_below_its_evaluated_value_publishes_decay() -> None:
    deps, publisher, _clock = await fleet_with_one_model(max_performance_drop=0.1)
    batch = traffic(WINDOW)
    await handlers.record_predictions(batch, deps)
    for index, record in enumerate(batch.predictions):
        # Half the labels contradict the prediction: live accuracy 0.5 against 0.9 at evaluation.
        label = record.prediction if index % 2 else 1 - int(record.prediction)  # type: ignore[arg-type]
        joined = LabeledPrediction(
            request_id=record.request_id,
            version=record.version,
            route=record.route,
            prediction=record.prediction,
            predicted_at=record.predicted_at,
            label=label,
            observed_at=record.predicted_at,
        )
        await handlers.record_labeled(
            PredictionsLabeled(producer="ingest", model="pump", labeled=[joined]), deps
        )
    [decay] = [event for event in publisher.events if isinstance(event, PerformanceDegraded)]
    assert (decay.metric, decay.baseline, decay.observed, decay.labelled_rows) == (
        "accuracy",
        0.9,
        0.5,
        WINDOW,
    )
    assert decay.threshold == 0.9 - 0.09


async def test_the_review_says_retrain_after_drift_and_keep_after_a_promotion() -> None:
    deps, publisher, clock = await fleet_with_one_model(review_interval_seconds=60)
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), deps)
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="hot-"), deps)
    clock.advance(61)
    await handlers.report_health(clock(), deps)
    [review] = [event for event in publisher.events if isinstance(event, ModelReviewed)]
    assert review.decision == "retrain"
    assert "inputs drifted (drift share 0.33" in review.reason
    assert (review.requests, review.drift_events) == (2 * WINDOW, 1)
    assert review.compute_seconds == 2 * WINDOW * 2.0 / 1000
    assert review.business_kpi == "avoided_downtime (h)"

    await handlers.note_deployment_changed(
        DeploymentChanged(
            producer="deployer",
            model="pump",
            revision=3,
            stage="promoted",
            champion=RouteTarget(
                version="2", model_uri="models:/pump/2", digest="d", signature="s", signing_key_id="k"
            ),
        ),
        deps,
    )
    await handlers.note_model_promoted(
        ModelPromoted(
            producer="deployer", model="pump", version="2", decided_by="deployer", reason="canary passed"
        ),
        deps,
    )
    await handlers.record_predictions(traffic(10, prefix="later-"), deps)
    await handlers.report_health(clock.advance(61), deps)
    latest = [event for event in publisher.events if isinstance(event, ModelReviewed)][-1]
    assert (latest.decision, latest.champion) == ("keep", "2")


async def test_a_reference_is_read_once_for_every_batch_of_a_version() -> None:
    deps, _publisher, _clock = await fleet_with_one_model()
    for batch in range(3):
        await handlers.record_predictions(traffic(10, prefix=f"b{batch}-"), deps)
    assert deps.references.source.reads == 1  # type: ignore[attr-defined]


async def test_a_model_of_one_site_is_compared_with_that_sites_rows_not_the_whole_dataset() -> None:
    deps, publisher, _clock = make_deps()
    deps.tracker = HealthTracker(dedupe_per_model=10_000, started_at=T0)
    rng = np.random.default_rng(9)
    # Two sites with very different machines: the whole dataset looks nothing like either site.
    hot = {
        "temperature": rng.normal(95, 5, 1500),
        "vibration": rng.normal(0.3, 0.05, 1500),
        "site": ["lul"] * 1500,
    }
    cool = {
        "temperature": rng.normal(70, 5, 1500),
        "vibration": rng.normal(0.3, 0.05, 1500),
        "site": ["gbg"] * 1500,
    }
    table = pa.concat_tables([pa.table(hot), pa.table(cool)])
    data_uri = "memory://datasets/telemetry/v1.parquet"
    deps.references = ReferenceCache(
        FakeProfiles({PROFILE_URI: profile_of(table.to_pydict())}, {data_uri: table})
    )
    spec = spec_event()
    body = spec.spec.spec.model_copy(
        update={"dataset": spec.spec.spec.dataset.model_copy(update={"where": {"site": "gbg"}})}
    )
    await handlers.note_model_spec(
        spec.model_copy(update={"spec": spec.spec.model_copy(update={"spec": body})}), deps
    )
    await handlers.note_dataset_version_created(
        DatasetVersionCreated(
            producer="ingest",
            dataset="telemetry",
            version="v1",
            uri=data_uri,
            row_count=3000,
            columns=[],
            source_uri="memory://batches/1.csv",
            profile_uri=PROFILE_URI,
        ),
        deps,
    )
    gbg = traffic(2 * WINDOW)  # temperatures around 70, like the gbg rows
    for record in gbg.predictions:
        record.features["site"] = "gbg"
    await handlers.record_predictions(gbg, deps)
    assert drift_events(publisher) == []
    assert deps.metrics.drift_checks.labels("medium")._value.get() == 1  # one batch, one check


def test_a_small_label_window_just_below_its_bound_is_not_called_decay() -> None:
    from modelfleet_contracts.specs import MonitoringPolicy
    from modelfleet_monitor.watch import VersionWatch

    policy = MonitoringPolicy(window_size=28, max_performance_drop=0.1)
    watch = VersionWatch("pump", "1", "classification")
    # 21 of 28 right: 0.75 against a bound of 0.81, well within the noise of 28 labels.
    watch.add_scores([1.0] * 21 + [0.0] * 7, T0)
    finding = watch.decay_finding(0.9, policy, T0)
    assert finding is not None
    assert finding.observed == 0.75
    assert not finding.decayed
    watch.close_label_window(T0)
    # 10 of 28 right is decay whatever the noise.
    watch.add_scores([1.0] * 10 + [0.0] * 18, T0)
    finding = watch.decay_finding(0.9, policy, T0)
    assert finding is not None
    assert finding.decayed
