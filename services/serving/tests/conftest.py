"""A file-backed MLflow holding small signed scikit-learn models, the way the registry leaves them."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelfleet_common.signing import ArtifactSigner, TrustedKeys, directory_digest
from modelfleet_contracts.rollout import RouteTarget


@dataclass
class Lab:
    """Plays trainer and registry: logs skops models to runs and signs their digests."""

    uri: str
    client: MlflowClient
    experiment_id: str
    signer: ArtifactSigner

    @property
    def trusted(self) -> TrustedKeys:
        return TrustedKeys.from_lines([self.signer.public_key_b64])

    def log_model(
        self, *, seed: int = 0, signer: ArtifactSigner | None = None, columns: tuple[str, str] | None = None
    ) -> RouteTarget:
        """A new run holding a tiny pipeline under `model/`, and its signed route target.

        With `columns` the pipeline is fitted on a DataFrame, so it knows its feature names.
        """
        rng = np.random.default_rng(seed)
        array = rng.normal(size=(30, 2))
        features = array if columns is None else pd.DataFrame(array, columns=list(columns))
        pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, array[:, 0] > 0)
        trusted_types = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
        run_id = self.client.create_run(self.experiment_id).info.run_id
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch) / "model"
            mlflow.sklearn.save_model(
                pipeline,
                str(directory),
                serialization_format="skops",
                skops_trusted_types=trusted_types,
                pip_requirements=["scikit-learn"],
            )
            digest = directory_digest(directory)
            self.client.log_artifacts(run_id, str(directory), "model")
        signing = signer or self.signer
        return RouteTarget(
            version=str(seed + 1),
            model_uri=f"runs:/{run_id}/model",
            digest=digest,
            signature=signing.sign(digest),
            signing_key_id=signing.key_id,
        )

    def stored_file(self, target: RouteTarget, name: str) -> Path:
        """The file as the artifact store keeps it (to tamper with it)."""
        run_id = target.model_uri.removeprefix("runs:/").split("/")[0]
        root = self.client.get_run(run_id).info.artifact_uri.removeprefix("file://")
        return Path(root) / "model" / name


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
    signer = ArtifactSigner.load_or_create(root / "keys" / "registry.pem")
    return Lab(uri=uri, client=client, experiment_id=experiment_id, signer=signer)


@pytest.fixture(scope="session")
def logged(lab: Lab) -> RouteTarget:
    """One verified model, shared by the tests that do not alter it."""
    return lab.log_model(seed=0)
