"""Several replicas of ingest share its state engine and dataset store: a prediction and its label
join wherever each arrives, two flushers never claim the same row, a killed flusher's claim lapses
and is flushed by the next one, and two changes of one dataset always build one on the other.

Each test runs on SQLite and, with `FLEET_TEST_POSTGRES_URL`, on PostgreSQL, where every replica
has its own engine (its own connections and locks) on the same schema.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelfleet_common.state import StateEngine
from modelfleet_contracts import ColumnSpec, DataBatchSubmitted, DatasetVersionCreated
from modelfleet_contracts.data import DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.feedback import FeedbackBinding
from modelfleet_ingest.feedback_state import SqlFeedbackState, WaitingPrediction
from modelfleet_ingest.handlers import (
    IngestDeps,
    ingest_batch,
    materialize_feedback,
    note_model_spec,
    record_dataset_spec,
    record_ground_truth,
    record_predictions,
)
from modelfleet_ingest.store import DatasetStore, StoredVersion

from .conftest import Engines, Published, deps_on, spec_event
from .test_feedback import MODEL, NOW, label, logged, model_spec, prediction

BINDING = FeedbackBinding("plants", "failed", {})
PLANTS = DatasetSchema(
    columns=[
        ColumnSpec(name="plant", type="string"),
        ColumnSpec(name="machine", type="string", categories=["m1", "m2", "m3"]),
        ColumnSpec(name="temperature", type="float", min=-50, max=150),
        ColumnSpec(name="failed", type="bool"),
    ]
)


def waiting(request_id: str) -> WaitingPrediction:
    return WaitingPrediction(request_id, 0, "1", {"machine": "m1", "plant": "p1"}, predicted_at=0.0)


def join(state: SqlFeedbackState, request_id: str) -> None:
    state.add_predictions(MODEL, [waiting(request_id)], now=0, max_waiting=100_000)
    state.add_label(MODEL, request_id, True, observed_at=0, now=0, max_waiting=100_000)


def run_together(*work: Callable[[], None]) -> None:
    """Run each callable in its own thread (as replicas would, each on its own connections)."""
    failures: list[BaseException] = []

    def guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=(task,)) for task in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures


def test_a_prediction_and_its_label_arriving_at_two_replicas_at_once_always_join(engines: Engines) -> None:
    predictions_replica = SqlFeedbackState(engines.open())
    labels_replica = SqlFeedbackState(engines.open())
    predictions_replica.put_binding(MODEL, BINDING, "r1", now=0)
    requests = [f"q{index}" for index in range(150)]

    def predict() -> None:
        for request in requests:
            predictions_replica.add_predictions(MODEL, [waiting(request)], now=0, max_waiting=100_000)

    def label_them() -> None:
        for request in requests:
            labels_replica.add_label(MODEL, request, True, observed_at=0, now=0, max_waiting=100_000)

    run_together(predict, label_them)

    assert predictions_replica.pending() == {"plants": len(requests)}
    assert labels_replica.waiting(MODEL) == (0, 0)


def test_two_flushers_never_claim_the_same_row(engines: Engines) -> None:
    writer = SqlFeedbackState(engines.open())
    flushers = [SqlFeedbackState(engines.open(), owner=name) for name in ("a", "b")]
    writer.put_binding(MODEL, BINDING, "r1", now=0)
    requests = [f"q{index}" for index in range(200)]
    joined_all = threading.Event()
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    claims: list[str] = []

    def keep_joining() -> None:
        for request in requests:
            join(writer, request)
        joined_all.set()

    def keep_flushing(flusher: SqlFeedbackState) -> None:
        while True:
            last_round = joined_all.is_set()
            claim = flusher.claim("plants", now=1.0)  # one instant: no claim ever lapses
            if claim is not None:
                claims.append(claim.flush)
                claimed[flusher.owner].extend(row.request_id for row in claim.rows)
                flusher.settle(claim.flush, now=1.0)
            elif last_round:
                return
            else:
                time.sleep(0.001)

    run_together(keep_joining, *(lambda flusher=flusher: keep_flushing(flusher) for flusher in flushers))
    while (claim := flushers[0].claim("plants", now=1.0)) is not None:  # what both left, if any
        claims.append(claim.flush)
        claimed["a"].extend(row.request_id for row in claim.rows)
        flushers[0].settle(claim.flush, now=1.0)

    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == sorted(requests)  # each row once, none lost
    assert len(set(claims)) == len(claims)
    assert writer.pending() == {}


def test_a_claim_is_held_by_its_flusher_until_it_lapses(engines: Engines) -> None:
    first = SqlFeedbackState(engines.open(), owner="a", claim_seconds=60)
    second = SqlFeedbackState(engines.open(), owner="b", claim_seconds=60)
    first.put_binding(MODEL, BINDING, "r1", now=0)
    join(first, "q1")

    claim = first.claim("plants", now=100)
    assert claim is not None
    join(first, "q2")  # joins after the claim: not part of it

    assert second.claim("plants", now=159) is None  # held: the other flusher is at it
    replayed = first.claim("plants", now=150)  # its own flusher replays it, and holds it again
    assert replayed == claim
    assert second.claim("plants", now=209) is None
    taken_over = second.claim("plants", now=211)
    assert taken_over == claim  # the same name, the same rows
    assert first.claim("plants", now=212) is None  # now the other's

    second.settle(claim.flush, now=212)
    following = first.claim("plants", now=213)
    assert following is not None
    assert [row.request_id for row in following.rows] == ["q2"]
    assert following.flush != claim.flush


def test_a_claim_name_never_names_other_rows_even_after_every_row_was_settled(engines: Engines) -> None:
    state = SqlFeedbackState(engines.open())
    state.put_binding(MODEL, BINDING, "r1", now=0)
    names = []
    for request in ("q1", "q2", "q3"):
        join(state, request)
        claim = state.claim("plants", now=1)
        assert claim is not None
        names.append(claim.flush)
        state.settle(claim.flush, now=1)
        engines.opened[-1].close()  # a restart between flushes, with an empty table
        state = SqlFeedbackState(engines.open())

    assert len(set(names)) == 3


class SlowStore(DatasetStore):
    """A dataset store whose writes take a while, so that two changes of one dataset overlap."""

    def put_version(self, dataset: str, table: pa.Table) -> StoredVersion:
        time.sleep(0.1)
        return super().put_version(dataset, table)


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return SlowStore(str(tmp_path / "store"))


def two_replicas(
    engines: Engines, store: DatasetStore, published: Published
) -> tuple[IngestDeps, IngestDeps]:
    """Two replicas on one state and one dataset store. On SQLite, the engine of one replica:
    both share it (its locks are this process's); on PostgreSQL each has its own engine."""
    first_engine = engines.open()
    second_engine: StateEngine = engines.open() if engines.shared_locks else first_engine
    first = deps_on(first_engine, store, published)
    second = deps_on(second_engine, store, published)
    first.feedback = SqlFeedbackState(first_engine, owner="a", claim_seconds=60)
    second.feedback = SqlFeedbackState(second_engine, owner="b", claim_seconds=60)
    for deps in (first, second):
        deps.clock = lambda: NOW
    return first, second


async def with_a_first_batch(deps: IngestDeps, uploads: Path) -> DatasetVersionCreated:
    await record_dataset_spec(spec_event(PLANTS, "plants", "r1"), deps)
    first = uploads / "first.csv"
    first.write_text("plant,machine,temperature,failed\np1,m1,20.0,false\np1,m2,21.0,false\n")
    published = deps.publish
    assert isinstance(published, Published)
    await ingest_batch(DataBatchSubmitted(producer="test", dataset="plants", uri=str(first)), deps)
    [version] = versions(published)
    return version


def versions(published: list[Event]) -> list[DatasetVersionCreated]:
    return [event for event in published if isinstance(event, DatasetVersionCreated)]


def append(uploads: Path, name: str, row: str) -> DataBatchSubmitted:
    path = uploads / f"{name}.csv"
    path.write_text(f"plant,machine,temperature,failed\n{row}\n")
    return DataBatchSubmitted(producer="test", dataset="plants", uri=str(path), mode="append")


async def test_two_append_batches_of_one_dataset_at_two_replicas_give_versions_n_and_n_plus_one(
    engines: Engines, store: DatasetStore, published: Published, uploads: Path
) -> None:
    first, second = two_replicas(engines, store, published)
    base = await with_a_first_batch(first, uploads)

    await asyncio.gather(
        ingest_batch(append(uploads, "a", "p2,m1,30.0,true"), first),
        ingest_batch(append(uploads, "b", "p3,m3,40.0,false"), second),
    )

    appended = versions(published)[1:]
    assert sorted(version.row_count for version in appended) == [3, 4]  # never two of 3 rows
    newest = max(appended, key=lambda version: version.row_count)
    assert sorted(pq.read_table(newest.uri).to_pydict()["plant"]) == ["p1", "p1", "p2", "p3"]
    latest = first.state.latest_version("plants")
    assert latest is not None
    assert latest.version == newest.version != base.version


async def test_a_feedback_flush_and_an_append_batch_at_two_replicas_build_one_on_the_other(
    engines: Engines, store: DatasetStore, published: Published, uploads: Path
) -> None:
    first, second = two_replicas(engines, store, published)
    await with_a_first_batch(first, uploads)
    await note_model_spec(model_spec(where={"plant": "p9"}), second)
    await record_predictions(logged(prediction("q1")), first)
    await record_ground_truth(label("q1"), second)

    await asyncio.gather(
        materialize_feedback(NOW, first),
        ingest_batch(append(uploads, "a", "p2,m1,30.0,true"), second),
    )

    appended = versions(published)[1:]
    assert sorted(version.row_count for version in appended) == [3, 4]
    latest = first.state.latest_version("plants")
    assert latest is not None
    assert sorted(pq.read_table(latest.uri).to_pydict()["plant"]) == ["p1", "p1", "p2", "p9"]


async def test_a_claim_of_a_flusher_killed_mid_flush_lapses_and_the_next_flusher_appends_its_rows(
    engines: Engines, store: DatasetStore, published: Published, uploads: Path
) -> None:
    first, second = two_replicas(engines, store, published)
    await with_a_first_batch(first, uploads)
    await note_model_spec(model_spec(where={"plant": "p9"}), first)
    await record_predictions(logged(prediction("q1"), prediction("q2")), first)
    await record_ground_truth(label("q1"), second)
    await record_ground_truth(label("q2"), second)
    # The first replica claimed the rows, then was killed before it stored anything.
    killed = first.feedback.claim("plants", now=NOW.timestamp())
    assert killed is not None

    await materialize_feedback(NOW + timedelta(seconds=30), second)
    assert len(versions(published)) == 1  # still held: the other may be flushing it
    await materialize_feedback(NOW + timedelta(seconds=61), second)

    [_, version] = versions(published)
    assert (version.origin, version.feedback_rows, version.row_count) == ("feedback", 2, 4)
    assert second.state.batch_outcome(killed.flush) is not None  # the same claim, replayed
    assert second.feedback.pending() == {}
    # The killed replica comes back: nothing is left to flush twice.
    await materialize_feedback(NOW + timedelta(seconds=62), first)
    assert len(versions(published)) == 2
