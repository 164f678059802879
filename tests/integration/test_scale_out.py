"""Scale-out under chaos: every service in several replicas on shared state, killed while it works.

One fleet on its own secured Kafka (6 partitions per topic) and PostgreSQL (every service's state,
one schema each), with 2-3 replicas of every control-plane service and 2 of serving. A ModelFleet
of `FLEET_CHAOS_MODELS` models (default 200) plus one model whose live traffic will drift is
applied; while the fleet converges one replica of each service is SIGKILLed (and restarted), and
the broker is restarted once. Then:

- every model is champion, or failed its gates as its data dictates;
- 0 duplicate registry versions (MLflow: one version per training run), 0 duplicate promotions
  (one promotion decision per model and version), 0 lost events (every `TrainingFinished` has an
  evaluation, every passed evaluation a registration);
- a drift injected after the other monitor replica was killed is still detected, and retrains
  the model once.

The counts are printed (run with `-s` to see them) and asserted. Training runs in the trainer's
process (`FLEET_TRAINING_RUNNER=in_process`): two local Ray instances would not fit CI's two cores
next to sixteen services, and Ray has its own tests.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from modelfleet_common.naming import TopicNamer
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import (
    DriftDetected,
    RetrainRequested,
    TrainingStarted,
)
from modelfleet_contracts.topics import (
    CLI,
    DRIFT,
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    RETRAIN_REQUESTS,
    TRAINING_FINISHED,
    TRAINING_STARTED,
    Topic,
)
from modelfleet_devkit import kafka as local_kafka
from modelfleet_devkit import postgres as local_postgres

from . import fleet as fleet_helpers
from .assembly_data import OWNER, drifted, model_spec, sensors
from .fleet import Kafka, SecuredBroker, ServiceProcess, free_port, mlflow_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MODELS = int(os.environ.get("FLEET_CHAOS_MODELS", "200"))
PARTITIONS = 6
REPLICAS = {
    "ingest": 2,
    "trainer": 2,
    "evaluator": 3,
    "registry": 3,
    "deployer": 2,
    "monitor": 2,
    "serving": 2,
}
ROWS_PER_MODEL = 160
DRIFT_FEATURES = ["vibration", "temperature", "machine"]


def slices(models: int, seed: int = 5) -> pd.DataFrame:
    """One slice per model: four numeric features and a label each slice's weights explain."""
    rng = np.random.default_rng(seed)
    rows = models * ROWS_PER_MODEL
    x = rng.normal(size=(rows, 4))
    weights = np.repeat(rng.normal(1.0, 0.3, size=(models, 4)), ROWS_PER_MODEL, axis=0)
    label = (rng.random(rows) < 1 / (1 + np.exp(-(x * weights).sum(axis=1)))).astype(int)
    frame = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    frame.insert(0, "segment", np.repeat([f"s{i:04d}" for i in range(models)], ROWS_PER_MODEL))
    frame["label"] = label
    return frame


def documents(data_dir: Path, suffix: str) -> tuple[list[dict[str, Any]], list[str], str]:
    """The manifest (datasets, a ModelFleet, the drift model's spec), the fleet's model names and
    the drift model's name."""
    data_dir.mkdir(parents=True, exist_ok=True)
    slices(MODELS).to_csv(data_dir / "chaos-slices.csv", index=False)
    sensors(rows=900, seed=61).to_csv(data_dir / "chaos-sensors.csv", index=False)
    slice_columns: list[dict[str, Any]] = [{"name": "segment", "type": "string"}]
    slice_columns += [{"name": f"x{i}", "type": "float"} for i in range(1, 5)]
    slice_columns += [{"name": "label", "type": "int", "min": 0, "max": 1}]
    segments = [f"s{i:04d}" for i in range(MODELS)]
    drift_model = f"chaos-drift{suffix}"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "modelfleet/v1",
            "kind": "Dataset",
            "metadata": {"name": "chaos-slices", "owner": OWNER},
            "spec": {"columns": slice_columns, "source": "chaos-slices.csv"},
        },
        {
            "apiVersion": "modelfleet/v1",
            "kind": "ModelFleet",
            "metadata": {"name": f"chaos{suffix}", "owner": OWNER},
            "spec": {
                "matrix": {"segment": segments},
                "template": {
                    "apiVersion": "modelfleet/v1",
                    "kind": "ModelSpec",
                    "metadata": {"name": f"chaos{suffix}-${{segment}}", "owner": OWNER, "risk_class": "low"},
                    "spec": {
                        "dataset": {"name": "chaos-slices", "where": {"segment": "${segment}"}},
                        "features": ["x1", "x2", "x3", "x4"],
                        "target": "label",
                        "pipeline": {"template": "tabular-classifier", "version": "1"},
                        "hyperparameters": {"C": 1.0, "max_iter": 200},
                    },
                },
            },
        },
        {
            "apiVersion": "modelfleet/v1",
            "kind": "Dataset",
            "metadata": {"name": "chaos-sensors", "owner": OWNER},
            "spec": {
                "columns": [
                    {"name": "vibration", "type": "float"},
                    {"name": "temperature", "type": "float"},
                    {"name": "machine", "type": "string", "categories": ["pump", "compressor"]},
                    {"name": "fails", "type": "int", "min": 0, "max": 1},
                ],
                "source": "chaos-sensors.csv",
            },
        },
        model_spec(
            drift_model,
            "chaos-sensors",
            DRIFT_FEATURES,
            "fails",
            "tabular-classifier",
            "1",
            monitoring={"window_size": 150, "drift_share": 0.3},
            # One retrain per incident: later windows of the same drift must not retrain again.
            retrain={"on_drift": True, "on_decay": False, "cooldown_seconds": 3600},
        ),
    ]
    return docs, [f"chaos{suffix}-{segment}" for segment in segments], drift_model


