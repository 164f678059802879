"""ingest turns a batch into one immutable dataset version, or rejects and quarantines it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelfleet_common.consumer import PermanentError
from modelfleet_contracts import (
    ColumnSpec,
    DataBatchSubmitted,
    DatasetSpec,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
)
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.handlers import IngestDeps, SpecWait, ingest_batch, record_dataset_spec

Declare = Callable[..., Awaitable[None]]
CSV = "machine,temperature,failed\nm1,71.5,0\nm2,99.1,1\n"


def write(path: Path, text: str = CSV) -> Path:
    path.write_text(text)
    return path


def batch(path: Path, dataset: str = "machines", **fields: object) -> DataBatchSubmitted:
    return DataBatchSubmitted(producer="test", dataset=dataset, uri=str(path), **fields)  # type: ignore[arg-type]


def created(published: list[Event]) -> list[DatasetVersionCreated]:
    assert all(isinstance(event, DatasetVersionCreated) for event in published), published
    return [event for event in published if isinstance(event, DatasetVersionCreated)]


def rejected(published: list[Event]) -> DatasetVersionRejected:
    [event] = published
    assert isinstance(event, DatasetVersionRejected), event
    return event


async def test_a_batch_becomes_one_stored_version_announced_once(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    event = batch(write(uploads / "b.csv"))

    await ingest_batch(event, deps)
    await ingest_batch(event, deps)  # redelivered

    [version] = created(published)
    assert version.row_count == 2
    assert [(c.name, c.dtype) for c in version.columns] == [
        ("machine", "string"),
        ("temperature", "double"),
        ("failed", "bool"),
    ]
    assert version.causation_id == event.event_id
    assert version.correlation_id == event.correlation_id
    assert pq.read_table(version.uri).to_pydict() == {
        "machine": ["m1", "m2"],
        "temperature": [71.5, 99.1],
        "failed": [False, True],
    }
    assert version.profile_uri == str(Path(version.uri).with_name(f"{version.version}.profile.json"))
    profile = json.loads(Path(version.profile_uri).read_text())
    assert (profile["profile_version"], profile["version"]) == (2, version.version)
    assert profile["columns"]["temperature"]["mean"] == pytest.approx(85.3)


async def test_the_same_rows_as_csv_or_parquet_are_one_version(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    typed = pa.table({"machine": ["m1", "m2"], "temperature": [71.5, 99.1], "failed": [False, True]})
    pq.write_table(typed, uploads / "b.parquet")

    await ingest_batch(batch(write(uploads / "b.csv")), deps)
    await ingest_batch(batch(uploads / "b.parquet"), deps)

    assert len(created(published)) == 1


async def test_append_makes_the_latest_version_plus_the_batch(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    await ingest_batch(batch(write(uploads / "first.csv")), deps)
    more = batch(write(uploads / "more.csv", "machine,temperature,failed\nm3,20,0\n"), mode="append")

    await ingest_batch(more, deps)
    await ingest_batch(more, deps)  # redelivered: appended once

    first, grown = created(published)
    assert grown.row_count == 3
    assert pq.read_table(grown.uri).column("machine").to_pylist() == ["m1", "m2", "m3"]
    assert pq.read_table(first.uri).num_rows == 2  # the earlier version is untouched
    assert deps.state.latest_version("machines") is not None
    assert deps.state.latest_version("machines").version == grown.version  # type: ignore[union-attr]


async def test_replace_makes_the_batch_the_whole_version(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    await ingest_batch(batch(write(uploads / "first.csv")), deps)
    await ingest_batch(batch(write(uploads / "next.csv", "machine,temperature,failed\nm3,20,0\n")), deps)

    _, replaced = created(published)
    assert replaced.row_count == 1


async def test_append_to_a_dataset_without_versions_starts_it(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    await ingest_batch(batch(write(uploads / "b.csv"), mode="append"), deps)
    [version] = created(published)
    assert version.row_count == 2


async def test_a_batch_that_breaks_the_schema_is_rejected_with_every_problem_and_quarantined(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    text = "machine,temperature,failed\nm9,abc,0\nm1,20,1\n,500,0\n"
    event = batch(write(uploads / "bad.csv", text))

    await ingest_batch(event, deps)
    await ingest_batch(event, deps)  # redelivered: rejected once

    rejection = rejected(published)
    assert [(p.column, p.code) for p in rejection.problems] == [
        ("machine", "null_not_allowed"),
        ("machine", "unknown_category"),
        ("temperature", "bad_type"),
        ("temperature", "out_of_range"),
    ]
    assert rejection.rows_rejected == 2
    assert rejection.causation_id == event.event_id
    assert Path(rejection.quarantine_uri).read_text() == text
    assert deps.state.latest_version("machines") is None


async def test_an_unreadable_batch_is_rejected_and_quarantined(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    bad = uploads / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")

    await ingest_batch(batch(bad), deps)

    rejection = rejected(published)
    assert [p.code for p in rejection.problems] == ["unreadable"]
    assert rejection.rows_rejected is None
    assert Path(rejection.quarantine_uri).read_bytes() == b"definitely not parquet"


async def test_a_missing_batch_is_rejected_with_a_note(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    await ingest_batch(batch(uploads / "gone.csv"), deps)

    rejection = rejected(published)
    assert "gone.csv does not exist" in rejection.problems[0].message
    assert "gone.csv does not exist" in Path(rejection.quarantine_uri).read_text()


async def test_a_batch_before_its_spec_waits_then_is_rejected_as_undeclared(
    deps: IngestDeps, published: list[Event], uploads: Path
) -> None:
    await ingest_batch(batch(write(uploads / "b.csv")), deps)

    rejection = rejected(published)
    [problem] = rejection.problems
    assert problem.code == "undeclared_dataset"
    assert problem.message == (
        "dataset 'machines' has no declared schema: ingest waited 0.05s for its Dataset spec; apply it "
        "(`modelfleet apply <file>`), then resubmit the batch"
    )
    assert rejection.rows_rejected == 2
    assert Path(rejection.quarantine_uri).read_text() == CSV


async def test_a_batch_whose_spec_arrives_while_it_waits_is_accepted(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    deps.spec_wait = SpecWait(total_seconds=30, first_interval_seconds=0.01)

    async def declare_soon() -> None:
        await asyncio.sleep(0.02)
        await declare()

    await asyncio.gather(ingest_batch(batch(write(uploads / "b.csv")), deps), declare_soon())

    assert len(created(published)) == 1


async def test_a_batch_is_checked_against_the_latest_spec(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    narrower = DatasetSchema(
        columns=[
            ColumnSpec(name="machine", type="string", categories=["m1"]),
            ColumnSpec(name="x", type="int"),
        ]
    )
    await declare(narrower, revision="r2")

    await ingest_batch(batch(write(uploads / "b.csv")), deps)

    assert {p.code for p in rejected(published).problems} == {
        "missing_column",
        "unexpected_column",
        "unknown_category",
    }


async def test_an_append_onto_a_version_that_no_longer_fits_the_spec_is_rejected(
    deps: IngestDeps, declare: Declare, published: list[Event], uploads: Path
) -> None:
    await declare()
    await ingest_batch(batch(write(uploads / "first.csv")), deps)
    with_region = DatasetSchema(
        columns=[ColumnSpec(name="machine", type="string"), ColumnSpec(name="region", type="string")]
    )
    await declare(with_region, revision="r2")
    published.clear()

    await ingest_batch(batch(write(uploads / "more.csv", "machine,region\nm1,eu\n"), mode="append"), deps)

    problems = rejected(published).problems
    assert [(p.column, p.code) for p in problems] == [
        ("region", "append_base_incompatible"),
        ("temperature", "append_base_incompatible"),
        ("failed", "append_base_incompatible"),
    ]
    assert problems[0].message.startswith("cannot append to version ")
    assert "Resubmit every row with mode `replace`" in problems[0].message


async def test_a_dataset_name_that_is_not_a_valid_name_is_rejected_at_once(
    deps: IngestDeps, published: list[Event], uploads: Path
) -> None:
    deps.spec_wait = SpecWait(total_seconds=60)  # no wait happens: such a dataset can never be declared

    await ingest_batch(batch(write(uploads / "b.csv"), dataset="../../etc"), deps)

    rejection = rejected(published)
    assert [p.code for p in rejection.problems] == ["invalid_dataset_name"]
    assert (uploads.parent / "quarantine" / "_.._etc").is_dir()


async def test_a_spec_event_whose_name_disagrees_with_its_document_is_a_permanent_error(
    deps: IngestDeps,
) -> None:
    document = DatasetSpec(
        metadata=DatasetMetadata(name="other"), spec=DatasetSchema(columns=[ColumnSpec(name="x", type="int")])
    )
    event = DatasetSpecSubmitted(producer="test", dataset="machines", revision="r1", spec=document)
    with pytest.raises(PermanentError, match=r"`dataset` must equal `spec\.metadata\.name`"):
        await record_dataset_spec(event, deps)
    assert deps.state.spec("machines") is None
