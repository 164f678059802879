"""Rollout on real Kafka, MLflow and Ray: a low-risk model becomes champion with no human step and
serving answers with it; predictions and feedback flow back to Kafka; high risk waits for a person.

More of #4 (canary steps, automatic rollback, approvals, tampering, restarts) follows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from modelfleet_contracts import (
    ApprovalRequested,
    DeploymentChanged,
    GroundTruthObserved,
    ModelPromoted,
    PredictionLogged,
)
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    DEPLOYMENTS,
    GROUND_TRUTH,
    MODEL_PROMOTIONS,
    PREDICTION_LOGS,
)

from .assembly_data import model_spec, write_fleet
from .fleet import RunningFleet, running_fleet

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "serving")


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    root = tmp_path_factory.mktemp("rollout")
    with running_fleet(root, kafka_bootstrap, mlflow_uri, SERVICES) as running:
        yield running


def _of(events: list[Any], model: str) -> list[Any]:
    return [e for e in events if getattr(e, "model", None) == model]


async def test_a_low_risk_model_becomes_champion_without_a_human_and_serving_answers_with_it(
    fleet: RunningFleet,
) -> None:
    write_fleet(fleet.root / "data-only", fleet.suffix)  # the datasets (and their CSVs)
    folder = fleet.root / "low-risk"
    folder.mkdir()
    model = f"sensor-failure{fleet.suffix}"
    low = model_spec(
        model, "sensors", ["vibration", "temperature", "machine"], "fails", "tabular-classifier", "1"
    )
    high = model_spec(
        f"sensor-failure-strict{fleet.suffix}",
        "sensors",
        ["vibration", "temperature", "machine"],
        "fails",
        "tabular-classifier",
        "1",
    )
    high["metadata"]["risk_class"] = "high"
    (folder / "datasets.yaml").write_text((fleet.root / "data-only" / "datasets.yaml").read_text())
    for name in ("cancer", "energy", "sensors", "demand"):
        (folder / f"{name}.csv").write_bytes((fleet.root / "data-only" / f"{name}.csv").read_bytes())
    (folder / "models.yaml").write_text(yaml.safe_dump_all([low, high], sort_keys=False))
    applied = fleet.cli("apply", str(folder))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    [promoted] = _of(await fleet.events(MODEL_PROMOTIONS, until=lambda found: _of(found, model)), model)
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.version, promoted.previous_version, promoted.decided_by) == ("1", None, "deployer")
    tables = _of(await fleet.events(DEPLOYMENTS, until=lambda found: _of(found, model)), model)
    assert isinstance(tables[-1], DeploymentChanged)
    assert tables[-1].champion is not None
    assert tables[-1].champion.version == "1"

    # The registry moved the alias; lineage shows where the version is deployed.
    lineage = fleet.cli("lineage", model, "--json")
    assert '"champion"' in lineage.stdout, lineage.stdout + lineage.stderr

    serving = fleet.services["serving"]
    client = httpx.AsyncClient(timeout=120)
    body = {
        "model": model,
        "request_id": "req-1",
        "inputs": [{"vibration": 4.2, "temperature": 88.0, "machine": "pump"}],
    }
    answer = await client.post(f"{serving.url}/predict", json=body, timeout=120)
    assert answer.status_code == 200, answer.text + serving.logs()
    assert (answer.json()["version"], answer.json()["route"]) == ("1", "champion")
    assert answer.json()["predictions"][0] in (0, 1)

    unknown = await client.post(f"{serving.url}/predict", json=body | {"model": "no-such-model"}, timeout=30)
    assert unknown.status_code == 404
    missing = await client.post(
        f"{serving.url}/predict", json=body | {"inputs": [{"vibration": 1.0}]}, timeout=30
    )
    assert missing.status_code == 422
    assert "temperature" in missing.text

    feedback = await client.post(
        f"{serving.url}/feedback", json={"model": model, "request_id": "req-1", "label": 1}, timeout=30
    )
    assert feedback.status_code == 202, feedback.text
    [label] = _of(await fleet.events(GROUND_TRUTH, until=lambda found: _of(found, model)), model)
    assert isinstance(label, GroundTruthObserved)
    logged = _of(await fleet.events(PREDICTION_LOGS, until=lambda found: _of(found, model)), model)
    assert isinstance(logged[0], PredictionLogged)
    assert logged[0].predictions[0].request_id == "req-1"

    # The high-risk model of the same apply waits for a listed approver instead.
    strict = f"sensor-failure-strict{fleet.suffix}"
    [request] = _of(await fleet.events(APPROVAL_REQUESTS, until=lambda found: _of(found, strict)), strict)
    assert isinstance(request, ApprovalRequested)
    assert request.approvers == ["risk-officer", "head-of-ml"]
    await client.aclose()
