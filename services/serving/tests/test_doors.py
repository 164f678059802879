"""Serving's doors: who may call, how much they may send, what the model is given, what may be labelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry

from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving import app as serving_app
from modelfleet_serving.api import AnsweredRequests, Limits
from modelfleet_serving.app import service
from modelfleet_serving.auth import (
    OpenDoor,
    TokenAuthenticator,
    TokensFileError,
    authenticator_from_settings,
    token_hash,
)
from modelfleet_serving.model_store import MlflowModelSource, ModelStore

from .conftest import Lab, bearer, signed_for, write_tokens_file

COLUMNS = ("tenure", "spend")
ROW = {"tenure": 0.5, "spend": -1.0}
#: 2.5 million empty rows: 7.5 MB of `{},`, the body that took serving ~30 s before the caps.
HUGE_ROWS = 2_500_000


def huge_body(model: str) -> bytes:
    return b'{"model": "' + model.encode() + b'", "inputs": [' + b"{}," * (HUGE_ROWS - 1) + b"{}]}"


@pytest.fixture(scope="module")
def target(lab: Lab) -> RouteTarget:
    return lab.log_model(seed=30, columns=COLUMNS)


@pytest.fixture
async def doors(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client without a token, and the tokens of conftest.TOKENS."""
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
    monkeypatch.setattr(serving_app.plane, "limits", Limits())
    monkeypatch.setattr(serving_app.plane, "answered", AnsweredRequests(ttl_seconds=3600, max_per_model=1000))
    async with (
        TestKafkaBroker(service.broker),
        httpx.AsyncClient(transport=httpx.ASGITransport(serving_app.app), base_url="http://serving") as http,
    ):
        yield http, tokens


def deploy(model: str, target: RouteTarget) -> None:
    current = serving_app.table.get(model)
    revision = 1 if current is None else current.revision + 1
    serving_app.table.apply(
        DeploymentChanged(
            producer="deployer",
            model=model,
            revision=revision,
            stage="promoted",
            champion=signed_for(model, target),
        )
    )


def predict_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "inputs": [ROW], **extra}


# -- who may call ----------------------------------------------------------------------------------


