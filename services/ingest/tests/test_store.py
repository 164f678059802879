"""The dataset store works on any fsspec filesystem; a version is written once and never changed."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelfleet_ingest.store import BatchMissing, BatchRefused, DatasetStore


@pytest.fixture
def memory_root() -> str:
    return f"memory:///ingest-test-{uuid.uuid4().hex}"  # the canonical form of a memory:// path


def test_a_memory_store_round_trips_a_version_and_its_profile(memory_root: str) -> None:
    store = DatasetStore(memory_root)
    table = pa.table({"x": [1.5, 2.5], "s": ["a", None]})

    stored = store.put_version("d", table)
    profile_uri = store.put_profile("d", stored.version, {"profile_version": 1, "version": stored.version})

    assert stored.uri == f"{memory_root}/datasets/d/{stored.version}.parquet"
    assert store.read_version("d", stored.version).equals(table)
    with fsspec.open(stored.uri, "rb") as version_file:
        assert pq.read_table(version_file).equals(table)
    assert profile_uri == f"{memory_root}/datasets/d/{stored.version}.profile.json"
    with fsspec.open(profile_uri, "rt") as profile_file:
        assert json.load(profile_file) == {"profile_version": 1, "version": stored.version}


def test_a_batch_is_read_from_any_fsspec_uri_under_an_allowed_root(memory_root: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{memory_root}/in/b.csv", b"x\n1\n")
    (tmp_path / "b.csv").write_bytes(b"x\n2\n")
    store = DatasetStore(str(tmp_path / "store"), allowed_roots=[f"{memory_root}/in", str(tmp_path)])
    assert store.fetch_batch(f"{memory_root}/in/b.csv") == b"x\n1\n"
    assert store.fetch_batch((tmp_path / "b.csv").as_uri()) == b"x\n2\n"
    assert store.fetch_batch(str(tmp_path / "b.csv")) == b"x\n2\n"


def test_a_store_reads_batches_only_below_its_own_root_by_default(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path / "store"))
    (tmp_path / "store" / "uploads").mkdir(parents=True)
    (tmp_path / "store" / "uploads" / "b.csv").write_bytes(b"x\n1\n")
    (tmp_path / "store-sibling.csv").write_bytes(b"x\n2\n")
    assert store.fetch_batch(str(tmp_path / "store" / "uploads" / "b.csv")) == b"x\n1\n"
    with pytest.raises(BatchRefused) as refused:
        store.fetch_batch(str(tmp_path / "store-sibling.csv"))  # a prefix of the root's name is not below it
    assert refused.value.refusal.code == "outside_allowed_roots"


@pytest.mark.parametrize(
    ("suffix", "code"),
    [
        ("/in/b.csv", None),
        ("/inbox/b.csv", "outside_allowed_roots"),  # shares the root's prefix, not its folder
        ("/in/../secret.csv", "outside_allowed_roots"),
        ("/in", "not_a_regular_file"),  # the folder itself
        ("/in/big.csv", "too_large"),
    ],
)
def test_a_uri_on_another_filesystem_is_read_only_below_its_root_prefix(
    memory_root: str, suffix: str, code: str | None
) -> None:
    fs = fsspec.filesystem("memory")
    for name, data in {
        "in/b.csv": b"x\n1\n",
        "inbox/b.csv": b"x\n2\n",
        "secret.csv": b"s",
        "in/big.csv": b"9" * 11,
    }.items():
        fs.pipe_file(f"{memory_root}/{name}", data)
    store = DatasetStore(f"{memory_root}/store", allowed_roots=[f"{memory_root}/in"], max_batch_bytes=10)
    if code is None:
        assert store.fetch_batch(f"{memory_root}{suffix}") == b"x\n1\n"
        return
    with pytest.raises(BatchRefused) as refused:
        store.fetch_batch(f"{memory_root}{suffix}")
    assert refused.value.refusal.code == code


def test_a_batch_that_is_not_there_is_missing(memory_root: str) -> None:
    with pytest.raises(BatchMissing, match=r"memory://.*/nothing\.csv does not exist"):
        DatasetStore(memory_root).fetch_batch(f"{memory_root}/nothing.csv")


def test_a_uri_no_root_has_a_filesystem_for_is_refused(memory_root: str) -> None:
    with pytest.raises(BatchRefused, match="is outside the places ingest reads batches from"):
        DatasetStore(memory_root).fetch_batch("nosuchprotocol://bucket/b.csv")


def test_a_stored_version_is_never_rewritten(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path))
    table = pa.table({"x": [1, 2]})
    first = store.put_version("d", table)
    mtime = Path(first.uri).stat().st_mtime_ns
    again = store.put_version("d", table)
    assert again == first
    assert Path(first.uri).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in Path(first.uri).parent.iterdir()) == [f"{first.version}.parquet"]


def test_quarantined_bytes_are_kept_as_received_under_their_hash(memory_root: str) -> None:
    store = DatasetStore(memory_root)
    uri = store.quarantine("d", "s3://bucket/in/../b.csv", b"raw,bytes\n")
    assert uri.startswith(f"{memory_root}/quarantine/d/")
    assert uri.endswith("-b.csv")
    with fsspec.open(uri, "rb") as kept:
        assert kept.read() == b"raw,bytes\n"


def test_a_dataset_name_cannot_move_the_quarantine_out_of_its_folder(tmp_path: Path) -> None:
    uri = DatasetStore(str(tmp_path / "store")).quarantine("../../etc", "b.csv", b"x")
    assert Path(uri).parent == tmp_path / "store" / "quarantine" / "_.._etc"


def test_replicas_writing_one_store_at_once_leave_every_file_whole(tmp_path: Path) -> None:
    # Four replicas on one shared root: the same version of one dataset, and a dataset each.
    root = str(tmp_path / "shared")
    replicas = [DatasetStore(root) for _ in range(4)]
    same = pa.table({"x": list(range(5_000))})
    own = [pa.table({"x": [index] * 1_000}) for index in range(len(replicas))]

    def write(index: int) -> tuple[set[str], set[str]]:
        replica = replicas[index]
        same_uris = {replica.put_version("same", same).uri for _ in range(5)}
        own_uris = {replica.put_version(f"d{index}", own[index]).uri for _ in range(5)}
        return same_uris, own_uris

    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        written = list(pool.map(write, range(len(replicas))))

    [same_uri] = set().union(*(same_uris for same_uris, _ in written))
    assert pq.read_table(same_uri).equals(same)
    for index, (_, own_uris) in enumerate(written):
        [uri] = own_uris
        assert pq.read_table(uri).equals(own[index])
    assert not list((tmp_path / "shared").rglob("*.partial"))


def test_a_write_cut_short_leaves_nothing_under_the_version_s_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore(str(tmp_path / "store"))

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.put_version("d", pa.table({"x": [1, 2]}))

    assert list((tmp_path / "store").rglob("*.parquet*")) == []
