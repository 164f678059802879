"""The integration fixtures give a real MLflow tracking server and registry, behind auth."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow.artifacts
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelfleet_devkit import mlflow as local_mlflow

from .fleet import mlflow_env, mlflow_home

pytestmark = pytest.mark.integration


def test_the_mlflow_server_tracks_runs_and_registers_models(mlflow_uri: str) -> None:
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    experiment = client.create_experiment(f"fixture-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "roc_auc", 0.91)
    name = f"fixture-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)

    assert client.get_run(run.info.run_id).data.metrics == {"roc_auc": 0.91}
    assert client.get_registered_model(name).name == name


# MLflow behind its basic-auth app: what each fleet user may do on the session's real server.


@pytest.fixture
def local_users(mlflow_uri: str) -> Path:
    """The session's own server (its users' password files); an MLflow server of yours is not checked."""
    if not mlflow_env("trainer", mlflow_uri):
        pytest.skip("FLEET_MLFLOW_TRACKING_URI names an MLflow server of your own")
    return mlflow_home()


def sign_in_as(monkeypatch: pytest.MonkeyPatch, user: str, mlflow_uri: str) -> MlflowClient:
    """This process's MLflow clients as `user` (its password file is read on every request)."""
    for name, value in mlflow_env(user, mlflow_uri).items():
        monkeypatch.setenv(name, value)
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def create_experiment(mlflow_uri: str, auth: tuple[str, str] | None) -> httpx.Response:
    return httpx.post(
        f"{mlflow_uri}/api/2.0/mlflow/experiments/create",
        json={"name": f"anonymous-{uuid.uuid4().hex[:8]}"},
        auth=auth,
        trust_env=False,
        timeout=10,
    )


def test_anonymous_and_wrong_password_requests_are_refused(mlflow_uri: str, local_users: Path) -> None:
    assert create_experiment(mlflow_uri, None).status_code == 401
    assert create_experiment(mlflow_uri, ("trainer", "not-its-password")).status_code == 401
    assert create_experiment(mlflow_uri, ("nobody", "whatever")).status_code == 401
    anonymous_read = httpx.get(
        f"{mlflow_uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, trust_env=False
    )
    assert anonymous_read.status_code == 401
    # Its own password file works; /health stays open for probes.
    password = local_mlflow.password_file(local_users, "trainer").read_text().strip()
    assert create_experiment(mlflow_uri, ("trainer", password)).status_code == 200
    assert httpx.get(f"{mlflow_uri}/health", trust_env=False).status_code == 200


def forbidden(call: Callable[[], object]) -> bool:
    try:
        call()
    except MlflowException as error:
        return error.error_code == "PERMISSION_DENIED" or "403" in error.message
    return False


def test_each_service_user_can_do_its_part_and_no_more(
    mlflow_uri: str, local_users: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    trainer = sign_in_as(monkeypatch, "trainer", mlflow_uri)
    experiment = trainer.create_experiment(f"auth-{suffix}")
    run_id = trainer.create_run(experiment).info.run_id
    trainer.log_metric(run_id, "roc_auc", 0.91)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.skops").write_bytes(b"not really a model")
    trainer.log_artifacts(run_id, str(model_dir), "model")
    trainer.set_terminated(run_id)
    assert forbidden(lambda: trainer.create_registered_model(f"auth-model-{suffix}"))

    evaluator = sign_in_as(monkeypatch, "evaluator", mlflow_uri)
    evaluator.log_metric(run_id, "eval_roc_auc", 0.9)
    evaluator.set_tag(run_id, "modelfleet.verdict", "passed")
    assert forbidden(lambda: evaluator.delete_run(run_id))

    registry = sign_in_as(monkeypatch, "registry", mlflow_uri)
    name = f"auth-model-{suffix}"
    registry.create_registered_model(name)
    version = registry.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    registry.set_registered_model_alias(name, "champion", version)
    assert forbidden(lambda: registry.log_metric(run_id, "forged", 1.0))

    serving = sign_in_as(monkeypatch, "serving", mlflow_uri)
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=serving.get_model_version_download_uri(name, version),
        dst_path=str(tmp_path / "serving"),
        tracking_uri=mlflow_uri,
    )
    assert (Path(downloaded) / "model.skops").read_bytes() == b"not really a model"
    assert forbidden(lambda: serving.set_registered_model_alias(name, "champion", "1"))
    assert forbidden(lambda: serving.log_metric(run_id, "forged", 1.0))

    cli = sign_in_as(monkeypatch, "cli", mlflow_uri)
    assert cli.get_registered_model(name).aliases == {"champion": version}
    assert forbidden(lambda: cli.set_tag(run_id, "modelfleet.verdict", "failed"))
    assert forbidden(lambda: cli.delete_registered_model_alias(name, "champion"))
