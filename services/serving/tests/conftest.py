"""A file-backed MLflow holding small signed scikit-learn models, the way the registry leaves them."""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelfleet_common.signing import ArtifactSigner, TrustedKeys, VersionBinding, directory_digest
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving.auth import token_hash


@dataclass
class Lab:
    """Plays trainer and registry: logs skops models to runs and signs their bindings."""

    uri: str
    client: MlflowClient
    experiment_id: str
    signer: ArtifactSigner

    @property
    def trusted(self) -> TrustedKeys:
        return TrustedKeys.from_lines([self.signer.public_key_b64])

    def log_model(
        self,
        *,
        seed: int = 0,
        signer: ArtifactSigner | None = None,
        columns: tuple[str, str] | None = None,
        model: str = "churn",
    ) -> RouteTarget:
        """A new run holding a tiny pipeline under `model/`, and its route target signed as version
        `seed + 1` of `model` (`signed_for` signs it for another model).

        With `columns` the pipeline is fitted on a DataFrame, so it knows its feature names, and
        the model carries a signature (each feature's type), as the trainer's models do.
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
                signature=None if columns is None else infer_signature(features, pipeline.predict(features)),
            )
            digest = directory_digest(directory)
            self.client.log_artifacts(run_id, str(directory), "model")
        unsigned = RouteTarget(
            version=str(seed + 1),
            model_uri=f"runs:/{run_id}/model",
            digest=digest,
            signature="",
            signing_key_id="",
        )
        return signed_for(model, unsigned, signer or self.signer)

    def stored_file(self, target: RouteTarget, name: str) -> Path:
        """The file as the artifact store keeps it (to tamper with it)."""
        run_id = target.model_uri.removeprefix("runs:/").split("/")[0]
        root = self.client.get_run(run_id).info.artifact_uri.removeprefix("file://")
        return Path(root) / "model" / name


#: The registry key of every lab: module-level, so helpers can sign a target for the model they route.
REGISTRY_SIGNER = ArtifactSigner(Ed25519PrivateKey.generate())


def signed_for(
    model: str, target: RouteTarget, signer: ArtifactSigner = REGISTRY_SIGNER, topic_prefix: str = ""
) -> RouteTarget:
    """`target` as the registry signs it for `model` in the fleet of `topic_prefix` (default: "")."""
    binding = VersionBinding(model, target.version, target.digest, topic_prefix)
    return target.model_copy(update={"signature": signer.sign(binding), "signing_key_id": signer.key_id})


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("serving-tests", artifact_location=(root / "artifacts").as_uri())
    return Lab(uri=uri, client=client, experiment_id=experiment_id, signer=REGISTRY_SIGNER)


@pytest.fixture(scope="session")
def logged(lab: Lab) -> RouteTarget:
    """One verified model, shared by the tests that do not alter it."""
    return lab.log_model(seed=0)


#: Tokens of the data-plane tests: name → (scopes, model prefix).
TOKENS: dict[str, tuple[list[str], str]] = {
    "ops": (["predict", "feedback"], ""),
    "predictor": (["predict"], ""),
    "churn-app": (["predict", "feedback"], "churn-"),
}


def write_tokens_file(path: Path) -> dict[str, str]:
    """A tokens file holding the hashes of `TOKENS`; returns each name's token."""
    tokens = {name: f"mfs_test_{name}_{secrets.token_urlsafe(16)}" for name in TOKENS}
    entries = [
        {"name": name, "sha256": token_hash(tokens[name]), "scopes": scopes, "model_prefix": prefix}
        for name, (scopes, prefix) in TOKENS.items()
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
