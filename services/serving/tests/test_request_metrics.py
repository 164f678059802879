"""Every answer of the data plane is counted by route template, risk class and status, and timed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving.api import DataPlane, Limits, json_endpoint
from modelfleet_serving.auth import TokenAuthenticator
from modelfleet_serving.model_store import MlflowModelSource, ModelStore
from modelfleet_serving.prediction_log import PredictionLog
from modelfleet_serving.request_metrics import DURATION_BUCKETS, RequestMetrics
from modelfleet_serving.routing_table import RoutingTable

from .conftest import Lab, bearer, signed_for, write_tokens_file

COLUMNS = ("tenure", "spend")
ROW = {"tenure": 0.5, "spend": -1.0}


@dataclass
class Served:
    http: httpx.AsyncClient
    tokens: dict[str, str]
    table: RoutingTable
    registry: CollectorRegistry

    def counted(self) -> dict[tuple[str, str, str], float]:
        return {
            (s.labels["route"], s.labels["risk_class"], s.labels["code"]): s.value
            for metric in self.registry.collect()
            for s in metric.samples
            if s.name == "fleet_serving_requests_total"
        }

    def timed(self) -> dict[tuple[str, str], float]:
        return {
            (s.labels["route"], s.labels["risk_class"]): s.value
            for metric in self.registry.collect()
            for s in metric.samples
            if s.name == "fleet_serving_request_duration_seconds_count"
        }


@pytest.fixture(scope="module")
def target(lab: Lab) -> RouteTarget:
    return lab.log_model(seed=40, columns=COLUMNS)


@pytest.fixture
async def served(lab: Lab, tmp_path: Path) -> AsyncIterator[Served]:
    """A data plane of its own (its own registry), behind the predict endpoint as serving mounts it."""

    async def publish(event: Event) -> None:
        del event

    registry = CollectorRegistry()
    table = RoutingTable()
    tokens = write_tokens_file(tmp_path / "tokens.yaml")
    plane = DataPlane(
        table,
        store=ModelStore(
            MlflowModelSource(lab.uri, attempts=1),
            lab.trusted,
            scratch_dir=tmp_path / "scratch",
            memory_budget_bytes=50 * 1024 * 1024,
            registry=registry,
        ),
        log=PredictionLog(publish, batch_size=100, buffer_limit=1000, registry=registry),
        publish_ground_truth=publish,
        publish_refusal=publish,
        auth=TokenAuthenticator(tmp_path / "tokens.yaml"),
        limits=Limits(max_body_bytes=4096, max_rows=10),
        metrics=RequestMetrics(registry),
    )
    endpoint = json_endpoint(plane.predict, plane, scope="predict", route="/predict")
    transport = httpx.ASGITransport(endpoint)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://serving") as http:
        yield Served(http, tokens, table, registry)


def deploy(served: Served, model: str, target: RouteTarget, risk_class: str | None) -> None:
    served.table.apply(
        DeploymentChanged(
            producer="deployer",
            model=model,
            revision=1,
            stage="promoted",
            champion=signed_for(model, target),
            risk_class=risk_class,
        )
    )


async def test_answers_and_errors_are_counted_with_the_models_risk_class_and_their_code(
    served: Served, target: RouteTarget
) -> None:
    deploy(served, "churn-se", target, "high")
    deploy(served, "churn-old", target, None)  # a table from a deployer before risk_class
    ops = bearer(served.tokens["ops"])
    predict = {"model": "churn-se", "inputs": [ROW]}
    assert (await served.http.post("/predict", json=predict, headers=ops)).status_code == 200
    assert (await served.http.post("/predict", json=predict, headers=ops)).status_code == 200
    # A raw path under the mount is still the route template.
    assert (await served.http.post("/predict/anything", json=predict, headers=ops)).status_code == 200
    wrong = {"model": "churn-se", "inputs": [{"tenure": "long", "spend": 1.0}]}
    assert (await served.http.post("/predict", json=wrong, headers=ops)).status_code == 422
    too_many = {"model": "churn-se", "inputs": [ROW] * 11}
    assert (await served.http.post("/predict", json=too_many, headers=ops)).status_code == 413
    assert (await served.http.post("/predict", json=predict)).status_code == 401
    unknown = {"model": "nobody", "inputs": [ROW]}
    assert (await served.http.post("/predict", json=unknown, headers=ops)).status_code == 404
    old = {"model": "churn-old", "inputs": [ROW]}
    assert (await served.http.post("/predict", json=old, headers=ops)).status_code == 200
    assert (await served.http.get("/predict", headers=ops)).status_code == 405

    assert served.counted() == {
        ("/predict", "high", "200"): 3.0,
        ("/predict", "high", "422"): 1.0,
        ("/predict", "high", "413"): 1.0,
        # No token: the body is never read, so the model (and its class) is not known.
        ("/predict", "unknown", "401"): 1.0,
        ("/predict", "unknown", "404"): 1.0,
        ("/predict", "unknown", "200"): 1.0,
        ("/predict", "unknown", "405"): 1.0,
    }
    assert served.timed() == {("/predict", "high"): 5.0, ("/predict", "unknown"): 4.0}


async def test_latency_falls_in_the_catalogues_buckets(served: Served, target: RouteTarget) -> None:
    deploy(served, "churn-se", target, "low")
    await served.http.post(
        "/predict", json={"model": "churn-se", "inputs": [ROW]}, headers=bearer(served.tokens["ops"])
    )
    buckets = [
        float(s.labels["le"])
        for metric in served.registry.collect()
        for s in metric.samples
        if s.name == "fleet_serving_request_duration_seconds_bucket"
    ]
    assert buckets == [*DURATION_BUCKETS, float("inf")]
    assert DURATION_BUCKETS == (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
