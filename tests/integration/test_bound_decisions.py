"""Decisions bound to what was decided, on the secured broker and a real MLflow, with serving running.

The test plays registry (it signs with the fleet's registry key) and deployer; as the Kafka admin
it can also publish what only the deployer may, i.e. forge routing tables:

- a table pointing model B at model A's signed version is refused by serving (503, and a
  `ModelArtifactRefused` on the topic), while model A keeps answering;
- a table skipping 1000 revisions ahead is ignored: the model keeps answering with its champion.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from modelfleet_common.signing import ArtifactSigner, VersionBinding, directory_digest
from modelfleet_contracts import DeploymentChanged, ModelArtifactRefused
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.topics import ARTIFACT_REFUSALS, DEPLOYMENTS

from . import fleet as fleet_helpers
from .fleet import RunningFleet, SecuredBroker, running_fleet

pytestmark = pytest.mark.integration

COLUMNS = ["x1", "x2"]
ROW = {"x1": 0.3, "x2": -1.2}


@pytest.fixture(scope="module")
def serving_only(
    kafka_broker: SecuredBroker, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    with running_fleet(tmp_path_factory.mktemp("bound"), kafka_broker, mlflow_uri, ("serving",)) as running:
        yield running


def log_version(fleet: RunningFleet, *, seed: int) -> RouteTarget:
    """A tiny classifier logged to a new run, as the trainer leaves it (unsigned)."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(rng.normal(size=(40, 2)), columns=COLUMNS)
    estimator = LogisticRegression().fit(features, features["x1"] > 0)
    experiment = fleet.mlflow.create_experiment(f"bound-{fleet.suffix}-{seed}")
    run_id = fleet.mlflow.create_run(experiment).info.run_id
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "model"
        mlflow.sklearn.save_model(
            estimator,
            str(directory),
            serialization_format="skops",
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(estimator)),
            pip_requirements=["scikit-learn"],
            signature=infer_signature(features, estimator.predict(features)),
        )
        digest = directory_digest(directory)
        fleet.mlflow.log_artifacts(run_id, str(directory), "model")
    return RouteTarget(
        version="1", model_uri=f"runs:/{run_id}/model", digest=digest, signature="", signing_key_id=""
    )


def signed(fleet: RunningFleet, model: str, target: RouteTarget) -> RouteTarget:
    """`target` signed by the fleet's registry key for `model` in this fleet, as the registry does."""
    signer = ArtifactSigner.load_or_create(fleet.root / "keys" / "registry.pem")
    binding = VersionBinding(model, target.version, target.digest, fleet.namer.prefix)
    return target.model_copy(update={"signature": signer.sign(binding), "signing_key_id": signer.key_id})


async def publish_table(fleet: RunningFleet, model: str, revision: int, champion: RouteTarget) -> None:
    """Publish a routing table as the admin: a table only the deployer's principal could publish."""
    table = DeploymentChanged(
        producer="deployer", model=model, revision=revision, stage="promoted", champion=champion
    )
    await fleet.kafka.publish(
        fleet.namer.topic(DEPLOYMENTS), table.model_dump_json().encode(), key=model.encode()
    )


async def answer(fleet: RunningFleet, model: str, accept: set[int], timeout: float = 60) -> httpx.Response:
    """Serving's answer for `model`, once its status is in `accept` (tables arrive asynchronously)."""
    url = f"{fleet.services['serving'].url}/predict"
    body: dict[str, Any] = {"model": model, "inputs": [ROW]}
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=60, headers=fleet_helpers.SERVING_HEADERS) as client:
        while True:
            response = await client.post(url, json=body)
            if response.status_code in accept or asyncio.get_running_loop().time() > deadline:
                return response
            await asyncio.sleep(0.5)


async def test_a_forged_table_pointing_model_b_at_model_as_signed_version_is_refused(
    serving_only: RunningFleet,
) -> None:
    fleet = serving_only
    model_a, model_b = f"bound-a{fleet.suffix}", f"bound-b{fleet.suffix}"
    version_a = signed(fleet, model_a, log_version(fleet, seed=1))
    await publish_table(fleet, model_a, 1, version_a)
    assert (await answer(fleet, model_a, {200})).status_code == 200

    await publish_table(fleet, model_b, 1, version_a)

    refused = await answer(fleet, model_b, {503})
    assert refused.status_code == 503, refused.text
    assert f"signature does not bind model '{model_b}'" in refused.json()["error"]
    refusals = await fleet.events(
        ARTIFACT_REFUSALS, until=lambda found: [e for e in found if e.model == model_b]
    )
    [refusal] = [e for e in refusals if e.model == model_b]
    assert isinstance(refusal, ModelArtifactRefused)
    assert (refusal.version, refusal.digest) == (version_a.version, version_a.digest)
    serving = fleet.services["serving"]
    assert serving.metric("fleet_serving_artifacts_refused_total", model=model_b, reason="binding") == 1
    assert (await answer(fleet, model_a, {200})).status_code == 200, "model A keeps answering"


async def test_a_forged_table_1000_revisions_ahead_is_ignored_and_the_champion_keeps_answering(
    serving_only: RunningFleet,
) -> None:
    fleet = serving_only
    model = f"bound-c{fleet.suffix}"
    champion = signed(fleet, model, log_version(fleet, seed=2))
    await publish_table(fleet, model, 1, champion)
    assert (await answer(fleet, model, {200})).json()["version"] == "1"
    serving = fleet.services["serving"]

    # Signed correctly even: only the revision is wrong. Version 7 does not exist anywhere.
    elsewhere = signed(fleet, model, champion.model_copy(update={"version": "7"}))
    await publish_table(fleet, model, 1001, elsewhere)

    serving.wait_for_metric("fleet_serving_routing_tables_ignored_total", 1, reason="jump")
    kept = await answer(fleet, model, {200})
    assert (kept.status_code, kept.json()["version"]) == (200, "1")
