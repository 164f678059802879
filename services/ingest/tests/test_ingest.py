"""ingest turns a batch into one immutable dataset version, or rejects and quarantines it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import DataBatchSubmitted, DatasetVersionCreated, DatasetVersionRejected
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.domain import content_version, infer_format
from modelfleet_ingest.handlers import IngestDeps, ingest_batch
from modelfleet_ingest.store import LocalDatasetStore

CSV = "machine,temperature,failed\nm1,71.5,0\nm2,99.1,1\n"


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


@pytest.fixture
def deps(tmp_path: Path) -> IngestDeps:
    return IngestDeps(
        store=LocalDatasetStore(tmp_path / "store"), handled=InMemoryIdempotencyStore(), publish=Published()
    )


def batch(path: Path, dataset: str = "machines") -> DataBatchSubmitted:
    return DataBatchSubmitted(producer="test", dataset=dataset, uri=str(path))


def test_the_same_rows_have_the_same_version_whatever_the_file_format(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    store = LocalDatasetStore(tmp_path)
    from_csv = store.read_batch(str(tmp_path / "a.csv"), "csv")
    pq.write_table(from_csv, tmp_path / "a.parquet")
    from_parquet = store.read_batch(str(tmp_path / "a.parquet"), "parquet")
    assert content_version(from_csv) == content_version(from_parquet)
    assert content_version(from_csv) != content_version(from_csv.slice(0, 1))


def test_the_format_comes_from_the_declaration_or_the_suffix() -> None:
    assert infer_format("s3://bucket/x.PARQUET", None) == "parquet"
    assert infer_format("/data/x.txt", "csv") == "csv"
    with pytest.raises(ValueError, match=r"cannot tell the format of '/data/x\.txt'"):
        infer_format("/data/x.txt", None)


async def test_a_batch_becomes_one_stored_version_announced_once(deps: IngestDeps, tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(CSV)
    event = batch(tmp_path / "b.csv")

    await ingest_batch(event, deps)
    await ingest_batch(event, deps)  # redelivered

    [created] = deps.publish  # type: ignore[misc]
    assert isinstance(created, DatasetVersionCreated)
    assert created.row_count == 2
    assert [c.name for c in created.columns] == ["machine", "temperature", "failed"]
    assert created.causation_id == event.event_id
    assert pq.read_table(created.uri).num_rows == 2


async def test_an_unreadable_batch_is_rejected_and_quarantined(deps: IngestDeps, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")

    await ingest_batch(batch(bad), deps)

    [rejected] = deps.publish  # type: ignore[misc]
    assert isinstance(rejected, DatasetVersionRejected)
    assert rejected.problems[0].code == "unreadable"
    assert Path(rejected.quarantine_uri).read_bytes() == b"definitely not parquet"


async def test_a_missing_batch_is_rejected_with_a_note(deps: IngestDeps, tmp_path: Path) -> None:
    await ingest_batch(batch(tmp_path / "gone.csv"), deps)

    [rejected] = deps.publish  # type: ignore[misc]
    assert isinstance(rejected, DatasetVersionRejected)
    assert "did not exist" in Path(rejected.quarantine_uri).read_text()


def test_a_stored_version_is_never_rewritten(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    table = pa.table({"x": [1, 2]})
    first = store.put_version("d", table)
    mtime = Path(first.uri).stat().st_mtime_ns
    again = store.put_version("d", table)
    assert again == first
    assert Path(first.uri).stat().st_mtime_ns == mtime
