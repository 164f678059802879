"""The data plane answers from the routing table, logs every prediction and reports ground truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import (
    DeploymentChanged,
    GroundTruthObserved,
    ModelArtifactRefused,
    PredictionLogged,
)
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.topics import ARTIFACT_REFUSALS, DEPLOYMENTS, GROUND_TRUTH, PREDICTION_LOGS
from modelfleet_serving import app as serving_app
from modelfleet_serving.app import service
from modelfleet_serving.auth import TokenAuthenticator
from modelfleet_serving.model_store import MlflowModelSource, ModelStore
from modelfleet_serving.routing import bucket

from .conftest import Lab, bearer, signed_for, write_tokens_file

COLUMNS = ("tenure", "spend")
ROW = {"tenure": 0.5, "spend": -1.0}

logged_batches: list[PredictionLogged] = []
observed: list[GroundTruthObserved] = []
refusals: list[ModelArtifactRefused] = []


@service.broker.subscriber(service.namer.topic(PREDICTION_LOGS))  # type: ignore[untyped-decorator]
async def capture_predictions(event: PredictionLogged) -> None:
    logged_batches.append(event)


@service.broker.subscriber(service.namer.topic(GROUND_TRUTH))  # type: ignore[untyped-decorator]
async def capture_ground_truth(event: GroundTruthObserved) -> None:
    observed.append(event)


@service.broker.subscriber(service.namer.topic(ARTIFACT_REFUSALS))  # type: ignore[untyped-decorator]
async def capture_refusals(event: ModelArtifactRefused) -> None:
    refusals.append(event)


@pytest.fixture(scope="module")
def champion(lab: Lab) -> RouteTarget:
    return lab.log_model(seed=20, columns=COLUMNS)


@pytest.fixture(scope="module")
def challenger(lab: Lab) -> RouteTarget:
    return lab.log_model(seed=21, columns=COLUMNS)


@pytest.fixture
async def client(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    store = ModelStore(
        MlflowModelSource(lab.uri, attempts=1),
        lab.trusted,
        scratch_dir=tmp_path / "scratch",
        memory_budget_bytes=50 * 1024 * 1024,
        registry=CollectorRegistry(),
    )
    monkeypatch.setattr(serving_app.plane, "store", store)
    tokens = write_tokens_file(tmp_path / "tokens.yaml")
    monkeypatch.setattr(serving_app.plane, "auth", TokenAuthenticator(tmp_path / "tokens.yaml"))
    logged_batches.clear()
    observed.clear()
    refusals.clear()
    async with (
        TestKafkaBroker(service.broker),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(serving_app.app),
            base_url="http://serving",
            headers=bearer(tokens["ops"]),
        ) as http,
    ):
        yield http


def deploy(model: str, revision: int = 1, **routes: Any) -> None:
    """Apply a table for `model`, its targets signed for `model` as the registry signs them."""
    for name in ("champion", "challenger"):
        if routes.get(name) is not None:
            routes[name] = signed_for(model, routes[name])
    routes["shadows"] = [signed_for(model, target) for target in routes.get("shadows", [])]
    serving_app.table.apply(
        DeploymentChanged(producer="deployer", model=model, revision=revision, stage="canary", **routes)
    )


def key_routed(model: str, weight: float, *, to_challenger: bool) -> str:
    """A request id whose bucket sends it to the challenger (or not) at `weight`."""
    return next(
        key for key in (f"req-{i}" for i in range(1000)) if (bucket(model, key) < weight) == to_challenger
    )


async def logged_records(model: str) -> list[tuple[str, str]]:
    """(route, version) of the model's predictions, once mirrors finished and the log was flushed."""
    await serving_app.plane.wait_for_mirrors()
    await serving_app.prediction_log.flush()
    return [(r.route, r.version) for b in logged_batches if b.model == model for r in b.predictions]


