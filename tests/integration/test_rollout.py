"""Rollout on real Kafka, MLflow and Ray, with serving and the monitor closing the loop.

- A low-risk model becomes champion with no human step and serving answers with it; predictions
  and feedback flow back to Kafka.
- A second version goes through the canary steps on live traffic and is promoted.
- A challenger worse on live feedback is rolled back automatically; the old champion serves again.
- A high-risk model waits for a listed approver's signature.
- A tampered artifact is never served, and the refusal is published.
- A serving restart loses no prediction log of an answered request.
- A deployer that lost its state volume rebuilds it from the compacted topics.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
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
    ModelArtifactRefused,
    ModelPromoted,
    ModelRolledBack,
    PredictionLogged,
    PredictionsLabeled,
)
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    APPROVALS_REJECTED,
    ARTIFACT_REFUSALS,
    DEPLOYMENTS,
    GROUND_TRUTH,
    LABELED_PREDICTIONS,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
    PREDICTION_LOGS,
)

from . import fleet as fleet_helpers
from .assembly_data import model_spec, write_fleet
from .fleet import RunningFleet, SecuredBroker, running_fleet

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")


@pytest.fixture(scope="module")
def fleet(
    kafka_broker: SecuredBroker, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    root = tmp_path_factory.mktemp("rollout")
    # One listed approver (policies/high.yaml) whose public key the deployer trusts.
    officer = ArtifactSigner.load_or_create(root / "approvers" / "risk-officer.pem")
    keys = root / "approvers" / "keys.txt"
    keys.write_text(f"risk-officer {officer.public_key_b64}\n")
    # Health windows every 2 s, so canary steps move in seconds rather than minutes.
    extra_env = {"FLEET_APPROVER_KEYS_FILE": str(keys), "FLEET_MONITOR_REPORT_SECONDS": "2"}
    with running_fleet(root, kafka_broker, mlflow_uri, SERVICES, extra_env=extra_env) as running:
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


def _sensor_spec(name: str, risk_class: str, **spec: Any) -> dict[str, Any]:
    document = model_spec(
        name, "sensors", ["vibration", "temperature", "machine"], "fails", "tabular-classifier", "1", **spec
    )
    document["metadata"]["risk_class"] = risk_class
    return document


def _sensor_row(rng: random.Random) -> dict[str, Any]:
    return {
        "vibration": rng.gammavariate(2.0, 1.0),
        "temperature": rng.gauss(70, 8),
        "machine": rng.choice(["pump", "compressor"]),
    }


#: What a caller knows of an answer: (route, version, first prediction).
Answer = tuple[str, str, Any]


@dataclass
class Traffic:
    """Live callers of one model: a request every few milliseconds, and a label for each answer."""

    url: str
    model: str
    #: The label to send back for an answer, or None to send none.
    label_for: Callable[[Answer], Any] | None = None
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    async def run(
        self, stop: asyncio.Event, *, interval: float = 0.01, prefix: str = "r", count: int | None = None
    ) -> None:
        """Call until `stop` is set (or `count` answers arrived)."""
        rng = random.Random(7)
        async with httpx.AsyncClient(timeout=60, headers=fleet_helpers.SERVING_HEADERS) as client:
            while not stop.is_set() and (count is None or len(self.answers) < count):
                request_id = f"{prefix}-{len(self.request_ids)}"
                body = {"model": self.model, "request_id": request_id, "inputs": [_sensor_row(rng)]}
                response = await client.post(f"{self.url}/predict", json=body)
                if response.status_code != 200:
                    self.failures.append(response.text)
                    await asyncio.sleep(0.2)
                    continue
                self.request_ids.append(request_id)
                answer = response.json()
                seen: Answer = (answer["route"], answer["version"], answer["predictions"][0])
                self.answers.append(seen)
                if self.label_for is not None:
                    feedback = {"model": self.model, "request_id": request_id, "label": self.label_for(seen)}
                    assert (await client.post(f"{self.url}/feedback", json=feedback)).status_code == 202
                await asyncio.sleep(interval)


@asynccontextmanager
async def live_traffic(traffic: Traffic, **options: Any) -> AsyncIterator[Traffic]:
    """Send `traffic` in the background while the body runs."""
    stop = asyncio.Event()
    task = asyncio.create_task(traffic.run(stop, **options))
    try:
        yield traffic
    finally:
        stop.set()
        await task


async def _champion_of(fleet: RunningFleet, model: str) -> ModelPromoted:
    [promoted] = _of(await fleet.events(MODEL_PROMOTIONS, until=lambda found: _of(found, model)), model)
    assert isinstance(promoted, ModelPromoted)
    return promoted


async def _canary_of(fleet: RunningFleet, model: str, version: str) -> DeploymentChanged:
    """The first routing table that sends live traffic to `version` as challenger."""

    def canaries(found: list[Any]) -> list[DeploymentChanged]:
        return [t for t in _of(found, model) if t.challenger is not None and t.challenger.version == version]

    return canaries(await fleet.events(DEPLOYMENTS, until=canaries, timeout=300))[0]


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
    client = httpx.AsyncClient(timeout=120, headers=fleet_helpers.SERVING_HEADERS)
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
    # Ingest joins the two, once, and publishes the join the monitor scores.
    [joined] = _of(await fleet.events(LABELED_PREDICTIONS, until=lambda found: _of(found, model)), model)
    assert isinstance(joined, PredictionsLabeled)
    assert [(e.request_id, e.version, e.route, e.label) for e in joined.labeled] == [
        ("req-1", "1", "champion", 1)
    ]
    assert joined.labeled[0].prediction == answer.json()["predictions"][0]

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


async def _champion_then_canary(
    fleet: RunningFleet, model: str, rollout: dict[str, Any]
) -> DeploymentChanged:
    """Version 1 of a low-risk `model` as champion, then version 2 (a new spec revision) in canary."""
    _apply(fleet, f"{model}-v1", _sensor_spec(model, "low", rollout=rollout))
    assert (await _champion_of(fleet, model)).version == "1"
    # A new revision of the spec trains version 2, which must earn its traffic step by step.
    _apply(fleet, f"{model}-v2", _sensor_spec(model, "low", rollout=rollout, hyperparameters={"C": 0.5}))
    return await _canary_of(fleet, model, "2")


async def test_a_second_version_goes_through_the_canary_steps_on_live_traffic_and_is_promoted(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-canary{fleet.suffix}"
    canary = await _champion_then_canary(
        fleet, model, {"canary_steps": [50, 100], "min_requests_per_step": 30}
    )
    assert canary.challenger_weight == 0.5
    assert canary.champion is not None
    assert canary.champion.version == "1"

    # Both versions are right on every label, so the challenger is never worse than the champion.
    traffic = Traffic(fleet.services["serving"].url, model, label_for=lambda answer: answer[2])
    async with live_traffic(traffic):
        promotions = await fleet.events(
            MODEL_PROMOTIONS, until=lambda found: len(_of(found, model)) == 2, timeout=300
        )
    promoted = _of(promotions, model)[-1]
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.version, promoted.previous_version, promoted.decided_by) == ("2", "1", "deployer")
    assert "canary at 100% passed" in promoted.reason
    assert not traffic.failures
    assert {("champion", "1"), ("challenger", "2")} <= {
        (route, version) for route, version, _ in traffic.answers
    }

    tables = _of(await fleet.events(DEPLOYMENTS, until=lambda found: _of(found, model)), model)
    weights = [t.challenger_weight for t in tables if t.challenger is not None]
    assert weights == [0.5, 1.0]
    final = tables[-1]
    assert final.champion is not None
    assert (final.champion.version, final.challenger) == ("2", None)


async def test_a_challenger_worse_on_live_feedback_is_rolled_back_and_the_old_champion_serves_again(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-regress{fleet.suffix}"
    # So many requests per step that only a breach can end the canary.
    await _champion_then_canary(fleet, model, {"canary_steps": [50, 100], "min_requests_per_step": 1_000_000})

    # Labels that agree with the champion and contradict the challenger on every request.
    def label_for(answer: Answer) -> int:
        route, _, prediction = answer
        return int(prediction) if route == "champion" else 1 - int(prediction)

    serving = fleet.services["serving"]
    traffic = Traffic(serving.url, model, label_for=label_for)
    async with live_traffic(traffic):
        rollbacks = await fleet.events(MODEL_ROLLBACKS, until=lambda found: _of(found, model), timeout=300)
    [rollback] = _of(rollbacks, model)
    assert isinstance(rollback, ModelRolledBack)
    assert (rollback.from_version, rollback.to_version, rollback.decided_by) == ("2", "1", "deployer")
    assert "live accuracy" in rollback.reason
    assert "below the champion" in rollback.reason

    tables = _of(await fleet.events(DEPLOYMENTS, until=lambda found: _of(found, model)), model)
    assert tables[-1].challenger is None
    assert tables[-1].champion is not None
    assert tables[-1].champion.version == "1"
    # Serving follows the table: every caller is answered by version 1 again.
    after = Traffic(serving.url, model)
    for _ in range(100):
        async with live_traffic(after, prefix="after"):
            await asyncio.sleep(1)
        if after.answers and all(a[:2] == ("champion", "1") for a in after.answers[-20:]):
            break
    assert len(after.answers) >= 20
    assert {a[:2] for a in after.answers[-20:]} == {("champion", "1")}


async def test_a_tampered_artifact_is_never_served_and_its_refusal_is_published(fleet: RunningFleet) -> None:
    model = f"sensor-tamper{fleet.suffix}"
    _apply(fleet, "tamper", _sensor_spec(model, "low"))
    assert (await _champion_of(fleet, model)).version == "1"

    # An attacker with write access to the artifact store swaps the weights before the first request.
    [version] = fleet.mlflow.search_model_versions(f"name='{model}'")
    run_id = version.run_id
    assert run_id is not None
    model_dir = Path(fleet.mlflow.download_artifacts(run_id, "model", str(fleet.root)))
    [weights] = [p for p in model_dir.iterdir() if p.suffix == ".skops"]
    weights.write_bytes(weights.read_bytes() + b"\x00")
    fleet.mlflow.log_artifact(run_id, str(weights), "model")

    serving = fleet.services["serving"]
    async with httpx.AsyncClient(timeout=120, headers=fleet_helpers.SERVING_HEADERS) as client:
        body = {"model": model, "inputs": [_sensor_row(random.Random(1))]}
        for _ in range(2):
            answer = await client.post(f"{serving.url}/predict", json=body)
            assert answer.status_code == 503, answer.text
            assert "is refused and will not be served" in answer.json()["error"]
            assert "differs from the signed" in answer.json()["error"]
    assert serving.metric("fleet_serving_artifacts_refused_total", model=model) == 1
    [refusal] = _of(await fleet.events(ARTIFACT_REFUSALS, until=lambda found: _of(found, model)), model)
    assert isinstance(refusal, ModelArtifactRefused)
    assert (refusal.version, refusal.producer) == ("1", "serving")
    logged = await fleet.events(PREDICTION_LOGS, until=lambda found: True, timeout=5)
    assert not _of(logged, model), "a refused version must never answer"


async def test_a_serving_restart_loses_no_logged_prediction_of_an_answered_request(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-restart{fleet.suffix}"
    _apply(fleet, "restart", _sensor_spec(model, "low"))
    assert (await _champion_of(fleet, model)).version == "1"
    serving = fleet.services["serving"]

    before = Traffic(serving.url, model)
    async with live_traffic(before, interval=0.002, prefix="before"):
        await asyncio.sleep(3)
    # SIGTERM while the last answers' logs are still in the batch buffer: shutdown must flush them.
    assert serving.terminate() == 0, serving.logs()
    serving.start(timeout=120)
    after = Traffic(serving.url, model)
    await after.run(asyncio.Event(), prefix="after", count=20)

    answered = set(before.request_ids) | set(after.request_ids)
    assert len(before.request_ids) >= 50

    def logged_ids(found: list[Any]) -> set[str]:
        return {record.request_id for event in _of(found, model) for record in event.predictions}

    logged = await fleet.events(PREDICTION_LOGS, until=lambda found: answered <= logged_ids(found))
    assert answered <= logged_ids(logged)


async def test_a_deployer_that_lost_its_state_volume_still_knows_the_version_waiting_for_approval(
    fleet: RunningFleet,
) -> None:
    model = f"sensor-amnesia{fleet.suffix}"
    _apply(fleet, "amnesia", _sensor_spec(model, "high"))
    [request] = _of(await fleet.events(APPROVAL_REQUESTS, until=lambda found: _of(found, model)), model)
    assert isinstance(request, ApprovalRequested)

    # The pod is gone and its volume with it: a new deployer starts with an empty state directory.
    deployer = fleet.services["deployer"]
    deployer.stop()
    shutil.rmtree(deployer.env["FLEET_STATE_DIR"])
    deployer.start(timeout=120)
    assert "rebuilt the rollout state of" in deployer.log_path.read_text()

    officer_key = fleet.root / "approvers" / "risk-officer.pem"
    approved = fleet.cli(
        "approve", model, request.version, "--key-file", str(officer_key), "--approver", "risk-officer"
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    promoted = await _champion_of(fleet, model)
    assert (promoted.version, promoted.decided_by) == (request.version, "deployer")
    rejections = await fleet.events(APPROVALS_REJECTED, until=lambda found: True, timeout=5)
    assert not _of(rejections, model), "the rebuilt deployer must still know the version is waiting"
