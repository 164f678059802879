"""A file-backed MLflow and a way to produce the candidate runs the trainer would."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelfleet_common.signing import ArtifactSigner, VersionBinding, directory_digest
from modelfleet_contracts import ModelSpec, TrainingFinished
from modelfleet_contracts.specs import (
    DatasetBinding,
    GatePolicy,
    ModelMetadata,
    ModelSpecBody,
    PipelineRef,
)
from modelfleet_contracts.training import Task

#: Gates loose enough that a sound model passes on any machine: no test depends on wall-clock time.
RELAXED_GATES = GatePolicy(max_latency_p95_ms=60_000)


def machine_data(rows: int = 240, seed: int = 7) -> pd.DataFrame:
    """Two numeric features, a cohort column and a binary target the features explain well."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "temperature": rng.normal(70, 10, rows),
            "vibration": rng.normal(0, 1, rows),
            "segment": np.where(rng.random(rows) < 0.5, "north", "south"),
        }
    )
    signal = (frame["temperature"] - 70) / 10 + frame["vibration"] + rng.normal(0, 0.7, rows)
    frame["failed"] = (signal > 0).astype(int)
    frame["load"] = 3 * frame["temperature"] + 5 * frame["vibration"] + rng.normal(0, 2, rows)
    return frame


def spec_for(
    name: str,
    *,
    target: str = "failed",
    features: tuple[str, ...] = ("temperature", "vibration"),
    gates: GatePolicy = RELAXED_GATES,
    risk_class: str = "low",
) -> ModelSpec:
    return ModelSpec(
        metadata=ModelMetadata(
            name=name, owner="reliability@example.com", purpose="Predict failures.", risk_class=risk_class
        ),  # type: ignore[arg-type]
        spec=ModelSpecBody(
            dataset=DatasetBinding(name="machines"),
            features=list(features),
            target=target,
            cohort_columns=["segment"],
            pipeline=PipelineRef(template="tabular-classifier", version="1"),
            gates=gates,
        ),
    )


#: The fleet the evaluator under test belongs to.
TOPIC_PREFIX = "reliability."


@dataclass
class Lab:
    """Plays the trainer: logs skops models and holdouts into runs of a file-backed MLflow."""

    uri: str
    root: Path
    client: MlflowClient

    def experiment(self, model: str) -> str:
        name = f"modelfleet/{model}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return self.client.create_experiment(
            name, artifact_location=(self.root / "artifacts" / model).as_uri()
        )

    def train(
        self,
        model: str,
        estimator: Any = None,
        *,
        task: Task = "classification",
        spec: ModelSpec | None = None,
        trusted_types: list[str] | None = None,
        holdout: pd.DataFrame | None = None,
    ) -> TrainingFinished:
        """Fit, save with skops, log model and holdout to a new run; the event the trainer would send."""
        spec = spec or spec_for(model)
        frame = machine_data() if holdout is None else holdout
        features, target = spec.spec.features, spec.spec.target
        estimator = (
            estimator if estimator is not None else make_pipeline(StandardScaler(), LogisticRegression())
        )
        estimator.fit(frame[features], frame[target])
        run = self.client.create_run(self.experiment(model), tags={"modelfleet.model": model})
        run_id = run.info.run_id
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = Path(scratch) / "model"
            mlflow.sklearn.save_model(
                estimator,
                str(model_dir),
                serialization_format="skops",
                skops_trusted_types=trusted_types or [],
                pip_requirements=["scikit-learn", "skops"],
            )
            digest = directory_digest(model_dir)
            self.client.log_artifacts(run_id, str(model_dir), "model")
            holdout_path = Path(scratch) / "holdout.parquet"
            frame.to_parquet(holdout_path)
            self.client.log_artifact(run_id, str(holdout_path), "evaluation")
        self.client.set_terminated(run_id)
        return TrainingFinished(
            producer="trainer",
            model=model,
            spec_revision="rev-1",
            dataset="machines",
            dataset_version="d" * 64,
            template=spec.spec.pipeline.template,
            template_version=spec.spec.pipeline.version,
            run_id=run_id,
            model_uri=f"runs:/{run_id}/model",
            duration_seconds=1.0,
            code_version="test",
            environment_hash="e" * 64,
            task=task,
            artifact_digest=digest,
            holdout_uri=f"runs:/{run_id}/evaluation/holdout.parquet",
            spec=spec,
        )

    def artifact_file(self, event: TrainingFinished, relative: str) -> Path:
        """The stored file of a run's artifact (local artifact root), to tamper with."""
        location = self.client.get_run(event.run_id).info.artifact_uri
        return Path(location.removeprefix("file://")) / relative

    def crown(
        self,
        event: TrainingFinished,
        signer: ArtifactSigner,
        *,
        signed_for: str | None = None,
        topic_prefix: str = TOPIC_PREFIX,
    ) -> str:
        """Register the run's model as the signed champion, as registry and deployer would.

        The registry signs (model, version, digest, topic prefix); `signed_for` names another
        model to sign for, as if another model's signature were copied onto this version.
        """
        assert event.artifact_digest is not None
        if not self.client.search_registered_models(f"name='{event.model}'"):
            self.client.create_registered_model(event.model)
        version = str(
            self.client.create_model_version(
                event.model,
                event.model_uri,
                run_id=event.run_id,
                tags={"modelfleet.digest": event.artifact_digest, "modelfleet.verdict": "passed"},
            ).version
        )
        binding = VersionBinding(signed_for or event.model, version, event.artifact_digest, topic_prefix)
        self.client.set_model_version_tag(event.model, version, "modelfleet.signature", signer.sign(binding))
        self.client.set_model_version_tag(event.model, version, "modelfleet.signing_key_id", signer.key_id)
        self.client.set_registered_model_alias(event.model, "champion", version)
        return version


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    return Lab(uri=uri, root=root, client=MlflowClient(tracking_uri=uri, registry_uri=uri))


@pytest.fixture
def model_name() -> str:
    return f"pump-failure-{uuid.uuid4().hex[:8]}"
