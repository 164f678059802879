"""On a real broker, batches naming what ingest may not read (`/proc/self/environ`, `/dev/zero`, a
FIFO, a file outside the store, a symlink leading out of it, an oversized file) are each rejected
with a reason, unread, with nothing of them in an event or the quarantine; the consumer keeps going
and the next valid batch becomes a version."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import DataBatchSubmitted, DatasetVersionCreated, DatasetVersionRejected
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_REJECTIONS, DATASET_VERSIONS

from .fleet import Kafka, ServiceProcess
from .test_reliability import declare_machines, uploads, write_batch

pytestmark = pytest.mark.integration

CANARY = "canary-s3cr3t-4f1d"


async def test_batches_ingest_may_not_read_are_refused_unread_and_the_consumer_keeps_going(
    start_service: Callable[..., ServiceProcess], kafka: Kafka, topic_prefix: str, tmp_path: Path
) -> None:
    namer = TopicNamer(topic_prefix)
    # The canary is in ingest's own environment, as a pod's Kafka password would be.
    ingest = start_service("ingest", FLEET_INGEST_MAX_BYTES="1024", FLEET_CANARY_SECRET=CANARY)
    await declare_machines(kafka, namer)
    inbox = uploads(tmp_path)
    outside = tmp_path / "elsewhere" / "credentials.csv"
    outside.parent.mkdir()
    outside.write_text(f"FLEET_KAFKA_SASL_PASSWORD={CANARY}\n")
    fifo = inbox / "pipe.csv"
    os.mkfifo(fifo)
    (inbox / "innocent.csv").symlink_to(outside)
    (inbox / "big.csv").write_text(f"FLEET_KAFKA_SASL_PASSWORD={CANARY}\n" * 100)
    expected = {
        "/proc/self/environ": "not_a_regular_file",
        "/dev/zero": "not_a_regular_file",
        str(fifo): "not_a_regular_file",
        str(outside): "outside_allowed_roots",
        str(inbox / "innocent.csv"): "outside_allowed_roots",
        str(inbox / "big.csv"): "too_large",
    }
    valid = write_batch(inbox / "b.csv")
    for uri in [*expected, str(valid)]:
        event = DataBatchSubmitted(producer="test", dataset="machines", uri=uri)
        await kafka.publish(
            namer.topic(DATA_BATCHES),
            event.model_dump_json().encode(),
            key=b"machines",
            headers=event_headers(event),
        )

    records = await kafka.read(
        namer.topic(DATASET_REJECTIONS), until=lambda found: len(found) >= len(expected), timeout=90
    )
    rejections = [DatasetVersionRejected.model_validate_json(record.value) for record in records]
    assert {r.source_uri: [p.code for p in r.problems] for r in rejections} == {
        uri: [code] for uri, code in expected.items()
    }
    assert not [record for record in records if CANARY.encode() in record.value]
    quarantine = tmp_path / "data" / "quarantine"
    kept = [path for path in quarantine.rglob("*") if path.is_file()]
    assert all(path.name.startswith("missing-") for path in kept), kept  # notes, never bytes
    assert not [path for path in kept if CANARY.encode() in path.read_bytes()]
    versions = await kafka.read(
        namer.topic(DATASET_VERSIONS), until=lambda found: len(found) >= 1, timeout=60
    )
    assert DatasetVersionCreated.model_validate_json(versions[0].value).source_uri == str(valid)
    assert ingest.metric("fleet_dead_letters_total") == 0


async def test_a_file_sent_from_anywhere_with_modelfleet_ingest_is_uploaded_and_ingested(
    start_service: Callable[..., ServiceProcess],
    kafka: Kafka,
    fleet_env: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    start_service("ingest")
    await declare_machines(kafka, TopicNamer(topic_prefix))
    (tmp_path / "laptop").mkdir()
    laptop = write_batch(tmp_path / "laptop" / "b.csv")  # outside the store ingest reads from

    done = subprocess.run(
        [sys.executable, "-m", "modelfleet_cli.main", "ingest", "machines", str(laptop), "--timeout", "60"],
        env={**os.environ, **fleet_env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "version" in done.stdout
    [uploaded] = (tmp_path / "data" / "uploads" / "machines").iterdir()
    assert uploaded.read_bytes() == laptop.read_bytes()
