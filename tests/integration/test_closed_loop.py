"""The closed loop on real Kafka, MLflow and Ray: drift drives a retrain, gates and a canary decide.

One fleet, three models trained on their own copy of the sensor data, each with live traffic and
labels through serving:

- `drifting`: its inputs run hotter and shake harder than in training, with true labels. A burst
  of drift windows gives exactly one retrain, on a dataset version ingest made from the live
  feedback; the new version passes its gates and the canary, and is promoted. The audit trail
  shows the chain from the drift numbers to the promotion.
- `steady`: its inputs look like its training data. Its windows are checked and nothing happens.
- `noisy`: its inputs drift too, but its labels are coin flips. The retrain learns from them,
  fails its metric gate and is not promoted; the audit says which gate and why.

Every service and the CLI export their spans over OTLP/HTTP to a receiver of the test's own
(`otlp.py`): one trace leads from the drift incident (linked to a drifted request's span) through
the retrain, the training in Ray, the evaluation and the registration to the promotion.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    RetrainRequested,
    TrainingStarted,
)
from modelfleet_contracts.topics import (
    DATASET_VERSIONS,
    DRIFT,
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    RETRAIN_REQUESTS,
    TRAINING_STARTED,
)

from . import fleet as fleet_helpers
from .assembly_data import OWNER, drifted, model_spec, sensors
from .fleet import RunningFleet, SecuredBroker, running_fleet
from .otlp import OtlpReceiver, ReceivedSpan, otlp_receiver

# The module's fixture runs the whole loop (trainings, drift, retrains, a canary) once, in minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")
FEATURES = ["vibration", "temperature", "machine"]


@dataclass
class LoopModel:
    """One model of the scenario: its name, dataset and spec."""

    name: str
    dataset: str
    risk_class: str
    monitoring: dict[str, Any]
    gates: dict[str, Any] = field(default_factory=dict)

    def documents(self, data_dir: Any, seed: int) -> list[dict[str, Any]]:
        frame = sensors(rows=1200, seed=seed)
        frame.to_csv(data_dir / f"{self.dataset}.csv", index=False)
        columns = [
            {"name": "vibration", "type": "float"},
            {"name": "temperature", "type": "float"},
            {"name": "machine", "type": "string"},
            {"name": "fails", "type": "int"},
        ]
        dataset = {
            "apiVersion": "modelfleet/v1",
            "kind": "Dataset",
            "metadata": {"name": self.dataset, "owner": OWNER},
            "spec": {"columns": columns, "source": f"{self.dataset}.csv"},
        }
        spec = model_spec(
            self.name,
            self.dataset,
            FEATURES,
            "fails",
            "tabular-classifier",
            "1",
            monitoring=self.monitoring,
            # One retrain per incident: later windows of the same drift must not retrain again.
            retrain={"on_drift": True, "on_decay": True, "cooldown_seconds": 3600},
            gates=self.gates,
        )
        spec["metadata"]["risk_class"] = self.risk_class
        return [dataset, spec]


@dataclass
class Caller:
    """Sends rows of a frame to serving, one request each, and their labels as feedback."""

    url: str
    model: str
    frame: pd.DataFrame
    labels: str = "true"  # or "coin"
    answered: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event, *, limit: int | None = None, prefix: str = "r") -> None:
        rng = random.Random(11)
        rows = self.frame.to_dict("records")
        async with httpx.AsyncClient(timeout=60, headers=fleet_helpers.SERVING_HEADERS) as client:
            index = 0
            while not stop.is_set() and (limit is None or self.answered < limit):
                row = rows[index % len(rows)]
                index += 1
                request_id = f"{prefix}-{index}"
                inputs = {name: row[name] for name in FEATURES}
                body = {"model": self.model, "request_id": request_id, "inputs": [inputs]}
                response = await client.post(f"{self.url}/predict", json=body)
                if response.status_code != 200:
                    self.failures.append(response.text)
                    await asyncio.sleep(0.2)
                    continue
                self.answered += 1
                label = int(row["fails"]) if self.labels == "true" else rng.randint(0, 1)
                feedback = {"model": self.model, "request_id": request_id, "label": label}
                assert (await client.post(f"{self.url}/feedback", json=feedback)).status_code == 202
                await asyncio.sleep(0.005)


@dataclass
class Outcome:
    """What the scenario produced, read back from Kafka once it settled."""

    fleet: RunningFleet
    models: dict[str, LoopModel]
    drift: list[DriftDetected]
    retrains: list[RetrainRequested]
    trainings: list[TrainingStarted]
    evaluations: list[ModelEvaluated]
    registrations: list[ModelRegistered]
    promotions: list[ModelPromoted]
    feedback_versions: list[DatasetVersionCreated]
    traces: OtlpReceiver

    def of(self, key: str, events: list[Any]) -> list[Any]:
        name = self.models[key].name
        return [e for e in events if getattr(e, "model", None) == name]

    def audit(self, key: str) -> list[dict[str, Any]]:
        shown = self.fleet.cli("audit", self.models[key].name, "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        entries: list[dict[str, Any]] = json.loads(shown.stdout)
        return entries


@pytest.fixture(scope="module")
def outcome(
    kafka_broker: SecuredBroker, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("closed-loop")
    extra_env = {
        # Health every 2 s and feedback versions every 2 s: a loop of minutes, not hours.
        "FLEET_MONITOR_REPORT_SECONDS": "2",
        "FLEET_INGEST_FEEDBACK_SECONDS": "2",
        "FLEET_RETRAIN_DATA_WAIT_SECONDS": "60",
    }
    with (
        otlp_receiver() as traces,
        running_fleet(root, kafka_broker, mlflow_uri, SERVICES, extra_env=extra_env | traces.env()) as fleet,
    ):
        models = {
            "drifting": LoopModel(
                f"loop-drifting{fleet.suffix}",
                "loop-drifting",
                "low",
                {"window_size": 150, "drift_share": 0.3},
            ),
            "steady": LoopModel(
                f"loop-steady{fleet.suffix}",
                "loop-steady",
                "medium",
                {"window_size": 150, "drift_share": 0.3},
            ),
            # A larger window: the retrain's feedback version then holds hundreds of coin-flip labels.
            "noisy": LoopModel(
                f"loop-noisy{fleet.suffix}",
                "loop-noisy",
                "low",
                {"window_size": 500, "drift_share": 0.3},
                gates={"metric_thresholds": [{"metric": "roc_auc", "min": 0.9}]},
            ),
        }
        data_dir = fleet.root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        documents = [
            doc for seed, model in enumerate(models.values(), 21) for doc in model.documents(data_dir, seed)
        ]
        path = data_dir / "loop.yaml"
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        applied = fleet.cli("apply", str(path))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        asyncio.run(_drive(fleet, models))
        yield _read_outcome(fleet, models, traces)


async def _drive(fleet: RunningFleet, models: dict[str, LoopModel]) -> None:
    names = {model.name for model in models.values()}
    await fleet.events(MODEL_PROMOTIONS, until=lambda found: names <= {e.model for e in found}, timeout=400)
    url = fleet.services["serving"].url
    drifting = Caller(url, models["drifting"].name, drifted(900, seed=31))
    steady = Caller(url, models["steady"].name, sensors(rows=600, seed=41))
    noisy = Caller(url, models["noisy"].name, drifted(900, seed=51), labels="coin")
    stop = asyncio.Event()
    callers = [
        asyncio.create_task(drifting.run(stop, prefix="d")),
        asyncio.create_task(steady.run(stop, limit=600, prefix="s")),
        asyncio.create_task(noisy.run(stop, limit=900, prefix="n")),
    ]
    try:
        # The drifting model's traffic goes on through the canary until its v2 is champion.
        drifting_name, noisy_name = models["drifting"].name, models["noisy"].name

        def promoted_again(found: list[Any]) -> bool:
            return any(e.model == drifting_name and e.version != "1" for e in found)

        await fleet.events(MODEL_PROMOTIONS, until=promoted_again, timeout=600)
        await fleet.events(
            MODEL_REGISTRATIONS,
            until=lambda found: any(e.model == noisy_name and e.version != "1" for e in found),
            timeout=300,
        )
        await asyncio.wait_for(asyncio.gather(callers[1], callers[2]), timeout=300)
    finally:
        stop.set()
        await asyncio.gather(*callers, return_exceptions=True)
    assert not drifting.failures[:3]
    assert not steady.failures[:3]
    assert noisy.failures[:3] == []
    # Let the monitor check the steady model's last windows before reading what happened.
    await asyncio.sleep(5)


def _read_outcome(fleet: RunningFleet, models: dict[str, LoopModel], traces: OtlpReceiver) -> Outcome:
    async def read_all() -> list[list[Any]]:
        topics = (
            DRIFT,
            RETRAIN_REQUESTS,
            TRAINING_STARTED,
            MODEL_EVALUATIONS,
            MODEL_REGISTRATIONS,
            MODEL_PROMOTIONS,
            DATASET_VERSIONS,
        )
        return [await fleet.all_events(topic) for topic in topics]

    drift, retrains, trainings, evaluations, registrations, promotions, versions = asyncio.run(read_all())
    feedback = [v for v in versions if isinstance(v, DatasetVersionCreated) and v.origin == "feedback"]
    return Outcome(
        fleet, models, drift, retrains, trainings, evaluations, registrations, promotions, feedback, traces
    )


def test_a_burst_of_drift_windows_retrains_the_model_once_on_its_live_feedback(outcome: Outcome) -> None:
    drift = outcome.of("drifting", outcome.drift)
    assert len(drift) >= 2, "the drifted traffic should fill several windows"
    first = drift[0]
    by_feature = {f.feature: f for f in first.features}
    assert by_feature["temperature"].drifted
    assert by_feature["vibration"].drifted
    assert first.drift_share >= first.drift_share_threshold == 0.3

    [retrain] = outcome.of("drifting", outcome.retrains)
    assert (retrain.reason, retrain.producer, retrain.causation_id) == ("drift", "trainer", first.event_id)
    assert "temperature psi" in retrain.detail

    retrained = [t for t in outcome.of("drifting", outcome.trainings) if t.causation_id == retrain.event_id]
    assert retrained, "the retrain request started a training"
    feedback = {v.version: v for v in outcome.feedback_versions if v.dataset == "loop-drifting"}
    assert retrained[0].dataset_version in feedback, "the retrain used a version made from live feedback"
    assert (feedback[retrained[0].dataset_version].feedback_rows or 0) > 0


def test_the_retrained_version_passes_its_gates_and_the_canary_and_is_promoted(outcome: Outcome) -> None:
    promotions = outcome.of("drifting", outcome.promotions)
    assert [p.version for p in promotions] == ["1", "2"]
    assert promotions[-1].previous_version == "1"
    assert promotions[-1].decided_by == "deployer"
    assert "canary at 100% passed" in promotions[-1].reason


def test_the_audit_trail_shows_the_chain_from_the_drift_numbers_to_the_promotion(outcome: Outcome) -> None:
    entries = outcome.audit("drifting")
    whats = [entry["what"] for entry in entries]
    requested_at = whats.index("retrain requested")
    assert whats.index("drift detected") < requested_at
    request = entries[requested_at]
    assert request["caused_by"] == "drift detected"
    assert request["who"] == "trainer"
    assert "drift share" in request["why"]
    assert "temperature psi" in request["why"]
    after = whats[requested_at:]
    for step in (
        "training started",
        "training finished",
        "evaluation passed",
        "registered v2",
        "promoted v2",
    ):
        assert any(what.startswith(step) for what in after), f"{step!r} missing after the retrain in {after}"
    promoted = next(entry for entry in entries if entry["what"] == "promoted v2")
    assert "canary at 100% passed" in promoted["why"]
    assert promoted["who"].startswith("deployer")


def test_a_model_without_drift_is_checked_and_left_alone(outcome: Outcome) -> None:
    monitor = outcome.fleet.services["monitor"]
    assert monitor.metric("fleet_monitor_drift_checks_total", risk_class="medium") >= 3
    assert monitor.metric("fleet_monitor_drift_detected_total", risk_class="medium") == 0
    assert outcome.of("steady", outcome.drift) == []
    assert outcome.of("steady", outcome.retrains) == []
    assert len(outcome.of("steady", outcome.trainings)) == 1
    assert [p.version for p in outcome.of("steady", outcome.promotions)] == ["1"]


def test_a_retrained_model_that_fails_its_gates_is_not_promoted_and_the_audit_says_why(
    outcome: Outcome,
) -> None:
    [retrain] = outcome.of("noisy", outcome.retrains)
    # Its window of coin-flip labels decays in the same window its inputs drift: either comes first.
    assert retrain.reason in ("drift", "decay")
    failed = [e for e in outcome.of("noisy", outcome.evaluations) if not e.passed]
    assert failed, "the retrained candidate should fail its roc_auc gate"
    gate = next(g for g in failed[0].gates if g.gate == "metric:roc_auc")
    assert not gate.passed
    assert gate.value is not None
    assert gate.value < 0.9
    registered = {e.version: e.passed_evaluation for e in outcome.of("noisy", outcome.registrations)}
    assert registered == {"1": True, "2": False}
    assert [p.version for p in outcome.of("noisy", outcome.promotions)] == ["1"]

    entries = outcome.audit("noisy")
    verdict = next(entry for entry in entries if entry["what"] == "evaluation failed")
    assert "metric:roc_auc" in verdict["why"]
    assert any(entry["what"] == "registered v2" and "not promoted" in entry["why"] for entry in entries)


def test_one_trace_leads_from_a_drifted_requests_incident_to_the_promotion(outcome: Outcome) -> None:
    name = outcome.models["drifting"].name
    first = outcome.of("drifting", outcome.drift)[0]

    def promotion_path(spans: list[ReceivedSpan]) -> list[ReceivedSpan] | None:
        """The spans from the promotion of v2 up to the root of its trace, once all have arrived."""
        by_id = {(s.trace_id, s.span_id): s for s in spans}
        promoted = [
            s
            for s in spans
            if s.attributes.get("modelfleet.model") == name
            and s.attributes.get("modelfleet.version") == "2"
            and s.attributes.get("modelfleet.stage") == "promoted"
        ]
        for span in promoted:
            path = [span]
            while path[-1].parent_span_id:
                parent = by_id.get((path[-1].trace_id, path[-1].parent_span_id))
                if parent is None:
                    break
                path.append(parent)
            else:
                return path
        return None

    path = outcome.traces.wait_for(promotion_path, what=f"whole trace of the promotion of {name} v2")
    root, promotion = path[-1], path[0]
    spans = outcome.traces.snapshot()
    by_id = {(s.trace_id, s.span_id): s for s in spans}

    # The root is the drift incident that asked for the retrain, linked to drifted requests' spans.
    assert (root.service, root.name) == ("modelfleet-monitor", "drift detected")
    assert root.attributes["modelfleet.event_id"] == str(first.event_id)
    requests = [by_id[link] for link in root.links if link in by_id and by_id[link].name == "POST /predict"]
    assert requests, f"the drift span links to no request span: {root.links}"
    assert {(r.service, r.kind) for r in requests} == {("modelfleet-serving", "server")}
    assert all(r.trace_id != root.trace_id for r in requests), "each request is a trace of its own"

    # The monitor's log line about the incident carries the incident's trace and span ids.
    monitor_log = outcome.fleet.services["monitor"].log_path.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in monitor_log if line.startswith("{")]
    drift_lines = [r for r in records if r.get("key") == name and r["message"].startswith("drift detected")]
    assert (root.trace_id, root.span_id) in [(r.get("trace_id"), r.get("span_id")) for r in drift_lines]

    # Parent by parent, the services the loop went through, in order.
    services = [span.service for span in reversed(path)]
    hops = [service for index, service in enumerate(services) if index == 0 or services[index - 1] != service]
    assert hops == [
        "modelfleet-monitor",
        "modelfleet-trainer",
        "modelfleet-evaluator",
        "modelfleet-registry",
        "modelfleet-deployer",
    ]
    assert "model.promoted" in promotion.attributes["modelfleet.published"]

    # The training ran in a Ray task and MLflow was called over HTTP, both in the loop's trace.
    loop = [s for s in spans if s.trace_id == root.trace_id]
    assert any(s.name == "training task" and s.service == "modelfleet-trainer" for s in loop)
    http_calls = [
        s for s in loop if s.kind == "client" and {"http.method", "http.request.method"} & set(s.attributes)
    ]
    assert http_calls, "MLflow's HTTP calls are spans of the loop"

    # The CLI's `apply` started the trace of the first trainings.
    [apply] = [s for s in spans if (s.service, s.name) == ("modelfleet-cli", "modelfleet apply")]
    assert any(s.trace_id == apply.trace_id and s.name == "training task" for s in spans)

    request = requests[0]
    print("\none trace per loop (service, span, trace id, span id):")
    print(f"  {request}")
    print(f"    <- linked from ({len(root.links)} links): {root}")
    for span in reversed(path[:-1]):
        print(f"  {span}")
    decided = promotion.attributes
    print(f"    published {decided['modelfleet.published']}, stage {decided['modelfleet.stage']}")
    print("  in the same trace, among others:")
    for span in [s for s in loop if s.name == "training task"] + http_calls[:3]:
        print(f"  {span}")
    print(f"  ({len(loop)} spans in the loop's trace, {len(http_calls)} of them HTTP calls to MLflow)")
