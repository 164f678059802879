"""Rollout on real Kafka, MLflow and Ray: a low-risk model becomes champion with no human step and
serving answers with it; predictions and feedback flow back to Kafka; a high-risk model waits for
a listed approver's signature.

More of #4 (canary steps, automatic rollback, tampering at serving, restarts) follows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import (
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    GroundTruthObserved,
    ModelPromoted,
    PredictionLogged,
)
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    APPROVALS_REJECTED,
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
    # One listed approver (policies/high.yaml) whose public key the deployer trusts.
    officer = ArtifactSigner.load_or_create(root / "approvers" / "risk-officer.pem")
    keys = root / "approvers" / "keys.txt"
    keys.write_text(f"risk-officer {officer.public_key_b64}\n")
    with running_fleet(
        root, kafka_bootstrap, mlflow_uri, SERVICES, extra_env={"FLEET_APPROVER_KEYS_FILE": str(keys)}
    ) as running:
        write_fleet(running.root / "data", running.suffix)
        datasets = running.root / "data" / "datasets.yaml"
        declared = running.cli("apply", str(datasets))
        assert declared.returncode == 0, declared.stdout + declared.stderr
        yield running


def _of(events: list[Any], model: str) -> list[Any]:
    return [e for e in events if getattr(e, "model", None) == model]


def _apply(fleet: RunningFleet, name: str, *specs: dict[str, Any]) -> None:
    path = fleet.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(list(specs), sort_keys=False))
    applied = fleet.cli("apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr


def _sensor_spec(name: str, risk_class: str) -> dict[str, Any]:
    spec = model_spec(
        name, "sensors", ["vibration", "temperature", "machine"], "fails", "tabular-classifier", "1"
    )
    spec["metadata"]["risk_class"] = risk_class
    return spec


async def test_a_low_risk_model_becomes_champion_without_a_human_and_serving_answers_with_it(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-failure{fleet.suffix}"
    _apply(fleet, "low-risk", _sensor_spec(model, "low"))

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

    await client.aclose()


async def test_a_high_risk_model_waits_for_a_listed_approver_and_an_unlisted_one_is_rejected(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-strict{fleet.suffix}"
    _apply(fleet, "high-risk", _sensor_spec(model, "high"))

    [request] = _of(await fleet.events(APPROVAL_REQUESTS, until=lambda found: _of(found, model)), model)
    assert isinstance(request, ApprovalRequested)
    assert request.approvers == ["risk-officer", "head-of-ml"]

    mallory_key = fleet.root / "approvers" / "mallory.pem"
    assert fleet.cli("keygen", str(mallory_key), "--approver", "mallory").returncode == 0
    forged = fleet.cli(
        "approve", model, request.version, "--key-file", str(mallory_key), "--approver", "mallory"
    )
    assert forged.returncode == 0, forged.stdout + forged.stderr
    [rejection] = _of(await fleet.events(APPROVALS_REJECTED, until=lambda found: _of(found, model)), model)
    assert isinstance(rejection, ApprovalRejected)
    assert "mallory" in rejection.reason
    assert rejection.rejected_by == "deployer"

    officer_key = fleet.root / "approvers" / "risk-officer.pem"
    approved = fleet.cli(
        "approve", model, request.version, "--key-file", str(officer_key), "--approver", "risk-officer"
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    [promoted] = _of(await fleet.events(MODEL_PROMOTIONS, until=lambda found: _of(found, model)), model)
    assert isinstance(promoted, ModelPromoted)
    assert promoted.version == request.version