@dataclass
class Replicas:
    """The fleet's processes: `name -> [replica 0, replica 1, ...]`, each with its own state dir."""

    by_service: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)

    def all(self) -> list[ServiceProcess]:
        return [p for group in self.by_service.values() for p in group]

    def kill(self, service: str, index: int) -> None:
        process = self.by_service[service][index].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        self.killed.append(f"{service}#{index}")

    def restart(self, service: str, index: int) -> None:
        replica = self.by_service[service][index]
        # A fresh port: another process's outgoing connection may hold the old one by now.
        replica.port = free_port()
        replica.start(timeout=180)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:{p.port}\n{p.logs()[-2500:]}" for p in self.all())


@dataclass
class ChaosFleet:
    env: dict[str, str]
    kafka: Kafka
    namer: TopicNamer
    replicas: Replicas
    root: Path
    broker_home: Path
    broker_ports: tuple[int, int]

    def cli(self, *args: str) -> Any:
        import subprocess
        import sys

        return subprocess.run(
            [sys.executable, "-m", "modelfleet_cli.main", *args],
            env={**fleet_helpers.inherited_environment(), **self.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=300,
        )

    async def events(self, topic: Topic) -> list[Any]:
        return [topic.parse(r.value) for r in await self.kafka.read_to_end(self.namer.topic(topic))]

    def restart_broker(self) -> None:
        local_kafka.stop(self.broker_home)
        port, controller = self.broker_ports
        local_kafka.start(self.broker_home, port=port, controller_port=controller, timeout=180)


@pytest.fixture(scope="module")
def chaos_fleet(
    mlflow_uri: str, postgres_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaosFleet]:
    root = tmp_path_factory.mktemp("scale-out")
    # Its own broker: this test restarts it, and wants 6 partitions per topic.
    broker_home = root / "kafka-home"
    ports = (free_port(), free_port())
    bootstrap = local_kafka.start(broker_home, port=ports[0], controller_port=ports[1], timeout=240)
    broker = SecuredBroker(bootstrap, broker_home)
    prefix = f"c{uuid.uuid4().hex[:8]}."
    broker.provision(prefix, partitions=PARTITIONS)
    key = root / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    env = {
        **broker.env(CLI),
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_DATA_DIR": str(root / "data"),
        "FLEET_KAFKA_PARTITIONS": str(PARTITIONS),
        "FLEET_RETRY_BACKOFF_SECONDS": "0.05",
        "FLEET_MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        "FLEET_POLICY_DIR": str(fleet_helpers.REPO / "policies"),
        "FLEET_TRAINING_RUNNER": "in_process",
        "FLEET_CONSUMER_WORKERS": "2",
        "FLEET_MONITOR_REPORT_SECONDS": "2",
        "FLEET_INGEST_FEEDBACK_SECONDS": "2",
        "FLEET_RETRAIN_DATA_WAIT_SECONDS": "5",
        "FLEET_LOG_LEVEL": "INFO",
    }
    replicas = Replicas()
    try:
        for name, count in REPLICAS.items():
            group = replicas.by_service.setdefault(name, [])
            for index in range(count):
                service_env = (
                    env
                    | broker.env(name)
                    | mlflow_env(name, mlflow_uri)
                    | local_postgres.client_environment(postgres_home, name)
                    | {"FLEET_STATE_DIR": str(root / "state" / f"{name}-{index}")}
                )
                group.append(ServiceProcess(name, service_env, root / f"{name}-{index}.log"))
        for process in replicas.all():
            process.start(timeout=180)
        yield ChaosFleet(env, broker.client(), TopicNamer(prefix), replicas, root, broker_home, ports)
    finally:
        for process in replicas.all():
            process.stop()
        local_kafka.stop(broker_home)


@dataclass
class Counts:
    models: int
    champions: int
    failed_gates: int
    unsettled: list[str]
    trainings_finished: int
    evaluations: int
    registrations: int
    duplicate_versions: int
    duplicate_promotions: int
    lost_evaluations: list[str]
    lost_registrations: list[str]
    redelivered_events: int

    def show(self) -> str:
        return (
            f"models {self.models}: champion {self.champions}, failed their gates {self.failed_gates}, "
            f"unsettled {len(self.unsettled)}; trainings finished {self.trainings_finished}, "
            f"evaluations {self.evaluations}, registrations {self.registrations}; duplicate registry "
            f"versions {self.duplicate_versions}, duplicate promotions {self.duplicate_promotions}, "
            f"lost evaluations {len(self.lost_evaluations)}, lost registrations "
            f"{len(self.lost_registrations)}; events delivered more than once {self.redelivered_events}"
        )


def unique(events: list[Any]) -> tuple[list[Any], int]:
    """Events by id (a redelivered publish repeats its id); and how many repeats there were."""
    seen: dict[Any, Any] = {}
    for event in events:
        seen.setdefault(event.event_id, event)
    return list(seen.values()), len(events) - len(seen)


async def count(fleet: ChaosFleet, models: list[str], mlflow: MlflowClient) -> Counts:
    names = set(models)
    finished, r1 = unique([e for e in await fleet.events(TRAINING_FINISHED) if e.model in names])
    evaluated, r2 = unique([e for e in await fleet.events(MODEL_EVALUATIONS) if e.model in names])
    registered, r3 = unique([e for e in await fleet.events(MODEL_REGISTRATIONS) if e.model in names])
    promoted, r4 = unique([e for e in await fleet.events(MODEL_PROMOTIONS) if e.model in names])
    champions = {e.model for e in promoted}
    failed = {e.model for e in evaluated if not e.passed} - champions
    evaluated_runs = {(e.model, e.run_id) for e in evaluated}
    passed_runs = {(e.model, e.run_id) for e in evaluated if e.passed}
    registered_runs = {(e.model, e.run_id) for e in registered}
    promotions = Counter((e.model, e.version) for e in promoted)
    versions_per_run: Counter[tuple[str, str]] = Counter()
    for model in sorted(champions | {e.model for e in registered}):
        for version in mlflow.search_model_versions(f"name = '{model}'"):
            versions_per_run[(model, version.run_id)] += 1
    return Counts(
        models=len(models),
        champions=len(champions),
        failed_gates=len(failed),
        unsettled=sorted(names - champions - failed),
        trainings_finished=len(finished),
        evaluations=len(evaluated),
        registrations=len(registered),
        duplicate_versions=sum(n - 1 for n in versions_per_run.values() if n > 1),
        duplicate_promotions=sum(n - 1 for n in promotions.values() if n > 1),
        lost_evaluations=sorted(
            f"{m}:{r}" for m, r in {(e.model, e.run_id) for e in finished} - evaluated_runs
        ),
        lost_registrations=sorted(f"{m}:{r}" for m, r in passed_runs - registered_runs),
        redelivered_events=r1 + r2 + r3 + r4,
    )


async def settled(fleet: ChaosFleet, models: list[str]) -> tuple[int, int]:
    """(models champion or failed, models in all)."""
    names = set(models)
    champions = {e.model for e in await fleet.events(MODEL_PROMOTIONS) if e.model in names}
    failed = {e.model for e in await fleet.events(MODEL_EVALUATIONS) if e.model in names and not e.passed}
    return len(champions | failed), len(names)


async def wait_settled(fleet: ChaosFleet, models: list[str], at_least: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done, total = 0, len(models)
    while time.monotonic() < deadline:
        done, total = await settled(fleet, models)
        print(f"  … {done}/{total} settled", flush=True)
        if done >= at_least * total:
            return
        await asyncio.sleep(10)
    raise AssertionError(f"only {done}/{total} models settled in {timeout}s\n{fleet.replicas.logs()}")


def send_drifted_traffic(url: str, model: str, rows: int) -> int:
    """Drifted requests with their true labels, one row each; returns how many were answered."""
    frame = drifted(rows, seed=77)
    answered = 0
    rng = random.Random(3)
    with httpx.Client(timeout=30, headers=fleet_helpers.SERVING_HEADERS) as client:
        for index, row in enumerate(frame.to_dict("records")):
            request_id = f"drift-{index}-{rng.random():.6f}"
            inputs = {name: row[name] for name in DRIFT_FEATURES}
            response = client.post(
                f"{url}/predict", json={"model": model, "request_id": request_id, "inputs": [inputs]}
            )
            if response.status_code == 200:
                answered += 1
                client.post(
                    f"{url}/feedback",
                    json={"model": model, "request_id": request_id, "label": int(row["fails"])},
                )
    return answered


@dataclass
class Outcome:
    counts: Counts
    drift: list[DriftDetected]
    retrains: list[RetrainRequested]
    retrain_trainings: list[TrainingStarted]
    killed: list[str]


@pytest.fixture(scope="module")
def outcome(chaos_fleet: ChaosFleet, mlflow_uri: str) -> Outcome:
    fleet = chaos_fleet
    docs, models, drift_model = documents(fleet.root / "data", f"-{uuid.uuid4().hex[:5]}")
    manifest = fleet.root / "data" / "chaos.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    applied = fleet.cli("apply", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    everything = [*models, drift_model]
    replicas = fleet.replicas

    async def converge_under_chaos() -> None:
        # While the fleet converges: kill one replica of every service, restart the broker, and
        # bring the killed replicas back (they rejoin their groups and find their state shared).
        await wait_settled(fleet, everything, at_least=0.1, timeout=900)
        for service in ("evaluator", "registry", "trainer", "ingest"):
            replicas.kill(service, 0)
        await asyncio.sleep(5)
        for service in ("deployer", "monitor", "serving"):
            replicas.kill(service, 0)
        await wait_settled(fleet, everything, at_least=0.3, timeout=900)
        fleet.restart_broker()
        for service in ("evaluator", "registry", "trainer", "ingest", "deployer", "monitor", "serving"):
            replicas.restart(service, 0)
        await wait_settled(fleet, everything, at_least=1.0, timeout=1500)

    asyncio.run(converge_under_chaos())

    async def drift_after_a_monitor_was_killed() -> tuple[list[Any], list[Any], list[Any]]:
        # The other monitor replica dies now: the restarted one owns every partition and must
        # find each model's spec profile, reference and facts in the shared state.
        replicas.kill("monitor", 1)
        serving = replicas.by_service["serving"][0]
        answered = await asyncio.to_thread(send_drifted_traffic, serving.url, drift_model, 450)
        assert answered >= 400, f"serving answered {answered}/450\n{replicas.logs()}"
        deadline = time.monotonic() + 300
        drift: list[Any] = []
        retrains: list[Any] = []
        while time.monotonic() < deadline:
            drift = [e for e in await fleet.events(DRIFT) if e.model == drift_model]
            retrains = [e for e in await fleet.events(RETRAIN_REQUESTS) if e.model == drift_model]
            if drift and retrains:
                break
            await asyncio.sleep(3)
        await asyncio.sleep(15)  # later windows of the same drift must not retrain again
        retrains, _ = unique([e for e in await fleet.events(RETRAIN_REQUESTS) if e.model == drift_model])
        started, _ = unique([e for e in await fleet.events(TRAINING_STARTED) if e.model == drift_model])
        return drift, retrains, [e for e in started if e.attempt == 1]

    drift, retrains, drift_trainings = asyncio.run(drift_after_a_monitor_was_killed())
    counts = asyncio.run(count(fleet, everything, MlflowClient(mlflow_uri)))
    print(
        "\nscale-out chaos:", counts.show(), f"; killed {', '.join(replicas.killed)}; broker restarted once"
    )
    print(f"drift after a monitor was killed: {len(drift)} DriftDetected, {len(retrains)} retrain requests")
    return Outcome(counts, drift, retrains, drift_trainings, replicas.killed)


def test_every_model_is_champion_or_failed_its_gates(outcome: Outcome) -> None:
    assert outcome.counts.unsettled == []
    assert outcome.counts.champions + outcome.counts.failed_gates == outcome.counts.models


def test_no_registry_version_and_no_promotion_is_made_twice(outcome: Outcome) -> None:
    assert outcome.counts.duplicate_versions == 0
    assert outcome.counts.duplicate_promotions == 0


def test_no_event_is_lost(outcome: Outcome) -> None:
    assert outcome.counts.lost_evaluations == []
    assert outcome.counts.lost_registrations == []


def test_a_drift_after_a_monitor_replica_was_killed_is_detected_and_retrains_once(outcome: Outcome) -> None:
    assert outcome.drift, "no DriftDetected for the drifted model"
    assert [r.reason for r in outcome.retrains] == ["drift"]
    # Its first training, then exactly one retrain.
    assert len(outcome.retrain_trainings) == 2
