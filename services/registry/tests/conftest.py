"""A file-backed MLflow holding candidate runs, and the evaluations the evaluator would send."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from modelfleet_common.signing import ArtifactSigner, directory_digest
from modelfleet_contracts import GateResult, ModelEvaluated
from modelfleet_registry.mlflow_registry import MlflowModelRegistry
from modelfleet_registry.registration import Registrar

#: The fleet the registry under test signs for.
TOPIC_PREFIX = "pumps."


@dataclass
class Lab:
    """Plays trainer and evaluator: logs a skops model to a run and evaluates it (by fiat)."""

    uri: str
    root: Path
    client: MlflowClient

    def evaluated(self, model: str, *, passed: bool = True) -> ModelEvaluated:
        """A new run holding a small skops model, and the evaluation of it."""
        name = f"modelfleet/{model}"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(
                name, artifact_location=(self.root / "artifacts" / model).as_uri()
            )
        )
        run_id = self.client.create_run(experiment_id).info.run_id
        rng = np.random.default_rng(0)
        features = rng.normal(size=(30, 2))
        estimator = LogisticRegression().fit(features, features[:, 0] > 0)
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = Path(scratch) / "model"
            mlflow.sklearn.save_model(
                estimator,
                str(model_dir),
                serialization_format="skops",
                skops_trusted_types=[],
                pip_requirements=[],
            )
            digest = directory_digest(model_dir)
            self.client.log_artifacts(run_id, str(model_dir), "model")
        return ModelEvaluated(
            producer="evaluator",
            model=model,
            run_id=run_id,
            model_uri=f"runs:/{run_id}/model",
            spec_revision="rev-1",
            passed=passed,
            gates=[
                GateResult(gate="metric:roc_auc", passed=passed, value=0.9 if passed else 0.4, threshold=0.6)
            ],
            report_uri=f"runs:/{run_id}/evaluation/report.md",
            artifact_digest=digest,
            lineage={
                "dataset": "machines",
                "dataset_version": "d" * 64,
                "template": "tabular-classifier",
                "template_version": "1",
                "spec_revision": "rev-1",
                "code_version": "test",
                "environment_hash": "e" * 64,
                "run_id": run_id,
                "owner": "reliability@example.com",
                "risk_class": "high",
                "purpose": "Predict pump failures a day ahead.",
            },
        )

    def stored_model_file(self, event: ModelEvaluated) -> Path:
        location = self.client.get_run(event.run_id).info.artifact_uri
        return Path(location.removeprefix("file://")) / "model" / "model.skops"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    return Lab(uri=uri, root=root, client=MlflowClient(tracking_uri=uri, registry_uri=uri))


@pytest.fixture
def model_name() -> str:
    return f"pump-failure-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def signer(tmp_path: Path) -> ArtifactSigner:
    return ArtifactSigner.load_or_create(tmp_path / "signing" / "ed25519.pem")


@pytest.fixture
def registrar(lab: Lab, signer: ArtifactSigner) -> Registrar:
    return Registrar(
        registry=MlflowModelRegistry(lab.uri, attempts=1, ready_timeout_seconds=10),
        signer=signer,
        topic_prefix=TOPIC_PREFIX,
    )
