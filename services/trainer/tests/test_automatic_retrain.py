"""Drift and decay retrain a model at most once per cooldown; feedback versions train nobody."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelfleet_common.policies import load_policies
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    FeatureDrift,
    ModelSpec,
    PerformanceDegraded,
    RetrainRequested,
    TrainingFinished,
)
from modelfleet_trainer.handlers import (
    TrainerDeps,
    apply_model_spec,
    record_dataset_version,
    retrain_model,
    retrain_on_decay,
    retrain_on_drift,
)

from .conftest import model_spec, submitted
from .test_handlers import FakeRunner, make_deps, published, version

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
POLICIES = load_policies(Path(os.environ.get("FLEET_POLICY_DIR", "policies")))


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def deps(runner: FakeRunner) -> TrainerDeps:
    deps = make_deps(runner)
    deps.policies = POLICIES
    deps.data_wait_seconds = 2.0
    return deps


def drift(at: datetime, model: str = "pump-failure") -> DriftDetected:
    return DriftDetected(
        producer="monitor",
        occurred_at=at,
        model=model,
        version="1",
        window_start=at - timedelta(minutes=5),
        window_end=at,
        dataset_version="v1",
        rows=1000,
        drift_share=0.5,
        drift_share_threshold=0.5,
        features=[
            FeatureDrift(feature="temperature", method="psi", statistic=0.41, threshold=0.25, drifted=True),
            FeatureDrift(feature="load", method="psi", statistic=0.02, threshold=0.25, drifted=False),
        ],
    )


def decay(at: datetime) -> PerformanceDegraded:
    return PerformanceDegraded(
        producer="monitor",
        occurred_at=at,
        model="pump-failure",
        version="1",
        window_start=at - timedelta(minutes=5),
        window_end=at,
        metric="accuracy",
        baseline=0.9,
        observed=0.6,
        threshold=0.765,
        labelled_rows=1000,
    )


def spec_with_retrain(**retrain: Any) -> ModelSpec:
    spec = model_spec()
    body = spec.spec.model_copy(update={"retrain": spec.spec.retrain.model_copy(update=retrain)})
    return spec.model_copy(update={"spec": body})


async def trained_model(deps: TrainerDeps, spec: ModelSpec | None = None) -> None:
    await apply_model_spec(submitted(spec or model_spec()), deps)
    await record_dataset_version(version("v1"), deps)


def requests(deps: TrainerDeps) -> list[RetrainRequested]:
    return [event for event in published(deps).of(RetrainRequested) if isinstance(event, RetrainRequested)]


async def test_a_burst_of_drift_events_asks_for_one_retrain_with_the_numbers(deps: TrainerDeps) -> None:
    await trained_model(deps)
    burst = [drift(T0 + timedelta(seconds=10 * i)) for i in range(5)]
    for event in burst:
        await retrain_on_drift(event, deps)

    [request] = requests(deps)
    assert (request.model, request.reason, request.producer) == ("pump-failure", "drift", "trainer")
    assert (
        request.detail == "v1 drift share 0.50 (threshold 0.50) over 1000 rows: temperature psi 0.41 vs 0.25"
    )
    assert request.causation_id == burst[0].event_id
    assert request.correlation_id == burst[0].correlation_id


async def test_drift_after_the_cooldown_retrains_again(deps: TrainerDeps) -> None:
    await trained_model(deps)
    cooldown = POLICIES["low"].spec.retrain.cooldown_seconds
    assert cooldown is not None
    await retrain_on_drift(drift(T0), deps)
    await retrain_on_drift(drift(T0 + timedelta(seconds=cooldown - 1)), deps)
    await retrain_on_drift(drift(T0 + timedelta(seconds=cooldown + 1)), deps)
    assert len(requests(deps)) == 2


async def test_the_spec_cooldown_overrides_the_risk_class(deps: TrainerDeps) -> None:
    await trained_model(deps, spec_with_retrain(cooldown_seconds=30))
    await retrain_on_drift(drift(T0), deps)
    await retrain_on_drift(drift(T0 + timedelta(seconds=31)), deps)
    assert len(requests(deps)) == 2


async def test_a_redelivered_drift_event_asks_again_with_the_same_request_id(deps: TrainerDeps) -> None:
    await trained_model(deps)
    event = drift(T0)
    await retrain_on_drift(event, deps)
    await retrain_on_drift(event, deps)  # e.g. the first publish's acknowledgement was lost
    first, again = requests(deps)
    assert first.event_id == again.event_id  # so the retrain itself runs once


async def test_a_spec_without_retraining_on_drift_is_left_to_people(deps: TrainerDeps) -> None:
    await trained_model(deps, spec_with_retrain(on_drift=False))
    await retrain_on_drift(drift(T0), deps)
    assert requests(deps) == []
    await retrain_on_decay(decay(T0), deps)
    [request] = requests(deps)
    assert request.reason == "decay"
    assert request.detail == "v1 live accuracy 0.6 < 0.765 (evaluated 0.9) over 1000 labels"


async def test_drift_of_an_unknown_model_retrains_nothing(deps: TrainerDeps) -> None:
    await retrain_on_drift(drift(T0, model="ghost"), deps)
    assert requests(deps) == []


async def test_a_feedback_version_trains_nobody_but_the_next_retrain_uses_it(
    deps: TrainerDeps, runner: FakeRunner
) -> None:
    await trained_model(deps)
    feedback = DatasetVersionCreated(
        producer="ingest",
        dataset="machines",
        version="v2",
        uri="/data/machines/v2.parquet",
        row_count=150,
        columns=[],
        source_uri="/data/feedback/machines/abc.parquet",
        origin="feedback",
        feedback_rows=50,
    )
    await record_dataset_version(feedback, deps)
    assert runner.trained_on == [("pump-failure", "v1")]

    await retrain_on_drift(drift(feedback.occurred_at - timedelta(seconds=1)), deps)
    [request] = requests(deps)
    await retrain_model(request, deps)
    assert runner.trained_on == [("pump-failure", "v1"), ("pump-failure", "v2")]
    assert runner.trained[-1].trigger == "drift"
    finished = published(deps).of(TrainingFinished)[-1]
    assert finished.causation_id == request.event_id


def feedback_version(name: str, at: datetime) -> DatasetVersionCreated:
    return DatasetVersionCreated(
        producer="ingest",
        occurred_at=at,
        dataset="machines",
        version=name,
        uri=f"/data/machines/{name}.parquet",
        row_count=150,
        columns=[],
        source_uri=f"/data/feedback/machines/{name}.parquet",
        origin="feedback",
        feedback_rows=50,
    )


async def test_a_retrain_on_drift_waits_for_the_feedback_of_the_drifted_window(
    deps: TrainerDeps, runner: FakeRunner
) -> None:
    await trained_model(deps)
    await record_dataset_version(feedback_version("v2", T0 - timedelta(minutes=1)), deps)  # older feedback
    await retrain_on_drift(drift(T0), deps)
    [request] = requests(deps)
    assert request.data_after == T0

    retraining = asyncio.create_task(retrain_model(request, deps))
    await asyncio.sleep(0.2)
    assert runner.trained_on == [("pump-failure", "v1")]  # still waiting
    await record_dataset_version(feedback_version("v3", T0 + timedelta(seconds=5)), deps)
    await retraining
    assert runner.trained_on[-1] == ("pump-failure", "v3")


async def test_without_newer_feedback_the_retrain_uses_the_newest_data_after_the_wait(
    deps: TrainerDeps, runner: FakeRunner
) -> None:
    deps.data_wait_seconds = 0.1
    await trained_model(deps)
    await retrain_on_drift(drift(datetime.now(UTC) + timedelta(hours=1)), deps)
    [request] = requests(deps)
    await retrain_model(request, deps)
    assert runner.trained_on == [("pump-failure", "v1"), ("pump-failure", "v1")]
