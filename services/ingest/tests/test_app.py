"""The ingest app records dataset specs and turns batches into versions through Kafka topics."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import fsspec
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import (
    ColumnSpec,
    DataBatchSubmitted,
    DatasetSpec,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
)
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_SPECS, DATASET_VERSIONS


@pytest.fixture
def ingest_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """`modelfleet_ingest.app` built from the environment: state in tmp_path, data in memory."""
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FLEET_DATA_DIR", f"memory:///ingest-app-{uuid.uuid4().hex}")
    monkeypatch.setenv("FLEET_SPEC_WAIT_SECONDS", "0")
    sys.modules.pop("modelfleet_ingest.app", None)
    yield importlib.import_module("modelfleet_ingest.app")
    sys.modules.pop("modelfleet_ingest.app", None)


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
