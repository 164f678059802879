"""ingest's state (declared specs, latest versions, what each batch produced) survives restarts and
is the same seen from any replica, on SQLite and PostgreSQL."""

from __future__ import annotations

from modelfleet_contracts import ColumnSpec, DatasetSpec
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_ingest.feedback import FeedbackBinding
from modelfleet_ingest.feedback_state import SqlFeedbackState, WaitingPrediction
from modelfleet_ingest.state import Pruned, SqlIngestState, VersionRecord

from .conftest import Engines


def spec(column_type: str) -> DatasetSpec:
    columns = [ColumnSpec(name="x", type=column_type)]  # type: ignore[arg-type]
    return DatasetSpec(metadata=DatasetMetadata(name="d"), spec=DatasetSchema(columns=columns))


def record(version: str) -> VersionRecord:
    return VersionRecord(
        dataset="d",
        version=version,
        uri=f"/store/datasets/d/{version}.parquet",
        profile_uri=f"/store/datasets/d/{version}.profile.json",
        row_count=2,
        columns=[("x", "double")],
        spec_revision="r1",
    )


def test_the_latest_spec_of_a_dataset_survives_a_restart(engines: Engines) -> None:
    state = SqlIngestState(engines.open())
    assert state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    assert state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")
    engines.opened[0].close()

    declared = SqlIngestState(engines.open()).spec("d")

    assert declared is not None
    assert declared.revision == "r2"
    assert declared.spec == spec("int")


def test_a_redelivered_spec_event_does_not_undo_a_newer_spec(engines: Engines) -> None:
    state = SqlIngestState(engines.open())
    state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")

    # Redelivered to another replica.
    assert not SqlIngestState(engines.open()).put_spec(
        "d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00"
    )

    declared = state.spec("d")
    assert declared is not None
    assert declared.revision == "r2"


def test_a_spec_reapplied_by_a_new_event_holds_again(engines: Engines) -> None:
    state = SqlIngestState(engines.open())
    state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")
    state.put_spec("d", "r1", spec("float"), "event-3", "2024-05-01T00:02:00+00:00")  # a revert
    declared = state.spec("d")
    assert declared is not None
    assert declared.revision == "r1"


def test_the_latest_version_and_what_each_batch_produced_survive_a_restart(engines: Engines) -> None:
    state = SqlIngestState(engines.open())
    assert state.latest_version("d") is None
    state.record_version(record("v1"), event_id="batch-1", mode="replace")
    state.record_version(record("v2"), event_id="batch-2", mode="append")
    engines.opened[0].close()

    reopened = SqlIngestState(engines.open())

    assert reopened.latest_version("d") == record("v2")
    assert reopened.batch_outcome("batch-1") == record("v1")
    assert reopened.batch_outcome("batch-3") is None


def test_redelivery_guards_are_pruned_after_their_ttl_but_not_a_claim_still_replayed(
    engines: Engines,
) -> None:
    engine = engines.open()
    state = SqlIngestState(engine)
    feedback = SqlFeedbackState(engine)
    state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    state.record_version(record("v1"), event_id="batch-1", mode="replace")
    feedback.put_binding("m", FeedbackBinding("d", "y", {}), "r1", now=0)
    feedback.add_predictions("m", [WaitingPrediction("q1", 0, "1", {"x": 1}, 0.0)], now=0, max_waiting=10)
    feedback.add_label("m", "q1", 1, observed_at=0, now=0, max_waiting=10)
    claim = feedback.claim("d", now=0)
    assert claim is not None
    # The claim's version was stored, then the flush failed before settling it.
    state.record_version(record("v2"), event_id=claim.flush, mode="feedback")

    assert state.prune(0.0) == Pruned(spec_events=0, batch_outcomes=0)
    pruned = state.prune(float("inf"))

    assert pruned == Pruned(spec_events=1, batch_outcomes=1)
    assert state.batch_outcome("batch-1") is None
    assert state.batch_outcome(claim.flush) == record("v2")  # its replay must not append twice
    assert state.latest_version("d") == record("v2")  # versions themselves are lineage: kept
    # After the TTL a redelivered spec event applies again (Kafka redelivers minutes, not weeks).
    assert state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
