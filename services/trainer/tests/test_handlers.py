"""What trains when: specs, dataset versions and retrain requests, each trained once, failures classified."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqlIdempotencyStore
from modelfleet_common.state import InMemoryKeyValueStore, StateEngine
from modelfleet_contracts import (
    DatasetVersionCreated,
    ModelSpec,
    ModelSpecRetired,
    ModelSpecSubmitted,
    RetrainRequested,
    TrainingFailed,
    TrainingFinished,
    TrainingStarted,
)
from modelfleet_contracts.envelope import Event
from modelfleet_trainer.catalog import TrainerCatalog
from modelfleet_trainer.coordinator import TrainingCoordinator
from modelfleet_trainer.domain import NotEnoughData, TrainingJob
from modelfleet_trainer.handlers import TrainerDeps, apply_model_spec, record_dataset_version, retrain_model
from modelfleet_trainer.provenance import Provenance
from modelfleet_trainer.runner import TrainingRunner
from modelfleet_trainer.task import TrainingResult


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [event for event in self if isinstance(event, kind)]


class FakeRunner(TrainingRunner):
    """Records what it trains; raises the queued errors first, one per attempt."""

    provenance = Provenance(code_version="abc123", environment_hash="env-hash")

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.errors = list(errors or [])
        self.trained: list[TrainingJob] = []
        self.failed_runs: dict[str, str] = {}
        self.runs = 0

    async def start_run(self, job: TrainingJob, attempt: int) -> str:
        self.runs += 1
        return f"run-{self.runs}"

    async def train(self, job: TrainingJob, run_id: str) -> TrainingResult:
        await asyncio.sleep(0)  # let other deliveries run meanwhile, as a real training would
        if self.errors:
            raise self.errors.pop(0)
        self.trained.append(job)
        return TrainingResult(
            run_id=run_id,
            task="classification",
            model_uri=f"runs:/{run_id}/model",
            holdout_uri=f"runs:/{run_id}/evaluation/holdout.parquet",
            artifact_digest="d" * 64,
            metrics={"roc_auc": 0.9},
            duration_seconds=0.5,
        )

    async def fail_run(self, run_id: str, message: str) -> None:
        self.failed_runs[run_id] = message

    @property
    def trained_on(self) -> list[tuple[str, str]]:
        return [(job.model, job.data.version) for job in self.trained]


def make_deps(runner: FakeRunner, *, max_attempts: int = 3) -> TrainerDeps:
    return TrainerDeps(
        catalog=TrainerCatalog(InMemoryKeyValueStore()),
        handled=InMemoryIdempotencyStore(),
        coordinator=TrainingCoordinator(
            runner=runner, publish=Published(), max_attempts=max_attempts, backoff_seconds=0.001
        ),
    )


def published(deps: TrainerDeps) -> Published:
    publish = deps.coordinator.publish
    assert isinstance(publish, Published)
    return publish


def version(name: str, dataset: str = "machines") -> DatasetVersionCreated:
    return DatasetVersionCreated(
        producer="ingest",
        dataset=dataset,
        version=name,
        uri=f"/data/{dataset}/{name}.parquet",
        row_count=100,
        columns=[],
        source_uri="/in/batch.csv",
    )


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def deps(runner: FakeRunner) -> TrainerDeps:
    return make_deps(runner)


async def test_a_spec_trains_on_the_latest_version_and_publishes_started_then_finished(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    submission = submit(make_spec())

    await apply_model_spec(submission, deps)

    assert runner.trained_on == [("pump-failure", "v1")]
    started, finished = published(deps)
    assert isinstance(started, TrainingStarted)
    assert isinstance(finished, TrainingFinished)
    assert (started.run_id, started.attempt) == (finished.run_id, 1)
    assert finished.spec_revision == submission.revision
    assert finished.spec == submission.spec
    assert (finished.task, finished.artifact_digest, finished.code_version) == (
        "classification",
        "d" * 64,
        "abc123",
    )
    assert finished.holdout_uri == f"runs:/{finished.run_id}/evaluation/holdout.parquet"
    assert finished.causation_id == submission.event_id
    assert finished.correlation_id == submission.correlation_id
    assert runner.trained[0].trigger == "spec"


async def test_a_redelivered_spec_trains_once(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    submission = submit(make_spec())

    await apply_model_spec(submission, deps)
    await apply_model_spec(submission, deps)  # redelivered
    await apply_model_spec(submit(make_spec()), deps)  # re-applied, unchanged

    assert runner.trained_on == [("pump-failure", "v1")]


async def test_a_delivery_while_the_same_training_runs_does_not_start_another(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    submission = submit(make_spec())

    await asyncio.gather(apply_model_spec(submission, deps), apply_model_spec(submission, deps))

    assert runner.trained_on == [("pump-failure", "v1")]


async def test_a_spec_waiting_for_data_trains_when_the_first_version_arrives(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await apply_model_spec(submit(make_spec()), deps)
    assert runner.trained == []

    await record_dataset_version(version("v1"), deps)

    assert runner.trained_on == [("pump-failure", "v1")]
    assert runner.trained[0].trigger == "new_data"


async def test_latest_specs_retrain_on_a_new_version_and_pinned_ones_do_not(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    await apply_model_spec(submit(make_spec("follows-latest")), deps)
    await apply_model_spec(submit(make_spec("pinned", dataset_version="v1")), deps)
    await apply_model_spec(submit(make_spec("other-data", dataset="weather")), deps)

    await record_dataset_version(version("v2"), deps)
    await record_dataset_version(version("v2"), deps)  # announced twice

    assert sorted(runner.trained_on) == [("follows-latest", "v1"), ("follows-latest", "v2"), ("pinned", "v1")]


async def test_a_spec_pinned_to_a_future_version_trains_when_exactly_that_version_arrives(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await apply_model_spec(submit(make_spec(dataset_version="v2")), deps)

    await record_dataset_version(version("v1"), deps)
    assert runner.trained == []
    await record_dataset_version(version("v2"), deps)

    assert runner.trained_on == [("pump-failure", "v2")]


async def test_a_new_revision_of_a_spec_trains_again_on_the_same_data(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    await apply_model_spec(submit(make_spec()), deps)
    await apply_model_spec(submit(make_spec(hyperparameters={"C": 0.5})), deps)

    assert runner.trained_on == [("pump-failure", "v1"), ("pump-failure", "v1")]
    assert runner.trained[1].spec.spec.hyperparameters == {"C": 0.5}


async def test_an_older_submission_redelivered_late_does_not_replace_the_newer_spec(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    older = submit(make_spec(hyperparameters={"C": 0.5}))
    newer = submit(make_spec(hyperparameters={"C": 2.0}))
    await apply_model_spec(newer, deps)
    await apply_model_spec(older, deps)

    known = deps.catalog.spec("pump-failure")
    assert known is not None
    assert known.revision == newer.revision


async def test_a_retired_model_is_not_trained_on_new_data(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await apply_model_spec(submit(make_spec()), deps)
    await apply_model_spec(
        ModelSpecRetired(producer="cli:test", model="pump-failure", reason="replaced"), deps
    )

    await record_dataset_version(version("v1"), deps)

    assert runner.trained == []


async def test_a_retrain_request_trains_the_current_spec_on_the_latest_version_once(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)
    await apply_model_spec(submit(make_spec()), deps)
    request = RetrainRequested(producer="monitor", model="pump-failure", reason="drift")

    await retrain_model(request, deps)
    await retrain_model(request, deps)  # redelivered

    assert runner.trained_on == [("pump-failure", "v1"), ("pump-failure", "v1")]
    assert runner.trained[1].trigger == "drift"
    assert published(deps)[-1].causation_id == request.event_id


async def test_a_retrain_request_of_an_unknown_model_fails_permanently_and_clearly(deps: TrainerDeps) -> None:
    request = RetrainRequested(producer="cli:ops", model="ghost", reason="manual")

    await retrain_model(request, deps)

    [failed] = published(deps)
    assert isinstance(failed, TrainingFailed)
    assert (failed.model, failed.failure, failed.error_type) == ("ghost", "permanent", "UnknownModel")
    assert "knows no current spec of it" in failed.message
    assert failed.causation_id == request.event_id


async def test_a_retrain_request_before_any_data_fails_permanently(
    deps: TrainerDeps, make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    await apply_model_spec(submit(make_spec()), deps)

    await retrain_model(RetrainRequested(producer="cli:ops", model="pump-failure", reason="manual"), deps)

    [failed] = published(deps)
    assert isinstance(failed, TrainingFailed)
    assert failed.error_type == "DatasetNotReady"
    assert "dataset 'machines' has no version 'latest' yet" in failed.message


async def test_a_bad_hyperparameter_is_a_permanent_failure_naming_the_parameter(
    deps: TrainerDeps,
    runner: FakeRunner,
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    await record_dataset_version(version("v1"), deps)

    await apply_model_spec(submit(make_spec(hyperparameters={"C": 0})), deps)

    [failed] = published(deps)
    assert isinstance(failed, TrainingFailed)
    assert (failed.failure, failed.error_type, failed.run_id) == ("permanent", "InvalidHyperparameters", None)
    assert "'C' = 0 is invalid" in failed.message
    assert runner.runs == 0  # refused before any run was opened


async def test_an_unknown_template_is_a_permanent_failure_listing_the_known_ones(
    deps: TrainerDeps, make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    await record_dataset_version(version("v1"), deps)

    await apply_model_spec(submit(make_spec(template="tabular-classifier", version="7")), deps)

    [failed] = published(deps)
    assert isinstance(failed, TrainingFailed)
    assert failed.error_type == "UnknownTemplate"
    assert "known templates: tabular-classifier v1, tabular-classifier v2" in failed.message


async def test_a_transient_error_is_retried_then_reported_as_transient(
    make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    runner = FakeRunner(errors=[ConnectionError("mlflow unreachable")] * 3)
    deps = make_deps(runner, max_attempts=3)
    await record_dataset_version(version("v1"), deps)

    await apply_model_spec(submit(make_spec()), deps)

    started = published(deps).of(TrainingStarted)
    [failed] = published(deps).of(TrainingFailed)
    assert [event.attempt for event in started] == [1, 2, 3]  # type: ignore[attr-defined]
    assert isinstance(failed, TrainingFailed)
    assert (failed.failure, failed.error_type, failed.attempt, failed.run_id) == (
        "transient",
        "ConnectionError",
        3,
        "run-3",
    )
    assert "gave up after 3 attempt(s); last error: mlflow unreachable" in failed.message
    assert sorted(runner.failed_runs) == ["run-1", "run-2", "run-3"]


async def test_a_transient_error_that_passes_ends_in_a_finished_training(
    make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    runner = FakeRunner(errors=[ConnectionError("blip")])
    deps = make_deps(runner)
    await record_dataset_version(version("v1"), deps)

    await apply_model_spec(submit(make_spec()), deps)

    [finished] = published(deps).of(TrainingFinished)
    assert isinstance(finished, TrainingFinished)
    assert finished.run_id == "run-2"
    assert runner.failed_runs == {"run-1": "ConnectionError: blip"}


async def test_a_permanent_error_from_training_is_not_retried(
    make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    runner = FakeRunner(errors=[NotEnoughData("3 rows")])
    deps = make_deps(runner)
    await record_dataset_version(version("v1"), deps)

    await apply_model_spec(submit(make_spec()), deps)

    assert runner.runs == 1
    [failed] = published(deps).of(TrainingFailed)
    assert isinstance(failed, TrainingFailed)
    assert (failed.failure, failed.error_type, failed.run_id) == ("permanent", "NotEnoughData", "run-1")


async def test_no_more_trainings_run_at_once_than_allowed(
    make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    running = 0
    most = 0

    class SlowRunner(FakeRunner):
        async def train(self, job: TrainingJob, run_id: str) -> TrainingResult:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1
            return await super().train(job, run_id)

    runner = SlowRunner()
    deps = make_deps(runner)
    for name in ("a-model", "b-model", "c-model", "d-model"):
        await apply_model_spec(submit(make_spec(name)), deps)

    await record_dataset_version(version("v1"), deps)

    assert len(runner.trained) == 4
    assert most == 2


async def test_what_the_trainer_learned_survives_a_restart(
    tmp_path: Path, make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    def durable_deps(runner: FakeRunner) -> TrainerDeps:
        engine = StateEngine.sqlite(tmp_path / "state.sqlite")
        return TrainerDeps(
            catalog=TrainerCatalog(engine.key_values()),
            handled=SqlIdempotencyStore(engine, ttl_seconds=3600),
            coordinator=TrainingCoordinator(runner=runner, publish=Published()),
        )

    await apply_model_spec(submit(make_spec()), durable_deps(FakeRunner()))
    await record_dataset_version(version("v1", dataset="weather"), durable_deps(FakeRunner()))

    after_restart = FakeRunner()
    await record_dataset_version(version("v1"), durable_deps(after_restart))
    await record_dataset_version(version("v1"), durable_deps(after_restart))  # redelivered after a restart

    assert after_restart.trained_on == [("pump-failure", "v1")]
