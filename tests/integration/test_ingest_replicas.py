"""Two replicas of ingest on one PostgreSQL schema and one dataset store, on a real broker with two
partitions per topic: predictions and labels of several models are joined wherever each arrives
(each topic has its own consumer group, so a model's predictions and labels are often handled by
different replicas; the test prints who handled what), and every labelled prediction becomes
exactly one row of its dataset, though one replica is SIGKILLed halfway (its partitions, and any
claim it held, pass to the other)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_common.postgres_roles import SUPERUSER, state_url
from modelfleet_contracts import (
    DataBatchSubmitted,
    DatasetSpec,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    GroundTruthObserved,
    ModelSpec,
    ModelSpecSubmitted,
    PredictionLogged,
    PredictionRecord,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import (
    DATA_BATCHES,
    DATASET_SPECS,
    DATASET_VERSIONS,
    GROUND_TRUTH,
    MODEL_SPECS,
    PREDICTION_LOGS,
    Topic,
)
from modelfleet_devkit import postgres as local_postgres

from .fleet import Kafka, SecuredBroker, ServiceProcess

pytestmark = pytest.mark.integration

PARTITIONS = 2
MODELS = [f"plant-p{index}" for index in range(4)]
REQUESTS_PER_MODEL = 30
PLANTS = DatasetSpec.model_validate(
    {
        "metadata": {"name": "plants"},
        "spec": {
            "columns": [
                {"name": "plant", "type": "string"},
                {"name": "machine", "type": "string"},
                {"name": "temperature", "type": "float"},
                {"name": "failed", "type": "bool"},
            ]
        },
    }
)


@pytest.fixture
def ingest_schema(postgres_home: Path) -> Iterator[str]:
    """A schema of the `ingest` role of its own for this test (the role may not create one)."""
    schema = f"ingest_{uuid.uuid4().hex[:10]}"
    password = local_postgres.password_file(postgres_home, SUPERUSER).read_text().strip()
    url = sa.make_url(
        state_url(SUPERUSER, local_postgres.HOST, local_postgres.server_port(postgres_home))
    ).set(password=password)
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}" AUTHORIZATION ingest'))
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def model_spec(model: str, plant: str) -> ModelSpecSubmitted:
    spec = ModelSpec.model_validate(
        {
            "metadata": {"name": model, "owner": "team@example.com", "risk_class": "low"},
            "spec": {
                "dataset": {"name": "plants", "where": {"plant": plant}},
                "features": ["machine", "temperature"],
                "target": "failed",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
            },
        }
    )
    return ModelSpecSubmitted(producer="test", model=model, revision=f"rev-{model}", spec=spec)


def temperature(model_index: int, request: int) -> float:
    """A value that names its request: every joined row can be found in the data."""
    return float(model_index * 1000 + request)


async def publish(kafka: Kafka, namer: TopicNamer, topic: Topic, event: Event) -> None:
    await kafka.publish(
        namer.topic(topic),
        event.model_dump_json().encode(),
        key=event.key.encode(),
        headers=event_headers(event),
    )


async def send_traffic(kafka: Kafka, namer: TopicNamer, requests: range) -> None:
    """Each model's predictions of `requests` (one log per model), then their labels."""
    for index, model in enumerate(MODELS):
        records = [
            PredictionRecord(
                request_id=f"{model}-{request}",
                version="1",
                route="champion",
                features={"machine": "m1", "temperature": temperature(index, request)},
                prediction=False,
                latency_ms=1.0,
                predicted_at=datetime.now(UTC),
            )
            for request in requests
        ]
        await publish(
            kafka,
            namer,
            PREDICTION_LOGS,
            PredictionLogged(producer="serving", model=model, predictions=records),
        )
    for model in MODELS:
        for request in requests:
            label = GroundTruthObserved(
                producer="labels", model=model, request_id=f"{model}-{request}", label=request % 2 == 0
            )
            await publish(kafka, namer, GROUND_TRUTH, label)


