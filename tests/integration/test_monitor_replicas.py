"""Two monitor replicas on the secured broker and a shared PostgreSQL: a model's half-counted drift
window moves with its partition to the replica that joins, and after that replica is SIGKILLed,
a drift injected into its model is detected by the one left.

Two partitions per topic, two models, one on each (their keys' partitions, as serving's producer
computes them). Both replicas consume prediction-logs, labeled-predictions, model-specs and the other
topics keyed by model in one group with the range assignor, so each owns one model whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from aiokafka.partitioner import DefaultPartitioner

from modelfleet_cli.local_home import REPO
from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_common.profiles import reference_profile
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    ModelRegistered,
    ModelSpec,
    ModelSpecSubmitted,
    PredictionLogged,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_contracts.topics import DRIFT, PREDICTION_LOGS, topic_of
from modelfleet_devkit import postgres as local_postgres

from .fleet import Kafka, SecuredBroker, ServiceProcess

pytestmark = pytest.mark.integration

PARTITIONS = 2
WINDOW = 200
BATCH = 100


def model_on(partition: int) -> str:
    """A model name whose key lands on `partition` (murmur2, as every producer of the fleet)."""
    for index in range(1000):
        name = f"pump-{index}"
        if DefaultPartitioner()(name.encode(), list(range(PARTITIONS)), list(range(PARTITIONS))) == partition:
            return name
    raise AssertionError(f"no name lands on partition {partition}")


@pytest.fixture
def fleet(
    kafka_broker: SecuredBroker, topic_prefix: str, postgres_home: Path, tmp_path: Path
) -> dict[str, str]:
    kafka_broker.provision(topic_prefix, partitions=PARTITIONS)
    return {
        **kafka_broker.env("monitor"),
        **local_postgres.client_environment(postgres_home, "monitor"),
        # Each test its own schema would need its own role; its own prefix keeps models apart.
        "FLEET_TOPIC_PREFIX": topic_prefix,
        "FLEET_STATE_DIR": str(tmp_path / "state"),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
        "FLEET_KAFKA_PARTITIONS": str(PARTITIONS),
        "FLEET_MONITOR_REPORT_SECONDS": "1",
        "FLEET_MONITOR_CHECKPOINT_SECONDS": "1",
        "FLEET_RETRY_BACKOFF_SECONDS": "0.05",
    }


@pytest.fixture
def replicas(fleet: dict[str, str], tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for replica in started:
        replica.stop()


def facts(model: str, profile_uri: str) -> list[Event]:
    spec = ModelSpec.model_validate(
        {
            "metadata": {"name": model, "owner": "team@example.com", "risk_class": "medium"},
            "spec": {
                "dataset": {"name": "telemetry"},
                "features": ["temperature", "vibration"],
                "target": "failed",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
                "monitoring": {"window_size": WINDOW, "drift_share": 0.3},
            },
        }
    )
    return [
        TrainingFinished(
            producer="trainer",
            model=model,
            spec_revision="r1",
            dataset="telemetry",
            dataset_version="v1",
            template="tabular-classifier",
            template_version="1",
            run_id=f"run-{model}",
            model_uri=f"runs:/run-{model}/model",
            metrics={"accuracy": 0.9},
            duration_seconds=1.0,
            code_version="test",
            environment_hash="env",
        ),
        ModelRegistered(
            producer="registry",
            model=model,
            version="1",
            run_id=f"run-{model}",
            model_uri=f"models:/{model}/1",
            digest="d",
            signature="s",
            signing_key_id="k",
            passed_evaluation=True,
            lineage={"dataset": "telemetry", "dataset_version": "v1"},
        ),
        ModelSpecSubmitted(producer="cli:test", model=model, revision="r1", spec=spec),
    ]


def traffic(model: str, count: int, *, temperature: float, prefix: str, seed: int) -> PredictionLogged:
    rng = np.random.default_rng(seed)
    return PredictionLogged(
        producer="serving",
        model=model,
        predictions=[
            PredictionRecord(
                request_id=f"{prefix}{i}",
                version="1",
                route="champion",
                features={
                    "temperature": float(rng.normal(temperature, 5)),
                    "vibration": float(rng.normal(0.3, 0.05)),
                },
                prediction=int(rng.integers(0, 2)),
                latency_ms=2.0,
                dataset_version="v1",
                predicted_at=datetime.now(UTC),
            )
            for i in range(count)
        ],
    )


async def publish(kafka: Kafka, namer: TopicNamer, *events: Event) -> None:
    for event in events:
        await kafka.publish(
            namer.topic(topic_of(type(event))),
            event.model_dump_json().encode(),
            key=event.key.encode(),
            headers=event_headers(event),
        )


def wait_for(condition: Any, what: str, replicas: list[ServiceProcess], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    logs = "\n".join(f"--- {r.log_path.name}\n{r.logs()}" for r in replicas)
    raise AssertionError(f"{what} after {timeout}s\n{logs}")


def owned_partitions(replica: ServiceProcess) -> list[int] | None:
    """The partitions of the replica's latest assignment, from its log."""
    latest = None
    for line in replica.log_path.read_text(errors="replace").splitlines():
        if '"partitions assigned"' in line:
            latest = json.loads(line)["partitions"]
    return latest


