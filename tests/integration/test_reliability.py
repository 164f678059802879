"""Poison messages go to the dead-letter topic while the service keeps consuming; a crash
between handling and committing redelivers the event and its effect still happens once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import DataBatchSubmitted, DatasetSpec, DatasetSpecSubmitted, DatasetVersionCreated
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_SPECS, DATASET_VERSIONS

from .fleet import Kafka, ServiceProcess

pytestmark = pytest.mark.integration


def write_batch(path: Path) -> Path:
    path.write_text("machine,temperature,failed\nm1,71.5,0\nm2,99.1,1\n")
    return path


def uploads(tmp_path: Path) -> Path:
    """The upload area of the fleet's dataset store (`FLEET_DATA_DIR` of `fleet_env`): ingest reads
    batches only below the store."""
    folder = tmp_path / "data" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


MACHINES = DatasetSpec.model_validate(
    {
        "metadata": {"name": "machines"},
        "spec": {
            "columns": [
                {"name": "machine", "type": "string"},
                {"name": "temperature", "type": "float"},
                {"name": "failed", "type": "int", "min": 0, "max": 1},
            ]
        },
    }
)


async def declare_machines(kafka: Kafka, namer: TopicNamer) -> None:
    """Ingest only accepts batches of declared datasets."""
    declared = DatasetSpecSubmitted(producer="test", dataset="machines", revision="r1", spec=MACHINES)
    await kafka.publish(
        namer.topic(DATASET_SPECS),
        declared.model_dump_json().encode(),
        key=b"machines",
        headers=event_headers(declared),
    )


async def test_bad_messages_are_dead_lettered_with_reasons_while_the_next_valid_event_is_handled(
    start_service: Callable[..., ServiceProcess], kafka: Kafka, topic_prefix: str, tmp_path: Path
) -> None:
    namer = TopicNamer(topic_prefix)
    batches = namer.topic(DATA_BATCHES)
    ingest = start_service("ingest")
    await declare_machines(kafka, namer)
    valid = DataBatchSubmitted(
        producer="test", dataset="machines", uri=str(write_batch(uploads(tmp_path) / "b.csv"))
    )

    await kafka.publish(batches, b"\xff\xfe this is not json", key=b"machines")
    await kafka.publish(batches, b'{"event_type": "data.batch.submitted", "dataset": 42}', key=b"machines")
    await kafka.publish(
        batches, valid.model_dump_json().encode(), key=b"machines", headers=event_headers(valid)
    )

    dead = await kafka.read(namer.dead_letter(), until=lambda records: len(records) >= 2)
    assert [r.value for r in dead] == [
        b"\xff\xfe this is not json",
        b'{"event_type": "data.batch.submitted", "dataset": 42}',
    ]
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["x-dlq-source-topic"] == batches
        assert headers["x-dlq-source-partition"] == "0"
        assert headers["x-dlq-service"] == "ingest"
        assert headers["x-dlq-error-type"] == "ValidationError"
        assert headers["x-dlq-error-message"]
    offsets = [{k: v.decode() for k, v in r.headers}["x-dlq-source-offset"] for r in dead]
    assert offsets == ["0", "1"]

    created = await kafka.read(namer.topic(DATASET_VERSIONS), until=lambda records: len(records) >= 1)
    assert DatasetVersionCreated.model_validate_json(created[0].value).row_count == 2
    assert ingest.metric("fleet_dead_letters_total") == 2


async def test_a_crash_after_handling_but_before_commit_redelivers_and_the_effect_happens_once(
    start_service: Callable[..., ServiceProcess], kafka: Kafka, topic_prefix: str, tmp_path: Path
) -> None:
    namer = TopicNamer(topic_prefix)
    marker = tmp_path / "killed-once"
    batch = DataBatchSubmitted(
        producer="test", dataset="machines", uri=str(write_batch(uploads(tmp_path) / "b.csv"))
    )
    # The spec is handled by a first, healthy run, so the injected crash hits the batch.
    healthy = start_service("ingest")
    await declare_machines(kafka, namer)
    healthy.wait_for_metric("fleet_events_handled_total", 1, topic=namer.topic(DATASET_SPECS))
    assert healthy.terminate() == 0
    doomed = start_service("ingest", FLEET_CHAOS_KILL_AFTER_HANDLING_MARKER=str(marker))

    await kafka.publish(
        namer.topic(DATA_BATCHES),
        batch.model_dump_json().encode(),
        key=b"machines",
        headers=event_headers(batch),
    )
    assert doomed.wait_exit(timeout=60) == -9, doomed.logs()
    assert marker.exists()

    # Same state directory, marker present: this run handles normally.
    restarted = start_service("ingest", FLEET_CHAOS_KILL_AFTER_HANDLING_MARKER=str(marker))
    restarted.wait_for_metric("fleet_events_handled_total", 1, topic=namer.topic(DATA_BATCHES))

    versions = await kafka.read(
        namer.topic(DATASET_VERSIONS), until=lambda records: len(records) >= 2, timeout=8
    )
    assert len(versions) == 1, "the redelivered batch must not announce a second dataset version"
    assert DatasetVersionCreated.model_validate_json(versions[0].value).causation_id == batch.event_id