async def test_a_request_key_sticks_to_champion_or_challenger(
    client: httpx.AsyncClient, champion: RouteTarget, challenger: RouteTarget
) -> None:
    deploy("sticky", champion=champion, challenger=challenger, challenger_weight=0.5)
    for to_challenger, version, route in (
        (False, champion.version, "champion"),
        (True, challenger.version, "challenger"),
    ):
        request_id = key_routed("sticky", 0.5, to_challenger=to_challenger)
        for _ in range(2):
            response = await client.post(
                "/predict", json={"model": "sticky", "inputs": [ROW], "request_id": request_id}
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert (answer["model"], answer["version"], answer["route"]) == ("sticky", version, route)
            assert answer["request_id"] == request_id
            assert len(answer["predictions"]) == 1
            assert isinstance(answer["predictions"][0], bool)
            assert set(answer["probabilities"][0]) == {"False", "True"}


async def test_a_shadow_gets_a_mirrored_call_that_is_logged_but_not_returned(
    client: httpx.AsyncClient, champion: RouteTarget, challenger: RouteTarget
) -> None:
    deploy("shadowed", champion=champion, shadows=[challenger])
    response = await client.post("/predict", json={"model": "shadowed", "inputs": [ROW, ROW]})
    assert response.status_code == 200, response.text
    assert (response.json()["version"], response.json()["route"]) == (champion.version, "champion")

    records = await logged_records("shadowed")
    assert sorted(records) == [
        ("champion", champion.version),
        ("champion", champion.version),
        ("shadow", challenger.version),
        ("shadow", challenger.version),
    ]
    assert len([b for b in logged_batches if b.model == "shadowed"]) == 1, "one event per model per flush"


async def test_an_unknown_model_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"model": "nobody", "inputs": [ROW]})
    assert response.status_code == 404
    assert "unknown model 'nobody'" in response.json()["error"]


async def test_a_model_without_a_servable_version_is_not_found(client: httpx.AsyncClient) -> None:
    deploy("retired")
    response = await client.post("/predict", json={"model": "retired", "inputs": [ROW]})
    assert response.status_code == 404
    assert "no champion or challenger" in response.json()["error"]


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ([], "non-empty list"),
        ({"tenure": 1}, "non-empty list"),
        ([{"tenure": 1.0}], "inputs[0] lacks features ['spend']"),
        ([{"tenure": 1.0, "spend": [1]}], "inputs[0]['spend'] must be a number"),
        (
            [{"tenure": 1.0, "spend": "lots"}],
            "inputs[0]['spend'] must be a number (feature 'spend' is double), not the string \"lots\"",
        ),
    ],
)
async def test_bad_inputs_are_unprocessable_and_the_problem_is_named(
    client: httpx.AsyncClient, champion: RouteTarget, inputs: object, problem: str
) -> None:
    deploy("strict", champion=champion)
    response = await client.post("/predict", json={"model": "strict", "inputs": inputs})
    assert response.status_code == 422
    assert problem in response.json()["error"]


async def test_every_logged_prediction_names_the_dataset_version_its_model_was_trained_on(
    client: httpx.AsyncClient, champion: RouteTarget
) -> None:
    deploy("lineaged", champion=champion.model_copy(update={"dataset_version": "ds-4f2a"}))
    response = await client.post("/predict", json={"model": "lineaged", "inputs": [ROW, ROW]})
    assert response.status_code == 200, response.text
    await serving_app.prediction_log.flush()
    records = [r for b in logged_batches if b.model == "lineaged" for r in b.predictions]
    assert [r.dataset_version for r in records] == ["ds-4f2a", "ds-4f2a"]


async def test_a_tampered_artifact_is_refused_never_served_and_reported_once(
    lab: Lab, client: httpx.AsyncClient
) -> None:
    tampered = lab.log_model(seed=22, columns=COLUMNS)
    stored = lab.stored_file(tampered, "MLmodel")
    stored.write_text(stored.read_text() + "\n# tampered\n")
    deploy("tampered", champion=tampered)
    for _ in range(2):
        response = await client.post("/predict", json={"model": "tampered", "inputs": [ROW]})
        assert response.status_code == 503
        assert "is refused and will not be served" in response.json()["error"]
        assert "differs from the signed" in response.json()["error"]
    [refusal] = refusals
    assert (refusal.model, refusal.version, refusal.digest) == ("tampered", tampered.version, tampered.digest)
    assert "differs from the signed" in refusal.reason
    store = serving_app.plane.store
    assert store is not None
    assert ("tampered", tampered.version) not in store.loaded()


