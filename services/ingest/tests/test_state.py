"""ingest's state (declared specs, latest versions, what each batch produced) survives restarts."""

from __future__ import annotations

from pathlib import Path

from modelfleet_contracts import ColumnSpec, DatasetSpec
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_ingest.state import SqliteIngestState, VersionRecord


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


def test_the_latest_spec_of_a_dataset_survives_a_restart(tmp_path: Path) -> None:
    state = SqliteIngestState(tmp_path / "state.sqlite")
    assert state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    assert state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")
    state.close()

    declared = SqliteIngestState(tmp_path / "state.sqlite").spec("d")

    assert declared is not None
    assert declared.revision == "r2"
    assert declared.spec == spec("int")


def test_a_redelivered_spec_event_does_not_undo_a_newer_spec(tmp_path: Path) -> None:
    state = SqliteIngestState(tmp_path / "state.sqlite")
    state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")

    assert not state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")

    declared = state.spec("d")
    assert declared is not None
    assert declared.revision == "r2"


def test_a_spec_reapplied_by_a_new_event_holds_again(tmp_path: Path) -> None:
    state = SqliteIngestState(tmp_path / "state.sqlite")
    state.put_spec("d", "r1", spec("float"), "event-1", "2024-05-01T00:00:00+00:00")
    state.put_spec("d", "r2", spec("int"), "event-2", "2024-05-01T00:01:00+00:00")
    state.put_spec("d", "r1", spec("float"), "event-3", "2024-05-01T00:02:00+00:00")  # a revert
    declared = state.spec("d")
    assert declared is not None
    assert declared.revision == "r1"


def test_the_latest_version_and_what_each_batch_produced_survive_a_restart(tmp_path: Path) -> None:
    state = SqliteIngestState(tmp_path / "state.sqlite")
    assert state.latest_version("d") is None
    state.record_version(record("v1"), event_id="batch-1", mode="replace")
    state.record_version(record("v2"), event_id="batch-2", mode="append")
    state.close()

    reopened = SqliteIngestState(tmp_path / "state.sqlite")

    assert reopened.latest_version("d") == record("v2")
    assert reopened.batch_outcome("batch-1") == record("v1")
    assert reopened.batch_outcome("batch-3") is None
