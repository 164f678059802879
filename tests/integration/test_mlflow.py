"""The integration fixtures give a real MLflow tracking server and registry."""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient

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