async def test_a_request_without_a_token_is_unauthorized_with_a_bearer_challenge(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = doors
    for path, body in (("/predict", predict_body("churn-se")), ("/feedback", {"model": "x"})):
        response = await http.post(path, json=body)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer ")
        assert "bearer token is required" in response.json()["error"]


async def test_an_unknown_token_is_unauthorized(doors: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    http, _ = doors
    response = await http.post("/predict", json=predict_body("churn-se"), headers=bearer("mfs_guessed"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_token_without_the_feedback_scope_is_forbidden_to_send_labels(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = doors
    body = {"model": "churn-se", "request_id": "r", "label": 1}
    response = await http.post("/feedback", json=body, headers=bearer(tokens["predictor"]))
    assert response.status_code == 403
    assert "lacks the 'feedback' scope" in response.json()["error"]
    assert 'scope="feedback"' in response.headers["www-authenticate"]


async def test_a_token_limited_to_a_prefix_is_forbidden_other_models(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("fraud-eu", target)
    deploy("churn-se", target)
    churn_app = bearer(tokens["churn-app"])
    outside = await http.post("/predict", json=predict_body("fraud-eu"), headers=churn_app)
    assert outside.status_code == 403
    assert "limited to models starting with 'churn-'" in outside.json()["error"]
    label = {"model": "fraud-eu", "request_id": "r", "label": 1}
    assert (await http.post("/feedback", json=label, headers=churn_app)).status_code == 403
    inside = await http.post("/predict", json=predict_body("churn-se"), headers=churn_app)
    assert inside.status_code == 200, inside.text


async def test_health_readiness_and_metrics_stay_open(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = doors
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/metrics")).status_code == 200
    assert (await http.get("/readyz")).status_code in (200, 503)  # open; ready once the broker is


def test_serving_refuses_to_start_without_a_tokens_file_unless_auth_is_explicitly_disabled(
    tmp_path: Path,
) -> None:
    with pytest.raises(TokensFileError, match="FLEET_SERVING_TOKENS_FILE"):
        authenticator_from_settings("required", None)
    with pytest.raises(TokensFileError, match="cannot read"):
        authenticator_from_settings("required", tmp_path / "absent.yaml")
    assert isinstance(authenticator_from_settings("disabled", None), OpenDoor)


def test_a_tokens_file_with_a_plain_token_instead_of_its_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": [{"name": "a", "sha256": "hunter2", "scopes": ["predict"]}]}))
    with pytest.raises(TokensFileError, match="sha256"):
        TokenAuthenticator(path)


def test_a_token_added_to_the_file_is_accepted_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    write_tokens_file(path)
    now = [0.0]
    auth = TokenAuthenticator(path, recheck_seconds=5, clock=lambda: now[0])
    entry = {"name": "late", "sha256": token_hash("mfs_late"), "scopes": ["predict"]}
    document = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({"tokens": [*document["tokens"], entry]}))
    now[0] = 10.0
    assert auth.grant("Bearer mfs_late", "predict").name == "late"


# -- how much they may send ------------------------------------------------------------------------


async def test_a_body_of_two_and_a_half_million_rows_is_too_large_and_the_limit_is_named(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = doors
    body = huge_body("churn-se")
    assert len(body) > 7 * 1024 * 1024
    response = await http.post(
        "/predict", content=body, headers={**bearer(tokens["ops"]), "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == (
        f"the body of {len(body)} bytes is larger than the limit of {1024 * 1024} bytes"
    )


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = doors
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"model": "churn-se", "inputs": ['
        for _ in range(HUGE_ROWS // 20_000):
            sent += 60_000
            yield b"{}," * 20_000

    response = await http.post("/predict", content=chunks(), headers=bearer(tokens["ops"]))
    assert response.status_code == 413
    assert response.json()["error"] == f"the body is larger than the limit of {1024 * 1024} bytes"
    assert sent < 2 * 1024 * 1024, "serving stopped reading at the limit"


async def test_more_rows_than_the_cap_are_too_large(doors: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    http, tokens = doors
    body = {"model": "churn-se", "inputs": [{}] * 1001}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 413
    assert response.json()["error"] == "'inputs' has 1001 rows; at most 1000 rows per request"


async def test_more_columns_than_the_cap_are_too_large(
    doors: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = doors
    body = {"model": "churn-se", "inputs": [{f"c{i}": 1 for i in range(257)}]}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 413
    assert response.json()["error"] == "inputs[0] has 257 columns; at most 256 per row"


async def test_other_models_keep_answering_while_one_is_sent_a_huge_body(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-dk", target)
    others_answered = asyncio.Event()

    async def huge() -> AsyncIterator[bytes]:
        yield b'{"model": "churn-se", "inputs": ['
        yield b"{}," * 100_000
        # The rest arrives only once the other model answered: a stalled serving would hang here.
        await others_answered.wait()
        for _ in range(HUGE_ROWS // 100_000):
            yield b"{}," * 100_000

    async def others() -> list[int]:
        statuses = []
        for _ in range(5):
            response = await http.post(
                "/predict", json=predict_body("churn-dk"), headers=bearer(tokens["ops"])
            )
            statuses.append(response.status_code)
        others_answered.set()
        return statuses

    upload = asyncio.create_task(http.post("/predict", content=huge(), headers=bearer(tokens["ops"])))
    statuses = await asyncio.wait_for(others(), timeout=60)
    assert statuses == [200] * 5
    assert (await asyncio.wait_for(upload, timeout=60)).status_code == 413


# -- what the model is given -----------------------------------------------------------------------


async def test_text_for_a_float_feature_is_unprocessable_and_names_the_feature_and_its_type(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-no", target)
    body = {"model": "churn-no", "inputs": [ROW, {"tenure": 1.0, "spend": "abc"}]}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 422
    assert response.json()["error"] == (
        "model 'churn-no': inputs[1]['spend'] must be a number (feature 'spend' is double), "
        'not the string "abc"'
    )


async def test_an_extra_feature_is_unprocessable_and_named(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-no", target)
    body = {"model": "churn-no", "inputs": [{**ROW, "shoe_size": 44}]}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 422
    assert "inputs[0] has features the model does not take: ['shoe_size']" in response.json()["error"]
    assert "tenure (double), spend (double)" in response.json()["error"]


async def test_a_missing_feature_is_unprocessable_and_named(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-no", target)
    body = {"model": "churn-no", "inputs": [{"tenure": 2.0}]}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 422
    assert "inputs[0] lacks features ['spend']" in response.json()["error"]


async def test_context_columns_are_logged_with_the_row_but_never_given_to_the_model(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-fi", target)
    body = {"model": "churn-fi", "inputs": [ROW], "context": [{"age_band": "30-44"}], "request_id": "ctx-1"}
    response = await http.post("/predict", json=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 200, response.text
    logged = [record for model, record, _ in serving_app.prediction_log._buffer if model == "churn-fi"]
    assert logged[-1].features == {"age_band": "30-44", **ROW}


async def test_nan_is_not_json(doors: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    http, tokens = doors
    body = b'{"model": "churn-no", "inputs": [{"tenure": NaN, "spend": 1}]}'
    response = await http.post("/predict", content=body, headers=bearer(tokens["ops"]))
    assert response.status_code == 422
    assert "NaN is not a JSON number" in response.json()["error"]


# -- what may be labelled --------------------------------------------------------------------------


async def test_feedback_for_a_request_serving_never_answered_is_not_found(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-se", target)
    ops = bearer(tokens["ops"])
    answered = await http.post("/predict", json=predict_body("churn-se", request_id="seen-1"), headers=ops)
    assert answered.status_code == 200
    for model, request_id in (("churn-se", "never-1"), ("churn-dk", "seen-1")):
        response = await http.post(
            "/feedback", json={"model": model, "request_id": request_id, "label": 1}, headers=ops
        )
        assert response.status_code == 404
        assert f"serving answered no request {request_id!r} for model {model!r}" in response.json()["error"]
    accepted = await http.post(
        "/feedback", json={"model": "churn-se", "request_id": "seen-1", "label": 1}, headers=ops
    )
    assert accepted.status_code == 202, accepted.text


async def test_feedback_names_each_row_of_an_answered_batch(
    doors: tuple[httpx.AsyncClient, dict[str, str]], target: RouteTarget
) -> None:
    http, tokens = doors
    deploy("churn-se", target)
    ops = bearer(tokens["ops"])
    body = {"model": "churn-se", "inputs": [ROW, ROW, ROW], "request_id": "batch-1"}
    assert (await http.post("/predict", json=body, headers=ops)).status_code == 200
    for request_id, status in (("batch-1#0", 202), ("batch-1#2", 202), ("batch-1#3", 404), ("batch-1", 404)):
        label = {"model": "churn-se", "request_id": request_id, "label": 0}
        assert (await http.post("/feedback", json=label, headers=ops)).status_code == status, request_id


def test_an_answered_request_expires_after_the_ttl() -> None:
    now = [0.0]
    answered = AnsweredRequests(ttl_seconds=60, max_per_model=10, timer=lambda: now[0])
    answered.remember("churn-se", "r-1", 1)
    now[0] = 59.0
    assert answered.answered("churn-se", "r-1")
    now[0] = 61.0
    assert not answered.answered("churn-se", "r-1")


def test_answered_requests_are_bounded_per_model_and_one_model_cannot_evict_another() -> None:
    answered = AnsweredRequests(ttl_seconds=3600, max_per_model=100)
    answered.remember("fraud-eu", "kept", 1)
    for index in range(1000):
        answered.remember("churn-se", f"r-{index}", 1)
    assert len(answered) == 101
    assert not answered.answered("churn-se", "r-0")
    assert answered.answered("churn-se", "r-999")
    assert answered.answered("fraud-eu", "kept")
