"""The dataset store on any fsspec filesystem: immutable, content-addressed Parquet versions, their
reference profiles, and a quarantine for the raw bytes of rejected batches.

    <root>/datasets/<name>/<version>.parquet        the version (written once, never modified)
    <root>/datasets/<name>/<version>.profile.json   its reference profile
    <root>/quarantine/<name>/<sha256>-<file name>   a rejected batch's bytes, as received
    <root>/feedback/<name>/<sha256>.parquet         live feedback rows a version appended
    <root>/uploads/<name>/<sha256>-<file name>      batches `modelfleet ingest` uploaded

Batches are read only under the allowed roots, and only regular files up to the size limit
(`access`): a refused batch is never opened, so nothing of it can reach a message or the quarantine.

**Replicas share one store.** A version written by one replica is read by another (the next
`append` or feedback flush of its dataset may land anywhere, and so may a batch `modelfleet ingest`
uploaded), and the trainer and monitor read versions and profiles by URI. So with more than one
replica `FLEET_DATA_DIR` must be the same place for all of them: a ReadWriteMany volume mounted at
the same path (NFS, CephFS, EFS, ...) or an object store (`s3://`, `gs://`, ...); a pod's own disk
or `memory://` holds one replica's data only. Nothing in the store assumes one process:

- every file name is derived from content (a version is the hash of its rows, a quarantined batch
  the hash of its bytes, a profile its version's), never from a counter one process keeps, so two
  replicas writing the same thing write the same file and two writing different things (other
  datasets, other versions) never share a name. Which version is a dataset's latest is state
  (`state.py`), changed under the dataset's lock across replicas, not a file;
- a file is written whole or not at all, and never changed once there: on a local or mounted
  disk into a temp file unique to the writer (`<name>.<uuid>.partial`), synced, then renamed over
  the final name (atomic on POSIX filesystems and NFS; a concurrent writer of the same name
  renames identical content), then the directory is synced, so a crash never leaves a truncated
  version behind a name the state already points at; object stores publish an object whole when
  its upload completes. A writer killed mid-write leaves only its `.partial` file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .access import (
    OUTSIDE_ALLOWED_ROOTS,
    Place,
    Refusal,
    UnknownScheme,
    not_a_file,
    outside_roots,
    place_of,
    pseudo_file,
    too_large,
    unreadable_kind,
)
from .domain import content_version

#: Default most bytes of one batch ingest reads (`FLEET_INGEST_MAX_BYTES`).
DEFAULT_MAX_BATCH_BYTES = 512 * 1024 * 1024
#: Where `modelfleet ingest` uploads batches, below the store's root.
UPLOADS = "uploads"


class BatchMissing(Exception):
    """The batch's URI points at nothing."""


class BatchInaccessible(Exception):
    """The batch exists (or may) but the filesystem does not let ingest read it."""