async def test_feedback_for_an_answered_request_is_accepted_and_published_as_ground_truth(
    client: httpx.AsyncClient, champion: RouteTarget
) -> None:
    deploy("churn", champion=champion)
    answer = await client.post("/predict", json={"model": "churn", "inputs": [ROW], "request_id": "req-1"})
    assert answer.status_code == 200, answer.text
    response = await client.post("/feedback", json={"model": "churn", "request_id": "req-1", "label": True})
    assert response.status_code == 202, response.text
    [event] = observed
    assert (event.model, event.request_id, event.label, event.producer) == ("churn", "req-1", True, "serving")


async def test_feedback_without_a_label_is_unprocessable(client: httpx.AsyncClient) -> None:
    response = await client.post("/feedback", json={"model": "churn", "request_id": "req-1"})
    assert response.status_code == 422
    assert "'label'" in response.json()["error"]


async def test_the_deployments_subscriber_keeps_the_highest_revision() -> None:
    topic = service.namer.topic(DEPLOYMENTS)
    async with TestKafkaBroker(service.broker) as broker:
        for revision in (3, 2):
            event = DeploymentChanged(
                producer="deployer", model="revised", revision=revision, stage="promoted"
            )
            await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    current = serving_app.table.get("revised")
    assert current is not None
    assert current.revision == 3


def test_each_replica_reads_every_deployment_in_no_consumer_group() -> None:
    deployments = service.namer.topic(DEPLOYMENTS)
    [subscriber] = [s for s in service.broker.subscribers if deployments in s.topic_names]
    assert subscriber.group_id is None  # nothing committed, no group left behind by a restart


async def test_shutdown_flushes_the_buffered_predictions(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, champion: RouteTarget
) -> None:
    keys = tmp_path / "trusted.keys"
    keys.write_text(lab.signer.public_key_b64 + "\n")
    monkeypatch.setattr(serving_app.settings, "trusted_keys_file", keys)
    monkeypatch.setattr(serving_app.settings, "mlflow_tracking_uri", lab.uri)
    monkeypatch.setattr(serving_app.settings, "serving_model_dir", tmp_path / "models")
    monkeypatch.setattr(serving_app.settings, "serving_log_flush_seconds", 3600.0)
    tokens = write_tokens_file(tmp_path / "tokens.yaml")
    monkeypatch.setattr(serving_app.settings, "serving_tokens_file", tmp_path / "tokens.yaml")
    monkeypatch.setattr(serving_app.plane, "store", None)
    monkeypatch.setattr(serving_app.plane, "auth", None)
    deploy("flushed-at-shutdown", champion=champion)
    logged_batches.clear()
    async with (
        TestKafkaBroker(service.broker),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(serving_app.app),
            base_url="http://serving",
            headers=bearer(tokens["ops"]),
        ) as http,
    ):
        await serving_app.start_data_plane()
        response = await http.post("/predict", json={"model": "flushed-at-shutdown", "inputs": [ROW]})
        assert response.status_code == 200, response.text
        await serving_app.stop_data_plane()
    records = [(b.model, r.route) for b in logged_batches for r in b.predictions]
    assert ("flushed-at-shutdown", "champion") in records


async def test_a_table_pointing_a_model_at_another_models_signed_version_is_refused_503_and_reported(
    client: httpx.AsyncClient, champion: RouteTarget
) -> None:
    signed_for_a = signed_for("model-a", champion)
    serving_app.table.apply(
        DeploymentChanged(
            producer="deployer", model="model-b", revision=1, stage="promoted", champion=signed_for_a
        )
    )
    response = await client.post("/predict", json={"model": "model-b", "inputs": [ROW]})
    assert response.status_code == 503
    assert "signature does not bind model 'model-b'" in response.json()["error"]
    [refusal] = refusals
    assert (refusal.model, refusal.version, refusal.digest) == ("model-b", champion.version, champion.digest)
    assert "signature does not bind" in refusal.reason
