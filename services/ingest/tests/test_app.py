"""The ingest app records dataset specs and turns batches into versions through Kafka topics."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import fsspec
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from modelfleet_common.kafka import event_headers
from modelfleet_common.settings import StateSettings
from modelfleet_common.state import StateUnavailable
from modelfleet_contracts import (
    ColumnSpec,
    DataBatchSubmitted,
    DatasetSpec,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
)
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import GroundTruthObserved, PredictionLogged, PredictionRecord
from modelfleet_contracts.specs import (
    DatasetBinding,
    ModelMetadata,
    ModelSpec,
    ModelSpecBody,
    ModelSpecSubmitted,
    PipelineRef,
)
from modelfleet_contracts.topics import (
    DATA_BATCHES,
    DATASET_SPECS,
    DATASET_VERSIONS,
    GROUND_TRUTH,
    MODEL_SPECS,
    PREDICTION_LOGS,
)
from modelfleet_ingest.bootstrap import bootstrap
from modelfleet_ingest.config import IngestSettings
from modelfleet_ingest.state import VersionRecord

from .conftest import Opened, Published

RECORD = VersionRecord(
    dataset="d",
    version="v1",
    uri="/data/datasets/d/v1.parquet",
    profile_uri="/data/datasets/d/v1.profile.json",
    row_count=1,
    columns=[("x", "double")],
    spec_revision="r1",
)


@pytest.fixture
def ingest_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """`modelfleet_ingest.app` built from the environment: state in tmp_path, data in memory."""
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FLEET_DATA_DIR", f"memory:///ingest-app-{uuid.uuid4().hex}")
    monkeypatch.setenv("FLEET_SPEC_WAIT_SECONDS", "0")
    sys.modules.pop("modelfleet_ingest.app", None)
    module = importlib.import_module("modelfleet_ingest.app")
    yield module
    if module.dependencies.cache_info().currsize:
        module.close_state()
    sys.modules.pop("modelfleet_ingest.app", None)


def test_importing_the_app_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: Opened
) -> None:
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    sys.modules.pop("modelfleet_ingest.app", None)
    try:
        with opened.during():
            module = importlib.import_module("modelfleet_ingest.app")
        assert module.dependencies.cache_info().currsize == 0
        assert not [path for path in opened.paths if path.startswith(str(tmp_path))]
        assert not tmp_path.joinpath("state").exists()
        # The feedback flush and the publish of joined labels are the service's periodic tasks (after
        # every service's consumer-lag refresh), run from startup to shutdown.
        assert [entry[-1] for entry in module.service._periodic] == [
            "consumer-lag",
            "feedback-flush",
            "labeled-publish",
        ]
    finally:
        sys.modules.pop("modelfleet_ingest.app", None)


def test_bootstrap_keeps_ingest_s_state_in_the_state_engine_of_the_state_dir(tmp_path: Path) -> None:
    settings = IngestSettings(state_dir=tmp_path / "state", data_dir=str(tmp_path / "data"))
    deps = bootstrap(settings, publish=Published())
    deps.state.record_version(RECORD, event_id="batch-1", mode="replace")
    deps.handled.mark("version:d:v1")
    assert deps.state_engine is not None
    deps.state_engine.close()

    assert (tmp_path / "state" / "ingest-state.sqlite").is_file()
    again = bootstrap(settings, publish=Published())
    assert again.state.batch_outcome("batch-1") == RECORD
    assert again.handled.seen("version:d:v1")
    assert again.feedback_policy.ttl_seconds == settings.ingest_feedback_ttl_seconds
    assert again.records_ttl_seconds == settings.state.idempotency_ttl_seconds
    assert again.state_engine is not None
    again.state_engine.close()


def test_bootstrap_refuses_an_unreachable_state_engine_naming_the_variable(tmp_path: Path) -> None:
    settings = IngestSettings(
        state_dir=tmp_path, state=StateSettings(url="postgresql+psycopg://ingest@127.0.0.1:1/modelfleet")
    )
    with pytest.raises(StateUnavailable, match="FLEET_STATE_URL"):
        bootstrap(settings, publish=Published())


async def publish(broker: KafkaBroker, topic: str, event: Event) -> None:
    await broker.publish(
        event.model_dump_json().encode(), topic=topic, key=event.key.encode(), headers=event_headers(event)
    )


async def test_a_declared_dataset_s_batch_becomes_an_announced_version(ingest_app: ModuleType) -> None:
    service = ingest_app.service
    schema = DatasetSchema(
        columns=[ColumnSpec(name="x", type="float"), ColumnSpec(name="label", type="string")]
    )
    spec = DatasetSpecSubmitted(
        producer="test",
        dataset="points",
        revision="r1",
        spec=DatasetSpec(metadata=DatasetMetadata(name="points"), spec=schema),
    )
    batch_uri = f"{service.settings.data_dir}/incoming/points.csv"
    fsspec.filesystem("memory").pipe_file(batch_uri, b"label,x\na,1.5\nb,2\n")
    batch = DataBatchSubmitted(producer="test", dataset="points", uri=batch_uri)
    announced: list[DatasetVersionCreated] = []

    @service.broker.subscriber(service.namer.topic(DATASET_VERSIONS), group_id="test-observer")  # type: ignore[untyped-decorator]
    async def observe(event: DatasetVersionCreated) -> None:
        announced.append(event)

    async with TestKafkaBroker(service.broker) as broker:
        await publish(broker, service.namer.topic(DATASET_SPECS), spec)
        await publish(broker, service.namer.topic(DATA_BATCHES), batch)

    [version] = announced
    assert (version.dataset, version.row_count, version.causation_id) == ("points", 2, batch.event_id)
    assert [c.name for c in version.columns] == ["x", "label"]
    assert (
        version.profile_uri == f"{service.settings.data_dir}/datasets/points/{version.version}.profile.json"
    )
    assert fsspec.filesystem("memory").exists(version.uri)
    handled = service.metrics.events_handled.labels(service.namer.topic(DATA_BATCHES), batch.event_type)
    assert handled._value.get() == 1


async def test_a_prediction_and_its_label_join_into_a_pending_feedback_row(ingest_app: ModuleType) -> None:
    service = ingest_app.service
    spec = ModelSpec(
        metadata=ModelMetadata(name="scorer", owner="team@example.com", risk_class="low"),
        spec=ModelSpecBody(
            dataset=DatasetBinding(name="points"),
            features=["x"],
            target="label",
            pipeline=PipelineRef(template="tabular-classifier", version="1"),
        ),
    )
    record = PredictionRecord(
        request_id="req-1",
        version="1",
        route="champion",
        features={"x": 1.5},
        prediction="a",
        latency_ms=2.0,
        predicted_at=datetime.now(UTC),
    )

    async with TestKafkaBroker(service.broker) as broker:
        await publish(
            broker,
            service.namer.topic(MODEL_SPECS),
            ModelSpecSubmitted(producer="test", model="scorer", revision="r1", spec=spec),
        )
        await publish(
            broker,
            service.namer.topic(PREDICTION_LOGS),
            PredictionLogged(producer="serving", model="scorer", predictions=[record]),
        )
        await publish(
            broker,
            service.namer.topic(GROUND_TRUTH),
            GroundTruthObserved(producer="labels", model="scorer", request_id="req-1", label="b"),
        )

    claim = ingest_app.dependencies().feedback.claim("points", now=datetime.now(UTC).timestamp())
    assert claim is not None
    [row] = claim.rows
    assert (row.model, row.request_id, row.row.values) == ("scorer", "req-1", {"x": 1.5, "label": "b"})