class BatchRefused(Exception):
    """Ingest may not read the batch (outside the allowed roots, not a regular file, too large);
    it was not opened."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class StoredVersion:
    """Where a dataset version is, and its content hash."""

    version: str
    uri: str


class DatasetStore:
    """Keeps versions under a root that may be a local path or any fsspec URI (`memory://`,
    `file://`, `s3://`, ...), and reads batches from below its allowed roots.

    A version is written once and never modified, so it stays readable forever and a model can be
    retrained on exactly the data it saw. On a local disk the write is atomic and durable (synced
    temp file + rename); object stores publish an object whole when its upload completes. Several
    processes may share a root (see the module's docstring).
    """

    def __init__(
        self,
        root: str,
        allowed_roots: Sequence[str] = (),
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        """A store under `root` that reads batches below `allowed_roots` (default: `root` itself,
        which holds the upload area), each of at most `max_batch_bytes`."""
        self.fs, path = fsspec.core.url_to_fs(root)
        self.root = path.rstrip("/") or "/"
        self._local = isinstance(self.fs, LocalFileSystem)
        self.allowed_roots = tuple(allowed_roots) or (root,)
        self.max_batch_bytes = max_batch_bytes
        self._roots = tuple(_resolved(place_of(allowed)) for allowed in self.allowed_roots)

    def fetch_batch(self, uri: str) -> bytes:
        """The raw bytes of a batch, read only if it lies under an allowed root and is a regular
        file within the size limit. Raises `BatchRefused` (nothing was opened), `BatchMissing` or
        `BatchInaccessible` for problems of the batch, and lets transient I/O errors through."""
        try:
            place = _resolved(place_of(uri))
        except UnknownScheme:
            raise BatchRefused(outside_roots(uri, self.allowed_roots)) from None
        except ValueError as error:
            raise BatchRefused(Refusal(OUTSIDE_ALLOWED_ROOTS, f"{uri}: {error}")) from None
        if place.local and (refusal := pseudo_file(uri, place.path)):
            raise BatchRefused(refusal)
        if not any(place.within(root) for root in self._roots):
            raise BatchRefused(outside_roots(uri, self.allowed_roots))
        try:
            return self._read_local(uri, place) if place.local else self._read_remote(uri, place)
        except FileNotFoundError as error:
            raise BatchMissing(f"{uri} does not exist") from error
        except PermissionError as error:
            raise BatchInaccessible(f"cannot read {uri}: permission denied") from error

    def _read_local(self, uri: str, place: Place) -> bytes:
        # `place.path` has no symlink left; stat it before opening, so that a FIFO (which would
        # block), a device or an oversized file is refused without being opened at all.
        before = os.stat(place.path)
        if refusal := unreadable_kind(uri, before.st_mode, before.st_size, self.max_batch_bytes):
            raise BatchRefused(refusal)
        # Between stat and open the path may be swapped: never follow a symlink or block, and
        # check what was actually opened before reading it.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            descriptor = os.open(place.path, flags)
        except OSError as error:
            if error.errno == errno.ELOOP:  # the file became a symlink since it was resolved
                raise BatchRefused(outside_roots(uri, self.allowed_roots)) from None
            raise
        with os.fdopen(descriptor, "rb") as batch:
            opened = os.fstat(batch.fileno())
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not self._allowed(
                _opened_path(descriptor) or place.path
            ):
                raise BatchRefused(outside_roots(uri, self.allowed_roots))
            if refusal := unreadable_kind(uri, opened.st_mode, opened.st_size, self.max_batch_bytes):
                raise BatchRefused(refusal)
            return self._capped(uri, batch.read(self.max_batch_bytes + 1))

    def _allowed(self, local_path: str) -> bool:
        return any(Place(LocalFileSystem, local_path).within(root) for root in self._roots)

    def _read_remote(self, uri: str, place: Place) -> bytes:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
        if info.get("type") != "file":
            raise BatchRefused(not_a_file(uri, str(info.get("type") or "non-file object")))
        if refusal := too_large(uri, int(info.get("size") or 0), self.max_batch_bytes):
            raise BatchRefused(refusal)
        with fs.open(path, "rb") as batch:
            return self._capped(uri, batch.read(self.max_batch_bytes + 1))

    def _capped(self, uri: str, data: bytes) -> bytes:
        # The file grew after it was checked: what was read is dropped, never kept.
        if refusal := too_large(uri, len(data), self.max_batch_bytes):
            raise BatchRefused(refusal)
        return data

    def put_version(self, dataset: str, table: pa.Table) -> StoredVersion:
        """Store a table as a version of `dataset`, once; returns its content hash and URI."""
        version = content_version(table)
        path = self._version_path(dataset, version)
        if not self.fs.exists(path):
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            self._write_once(path, sink.getvalue().to_pybytes())
        return StoredVersion(version=version, uri=self._uri(path))

    def read_version(self, dataset: str, version: str) -> pa.Table:
        """A stored version, as written."""
        raw: bytes = self.fs.cat_file(self._version_path(dataset, version))
        return pq.read_table(pa.BufferReader(raw))

    def put_profile(self, dataset: str, version: str, profile: dict[str, Any]) -> str:
        """Store a version's reference profile next to it, once; returns its URI."""
        path = f"{self.root}/datasets/{dataset}/{version}.profile.json"
        if not self.fs.exists(path):
            text = json.dumps(profile, indent=2, allow_nan=False) + "\n"
            self._write_once(path, text.encode())
        return self._uri(path)

    def put_feedback(self, dataset: str, table: pa.Table) -> str:
        """Store the live feedback rows a version appended (cast, as appended), once; returns the
        URI, which the version's `source_uri` names."""
        path = f"{self.root}/feedback/{_safe_segment(dataset)}/{content_version(table)}.parquet"
        if not self.fs.exists(path):
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            self._write_once(path, sink.getvalue().to_pybytes())
        return self._uri(path)

    def quarantine(self, dataset: str, uri: str, raw: bytes | None, reason: str = "") -> str:
        """Keep the raw bytes of a rejected batch, or a note saying why there were none to keep
        (`reason`); returns its URI."""
        folder = f"{self.root}/quarantine/{_safe_segment(dataset)}"
        if raw is None:
            path = f"{folder}/missing-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.txt"
            if not self.fs.exists(path):
                self._write_once(path, f"ingest kept no bytes of batch {uri}: {reason}\n".encode())
            return self._uri(path)
        name = _safe_segment(uri.rstrip("/").rsplit("/", 1)[-1])
        path = f"{folder}/{hashlib.sha256(raw).hexdigest()}-{name}"
        if not self.fs.exists(path):
            self._write_once(path, raw)
        return self._uri(path)

    def _version_path(self, dataset: str, version: str) -> str:
        return f"{self.root}/datasets/{dataset}/{version}.parquet"

    def _write_once(self, path: str, data: bytes) -> None:
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        # A name of this writer's own (another replica may be writing the same file right now).
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            with open(partial, "xb") as sink:
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())  # the bytes are on disk before the name points at them
            os.replace(partial, path)  # a rename: readers see the whole file or none
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        _sync_directory(folder)

    def _uri(self, path: str) -> str:
        # Local paths stay plain paths (what pyarrow, pandas and MLflow take everywhere).
        return path if self._local else str(self.fs.unstrip_protocol(path))


def _sync_directory(folder: str) -> None:
    """Make a rename in `folder` durable (where the filesystem lets a directory be synced)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _resolved(place: Place) -> Place:
    """A local place with `..` and every symlink resolved (what the kernel would open)."""
    return Place(place.filesystem, os.path.realpath(place.path)) if place.local else place


def _opened_path(descriptor: int) -> str | None:
    """The path the kernel opened for `descriptor` (Linux), whatever directory was swapped for a
    symlink on the way; None where the system does not say."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return None


def _safe_segment(name: str) -> str:
    """A name usable as one path segment (no separators, no `..`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned[:120] or "_"
