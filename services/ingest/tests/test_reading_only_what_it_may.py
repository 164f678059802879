"""Ingest reads a batch only under its allowed roots, and only a regular file within the size
limit. Anything else (`/proc`, a device, a FIFO, a directory, a path or symlink leading outside,
another filesystem, an oversized file) is rejected without being opened, with a reason that quotes
none of its bytes; nothing of it reaches the quarantine, and the next good batch is still ingested."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest

from modelfleet_contracts import DataBatchSubmitted, DatasetVersionCreated, DatasetVersionRejected
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.handlers import IngestDeps, ingest_batch
from modelfleet_ingest.store import DatasetStore

from .conftest import Opened

Declare = Callable[..., Awaitable[None]]
SECRET = "s3cr3t-do-not-leak"
CREDENTIALS = f"FLEET_KAFKA_SASL_PASSWORD={SECRET}\n"
GOOD = "machine,temperature,failed\nm1,71.5,0\nm2,99.1,1\n"


@dataclass(frozen=True)
class Forbidden:
    """A batch ingest must refuse: the URI the event names, the file it leads to, and the code."""

    uri: str
    target: str
    code: str


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the store holding a credential, as a pod's environment or a laptop's would."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    secret = folder / "credentials.csv"
    secret.write_text(CREDENTIALS)
    return secret


@contextlib.contextmanager
def released(fifo: Path) -> Iterator[None]:
    """If a broken ingest opened `fifo` for reading and blocked, give it an end of file on the way out."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def refuse(
    forbidden: Forbidden, deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> DatasetVersionRejected:
    """Submit the forbidden batch, then a good one; the first is rejected unread, the second ingested."""
    good = store / "uploads" / "good.csv"
    good.write_text(GOOD)

    with opened.during():
        await asyncio.wait_for(ingest_batch(batch(forbidden.uri), deps), timeout=20)
    await ingest_batch(batch(str(good)), deps)

    rejection, version = published
    assert isinstance(rejection, DatasetVersionRejected), rejection
    assert isinstance(version, DatasetVersionCreated), version
    assert version.row_count == 2
    [problem] = rejection.problems
    assert problem.code == forbidden.code
    assert forbidden.uri in problem.message
    assert os.path.realpath(forbidden.target) not in opened.paths
    assert SECRET not in rejection.model_dump_json()
    kept = [path for path in (store / "quarantine").rglob("*") if path.is_file()]
    assert [path.name.startswith("missing-") for path in kept] == [True]  # a note, no bytes
    written = [path for path in store.rglob("*") if path.is_file() and "uploads" not in path.parts]
    assert not [path for path in written if SECRET.encode() in path.read_bytes()]
    return rejection


def batch(uri: str) -> DataBatchSubmitted:
    return DataBatchSubmitted(producer="test", dataset="machines", uri=uri)


@pytest.fixture
def store(uploads: Path) -> Path:
    return uploads.parent


@pytest.fixture(autouse=True)
async def declared(declare: Declare) -> None:
    await declare()


