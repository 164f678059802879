"""A training lands in MLflow exactly as docs/assembly-line.md lays it out, and its model loads back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_common.signing import directory_digest
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import (
    ModelSpec,
    ModelSpecSubmitted,
    TrainingFailed,
    TrainingFinished,
    TrainingStarted,
)
from modelfleet_contracts.envelope import Event
from modelfleet_trainer.catalog import TrainerCatalog
from modelfleet_trainer.coordinator import TrainingCoordinator
from modelfleet_trainer.handlers import TrainerDeps, apply_model_spec, record_dataset_version
from modelfleet_trainer.provenance import Provenance, current_provenance, model_requirements
from modelfleet_trainer.runner import InProcessRunner
from modelfleet_trainer.task import TaskConfig
from modelfleet_trainer.templates import get_template

from .conftest import StoredVersion, TrackingServer


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


def in_process_deps(tracking: TrackingServer) -> TrainerDeps:
    runner = InProcessRunner(
        TaskConfig(tracking_uri=tracking.uri, artifact_root=tracking.artifact_root),
        Provenance(code_version="c0ffee", environment_hash="e" * 64),
    )
    return TrainerDeps(
        catalog=TrainerCatalog(InMemoryKeyValueStore()),
        handled=InMemoryIdempotencyStore(),
        coordinator=TrainingCoordinator(runner=runner, publish=Published(), backoff_seconds=0.001),
    )


async def test_a_training_is_logged_with_lineage_inputs_model_holdout_and_spec(
    mlflow_tracking: TrackingServer,
    store_version: Callable[..., StoredVersion],
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking.uri)
    deps = in_process_deps(mlflow_tracking)
    stored = store_version()
    await record_dataset_version(stored.event, deps)
    submission = submit(
        make_spec("layout-check", template="tabular-classifier", version="2", where={"running": True})
    )

    await apply_model_spec(submission, deps)

    started, finished = deps.coordinator.publish  # type: ignore[misc]
    assert isinstance(started, TrainingStarted)
    assert isinstance(finished, TrainingFinished)
    client = MlflowClient(mlflow_tracking.uri)
    run = client.get_run(finished.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "modelfleet/layout-check"
    lineage = {
        "modelfleet.model": "layout-check",
        "modelfleet.spec_revision": submission.revision,
        "modelfleet.dataset": "machines",
        "modelfleet.dataset_version": stored.event.version,
        "modelfleet.template": "tabular-classifier",
        "modelfleet.template_version": "2",
        "modelfleet.code_version": "c0ffee",
        "modelfleet.environment_hash": "e" * 64,
        "modelfleet.correlation_id": submission.correlation_id,
        "modelfleet.trigger": "spec",
    }
    assert {key: run.data.tags.get(key) for key in lineage} == lineage
    assert run.data.params["learning_rate"] == "0.1"
    assert run.data.params["max_depth"] == "null"
    assert run.data.metrics == finished.metrics
    assert set(finished.metrics) == {"roc_auc", "accuracy", "log_loss"}

    [dataset_input] = run.inputs.dataset_inputs
    assert (dataset_input.dataset.name, dataset_input.dataset.digest) == (
        "machines",
        stored.event.version[:36],
    )
    assert stored.event.uri in dataset_input.dataset.source
    assert {tag.key: tag.value for tag in dataset_input.tags} == {
        "mlflow.data.context": "training",
        "modelfleet.dataset_version": stored.event.version,
        "modelfleet.where": '{"running": true}',
    }

    model_dir = Path(
        mlflow.artifacts.download_artifacts(finished.model_uri, dst_path=str(tmp_path / "model"))
    )
    assert directory_digest(model_dir) == finished.artifact_digest
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["flavors"]["sklearn"]["skops_trusted_types"] == list(
        get_template("tabular-classifier", "2").trusted_types
    )
    requirements = (model_dir / "requirements.txt").read_text().splitlines()
    assert set(model_requirements()) <= set(requirements)

    holdout_path = mlflow.artifacts.download_artifacts(
        finished.holdout_uri, dst_path=str(tmp_path / "holdout")
    )
    holdout = pd.read_parquet(holdout_path)
    assert list(holdout.columns) == ["temperature", "load", "market", "running", "failed"]
    assert holdout["running"].all()
    spec_path = mlflow.artifacts.download_artifacts(
        f"runs:/{finished.run_id}/modelfleet/spec.json", dst_path=str(tmp_path)
    )
    assert ModelSpec.model_validate(json.loads(Path(spec_path).read_text())) == submission.spec

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    loaded = mlflow.sklearn.load_model(finished.model_uri)
    assert set(loaded.predict(holdout)) <= {0, 1}
    assert finished.duration_seconds > 0
    assert (finished.code_version, finished.task, finished.spec) == (
        "c0ffee",
        "classification",
        submission.spec,
    )


async def test_a_training_that_fails_on_the_data_marks_its_run_failed_with_the_reason(
    mlflow_tracking: TrackingServer,
    store_version: Callable[..., StoredVersion],
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    deps = in_process_deps(mlflow_tracking)
    await record_dataset_version(store_version().event, deps)

    await apply_model_spec(submit(make_spec("no-such-column", features=["vibration"])), deps)

    started, failed = deps.coordinator.publish  # type: ignore[misc]
    assert isinstance(started, TrainingStarted)
    assert isinstance(failed, TrainingFailed)
    assert (failed.failure, failed.error_type, failed.run_id) == (
        "permanent",
        "MissingColumns",
        started.run_id,
    )
    run = MlflowClient(mlflow_tracking.uri).get_run(started.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["modelfleet.error"].startswith(
        "MissingColumns: columns missing from dataset 'machines'"
    )


def test_the_environment_hash_and_code_version_are_stable_and_overridable() -> None:
    first = current_provenance()
    assert current_provenance() == first
    assert len(first.environment_hash) == 64
    assert current_provenance("release-42").code_version == "release-42"