def drifts(replica: ServiceProcess) -> float:
    return replica.metric("fleet_monitor_drift_detected_total")


async def test_a_models_window_moves_with_its_partition_and_survives_a_killed_replica(
    fleet: dict[str, str], replicas: list[ServiceProcess], kafka: Kafka, topic_prefix: str, tmp_path: Path
) -> None:
    namer = TopicNamer(topic_prefix)
    rng = np.random.default_rng(5)
    profile = reference_profile(
        pa.table({"temperature": rng.normal(70, 5, 3000), "vibration": rng.normal(0.3, 0.05, 3000)}),
        dataset="telemetry",
        version="v1",
    )
    profile_path = tmp_path / "v1.profile.json"
    profile_path.write_text(json.dumps(profile))
    models = [model_on(0), model_on(1)]
    dataset = DatasetVersionCreated(
        producer="ingest",
        dataset="telemetry",
        version="v1",
        uri=str(tmp_path / "v1.parquet"),
        row_count=3000,
        columns=[],
        source_uri=str(tmp_path / "batch.csv"),
        profile_uri=str(profile_path),
    )
    first = ServiceProcess("monitor", dict(fleet), tmp_path / "monitor-a.log")
    replicas.append(first.start())
    await publish(
        kafka, namer, dataset, *[event for model in models for event in facts(model, str(profile_path))]
    )
    # Facts of other services come in groups of their own: known before the traffic counts.
    for event_topic, count in (("dataset-versions", 1), ("model-registrations", 2), ("model-specs", 2)):
        wait_for(
            lambda name=f"{topic_prefix}fleet.{event_topic}.v1", count=count: (
                first.metric("fleet_events_handled_total", topic=name) >= count
            ),
            f"the first replica did not read {event_topic}",
            replicas,
        )
    # A window like the training data (it also becomes each version's prediction baseline), then
    # half a window of hot inputs: counted by the first replica, which owns both models.
    for model in models:
        await publish(
            kafka,
            namer,
            *[
                traffic(model, BATCH, temperature=70.0, prefix=f"base{b}-", seed=b)
                for b in range(WINDOW // BATCH)
            ],
            traffic(model, WINDOW // 2, temperature=95.0, prefix="hot-", seed=11),
        )
    logs = namer.topic(PREDICTION_LOGS)
    batches = len(models) * (WINDOW // BATCH + 1)
    wait_for(
        lambda: first.metric("fleet_events_handled_total", topic=logs) >= batches,
        "the first replica did not count the traffic",
        replicas,
    )
    assert drifts(first) == 0

    second = ServiceProcess("monitor", dict(fleet), tmp_path / "monitor-b.log")
    replicas.append(second.start())
    wait_for(lambda: owned_partitions(second), "the second replica was given no partition", replicas)
    wait_for(
        lambda: len(owned_partitions(first) or []) == 1, "the first replica kept every partition", replicas
    )
    [moved] = owned_partitions(second) or []

    # The other half of each window: each replica counts its own model's, on the half it took over.
    for model in models:
        await publish(kafka, namer, traffic(model, WINDOW // 2, temperature=95.0, prefix="hot2-", seed=12))
    found = await kafka.read(
        namer.topic(DRIFT), until=lambda records: len(records) >= len(models), timeout=40
    )
    drift = [DriftDetected.model_validate_json(record.value) for record in found]
    assert sorted(event.model for event in drift) == sorted(models)
    assert {event.rows for event in drift} == {WINDOW}
    assert (drifts(first), drifts(second)) == (1, 1)

    # The second replica dies without a goodbye; a new drift of its model goes to the first one.
    assert second.process is not None
    second.process.kill()
    second.process.wait(10)
    await publish(
        kafka,
        namer,
        *[
            traffic(models[moved], BATCH, temperature=95.0, prefix=f"after-kill{b}-", seed=20 + b)
            for b in range(WINDOW // BATCH)
        ],
    )
    wait_for(lambda: drifts(first) == 2, "the drift after the kill was not detected", replicas, timeout=60)
    found = await asyncio.wait_for(
        kafka.read(namer.topic(DRIFT), until=lambda records: len(records) >= 3, timeout=20), 30
    )
    assert [DriftDetected.model_validate_json(r.value).model for r in found].count(models[moved]) == 2
    assert first.metric("fleet_dead_letters_total") == 0
    assert first.terminate() == 0, first.logs()