async def test_the_process_environment_in_proc_is_refused_unread(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    forbidden = Forbidden("/proc/self/environ", "/proc/self/environ", "not_a_regular_file")
    rejection = await refuse(forbidden, deps, published, opened, store)
    assert "(process, kernel or device state)" in rejection.problems[0].message
    assert "PATH=" not in rejection.model_dump_json()


async def test_a_device_is_refused_unread(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    await refuse(Forbidden("/dev/zero", "/dev/zero", "not_a_regular_file"), deps, published, opened, store)


async def test_a_fifo_inside_the_store_is_refused_without_opening_it(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    fifo = store / "uploads" / "pipe.csv"
    os.mkfifo(fifo)
    with released(fifo):
        rejection = await refuse(
            Forbidden(str(fifo), str(fifo), "not_a_regular_file"), deps, published, opened, store
        )
    assert rejection.problems[0].message == (
        f"{fifo} is a named pipe (FIFO), not a regular file: submit a .csv or .parquet file"
    )


async def test_a_directory_is_refused(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    folder = store / "uploads" / "folder.csv"
    folder.mkdir()
    await refuse(Forbidden(str(folder), str(folder), "not_a_regular_file"), deps, published, opened, store)


async def test_a_file_outside_the_roots_is_refused_and_its_secret_goes_nowhere(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path, outside: Path
) -> None:
    rejection = await refuse(
        Forbidden(str(outside), str(outside), "outside_allowed_roots"), deps, published, opened, store
    )
    message = rejection.problems[0].message
    assert f"FLEET_INGEST_ALLOWED_ROOTS: {store}" in message
    assert "`modelfleet ingest DATASET FILE`" in message


async def test_a_file_uri_outside_the_roots_is_refused(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path, outside: Path
) -> None:
    forbidden = Forbidden(outside.as_uri(), str(outside), "outside_allowed_roots")
    await refuse(forbidden, deps, published, opened, store)


async def test_dot_dot_out_of_the_store_is_refused(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path, outside: Path
) -> None:
    sneaky = f"{store}/uploads/../../elsewhere/{outside.name}"
    await refuse(Forbidden(sneaky, str(outside), "outside_allowed_roots"), deps, published, opened, store)


async def test_a_symlink_inside_the_store_pointing_outside_is_refused(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path, outside: Path
) -> None:
    link = store / "uploads" / "innocent.csv"
    link.symlink_to(outside)
    await refuse(Forbidden(str(link), str(outside), "outside_allowed_roots"), deps, published, opened, store)


async def test_a_symlink_to_a_device_is_refused(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    link = store / "uploads" / "zeros.csv"
    link.symlink_to("/dev/zero")
    await refuse(Forbidden(str(link), "/dev/zero", "not_a_regular_file"), deps, published, opened, store)


async def test_a_file_above_the_size_limit_is_refused_from_its_size_alone(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    deps.store = DatasetStore(str(store), max_batch_bytes=1024)
    big = store / "uploads" / "big.csv"
    big.write_text(GOOD + CREDENTIALS * 40)
    rejection = await refuse(Forbidden(str(big), str(big), "too_large"), deps, published, opened, store)
    assert rejection.problems[0].message == (
        f"{big} holds {big.stat().st_size} bytes, more than the 1024 bytes ingest reads in one batch "
        "(FLEET_INGEST_MAX_BYTES): split it into several `append` batches"
    )


async def test_another_filesystem_is_refused_unless_it_is_an_allowed_root(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe_file("/elsewhere/credentials.csv", CREDENTIALS.encode())
    uri = "memory:///elsewhere/credentials.csv"
    await refuse(Forbidden(uri, uri, "outside_allowed_roots"), deps, published, opened, store)


async def test_a_protocol_without_a_filesystem_is_refused_as_outside_the_roots(
    deps: IngestDeps, published: list[Event], opened: Opened, store: Path
) -> None:
    uri = "nosuchprotocol://bucket/b.csv"
    await refuse(Forbidden(uri, uri, "outside_allowed_roots"), deps, published, opened, store)


async def test_a_batch_under_an_extra_allowed_root_is_read(
    deps: IngestDeps, published: list[Event], store: Path, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "b.csv").write_text(GOOD)
    deps.store = DatasetStore(str(store), allowed_roots=[str(store), str(incoming)])

    await ingest_batch(batch(str(incoming / "b.csv")), deps)

    [version] = published
    assert isinstance(version, DatasetVersionCreated)


async def test_a_malformed_file_inside_the_store_is_rejected_without_quoting_its_secret(
    deps: IngestDeps, published: list[Event], store: Path
) -> None:
    env_file = store / "uploads" / "oops.csv"
    env_file.write_text(f"{CREDENTIALS}A=1\nB=2\n")

    await ingest_batch(batch(str(env_file)), deps)

    [rejection] = published
    assert isinstance(rejection, DatasetVersionRejected)
    assert {problem.code for problem in rejection.problems} == {"missing_column", "unexpected_column"}
    assert SECRET not in rejection.model_dump_json()
    assert "<redacted: looks like a credential>" in rejection.model_dump_json()
