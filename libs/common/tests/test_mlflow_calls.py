"""Run artifacts move without a run lookup per call; transient MLflow failures are retried, others not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from modelfleet_common.mlflow_calls import RunArtifacts, is_transient, mlflow_retrying


class CountingClient(MlflowClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_lookups = 0

    def get_run(self, run_id: str) -> Any:
        self.run_lookups += 1
        return super().get_run(run_id)


def test_a_runs_artifacts_round_trip_with_one_run_lookup(tmp_path: Path) -> None:
    client = CountingClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    artifacts = RunArtifacts(client)
    report = tmp_path / "report.md"
    report.write_text("# verdict\n")

    artifacts.upload(run_id, report, "evaluation")
    first = artifacts.download(f"runs:/{run_id}/evaluation/report.md", tmp_path / "one")
    second = artifacts.download(f"runs:/{run_id}/evaluation", tmp_path / "two")

    assert first.read_text() == "# verdict\n"
    assert (second / "report.md").read_text() == "# verdict\n"
    assert client.run_lookups == 1


def test_only_transient_failures_are_retried() -> None:
    calls = {"flaky": 0, "missing": 0}

    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise MlflowException("busy", error_code=databricks_pb2.TEMPORARILY_UNAVAILABLE)
        return "ok"

    def missing() -> None:
        calls["missing"] += 1
        raise MlflowException("no such run", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST)

    assert mlflow_retrying(attempts=3, backoff_seconds=0.001)(flaky) == "ok"
    with pytest.raises(MlflowException, match="no such run"):
        mlflow_retrying(attempts=3, backoff_seconds=0.001)(missing)
    assert calls == {"flaky": 3, "missing": 1}
    assert is_transient(ConnectionError("reset"))