def feedback_rows(versions: list[DatasetVersionCreated]) -> int:
    """Rows feedback versions appended, each version counted once (an announcement may repeat)."""
    return sum({v.version: v.feedback_rows or 0 for v in versions if v.origin == "feedback"}.values())


async def test_two_replicas_join_and_flush_every_labelled_prediction_exactly_once_though_one_is_killed(
    start_service: Callable[..., ServiceProcess],
    kafka_broker: SecuredBroker,
    kafka: Kafka,
    postgres_home: Path,
    ingest_schema: str,
    tmp_path: Path,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    kafka_broker.provision(prefix, partitions=PARTITIONS)
    namer = TopicNamer(prefix)
    shared = {
        "FLEET_TOPIC_PREFIX": prefix,
        **local_postgres.client_environment(postgres_home, "ingest"),
        "FLEET_STATE_SCHEMA": ingest_schema,
        "FLEET_INGEST_FEEDBACK_SECONDS": "1",
        "FLEET_INGEST_FEEDBACK_CLAIM_SECONDS": "5",
    }
    # One dataset store (fleet_env's FLEET_DATA_DIR), a state dir each: nothing of it is needed.
    first = start_service("ingest", **shared, FLEET_STATE_DIR=str(tmp_path / "state-a"))
    second = start_service("ingest", **shared, FLEET_STATE_DIR=str(tmp_path / "state-b"))

    declared = DatasetSpecSubmitted(producer="test", dataset="plants", revision="r1", spec=PLANTS)
    await publish(kafka, namer, DATASET_SPECS, declared)
    for index, model in enumerate(MODELS):
        await publish(kafka, namer, MODEL_SPECS, model_spec(model, f"p{index}"))
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "plants.csv").write_text(
        "plant,machine,temperature,failed\nbase,m2,-1.0,false\nbase,m3,-2.0,true\n"
    )
    await publish(
        kafka,
        namer,
        DATA_BATCHES,
        DataBatchSubmitted(producer="test", dataset="plants", uri=str(uploads / "plants.csv")),
    )

    def announced(records: list[object]) -> list[DatasetVersionCreated]:
        return [DatasetVersionCreated.model_validate_json(record.value) for record in records]  # type: ignore[attr-defined]

    half = REQUESTS_PER_MODEL // 2
    await send_traffic(kafka, namer, range(half))
    topic = namer.topic(DATASET_VERSIONS)
    await kafka.read(
        topic, until=lambda records: feedback_rows(announced(records)) >= half * len(MODELS), timeout=90
    )

    handled = {
        name: [
            int(replica.metric("fleet_events_handled_total", topic=namer.topic(topic)))
            for replica in (first, second)
        ]
        for name, topic in (("predictions", PREDICTION_LOGS), ("labels", GROUND_TRUTH))
    }
    first.stop()  # SIGKILL: no goodbye to its consumer groups, any claim it held stays behind
    await send_traffic(kafka, namer, range(half, REQUESTS_PER_MODEL))
    total = REQUESTS_PER_MODEL * len(MODELS)
    records = await kafka.read(
        topic, until=lambda records: feedback_rows(announced(records)) >= total, timeout=120
    )

    versions = announced(records)
    assert feedback_rows(versions) == total, second.logs()
    latest = max(versions, key=lambda version: version.row_count)
    assert latest.row_count == 2 + total
    data = pq.read_table(latest.uri).to_pydict()
    expected = [-2.0, -1.0] + [
        temperature(index, request) for index in range(len(MODELS)) for request in range(REQUESTS_PER_MODEL)
    ]
    assert sorted(data["temperature"]) == sorted(expected)  # every labelled prediction, once
    assert sorted(set(data["plant"])) == sorted(["base", *(f"p{index}" for index in range(len(MODELS)))])
    print(f"\nfirst half handled by (first, second) replica: {handled}; {total} feedback rows in all")
