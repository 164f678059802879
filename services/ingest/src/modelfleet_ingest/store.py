"""The dataset store on any fsspec filesystem: immutable, content-addressed Parquet versions, their
reference profiles, and a quarantine for the raw bytes of rejected batches.

    <root>/datasets/<name>/<version>.parquet        the version (written once, never modified)
    <root>/datasets/<name>/<version>.profile.json   its reference profile
    <root>/quarantine/<name>/<sha256>-<file name>   a rejected batch's bytes, as received
    <root>/feedback/<name>/<sha256>.parquet         live feedback rows a version appended
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from modelfleet_common.consumer import PermanentError

from .domain import content_version


class BatchMissing(Exception):
    """The batch's URI points at nothing."""


class BatchInaccessible(Exception):
    """The batch exists (or may) but ingest is not allowed to read it, or it is not a file."""


@dataclass(frozen=True)
class StoredVersion:
    """Where a dataset version is, and its content hash."""

    version: str
    uri: str


class DatasetStore:
    """Reads batches from any fsspec URI and keeps versions under a root that may be a local path
    or any fsspec URI (`memory://`, `file://`, `s3://`, ...).

    A version is written once and never modified, so it stays readable forever and a model can be
    retrained on exactly the data it saw. On a local disk the write is atomic (temp file + rename);
    object stores publish an object whole when its upload completes.
    """

    def __init__(self, root: str) -> None:
        self.fs, path = fsspec.core.url_to_fs(root)
        self.root = path.rstrip("/") or "/"
        self._local = isinstance(self.fs, LocalFileSystem)

    def fetch_batch(self, uri: str) -> bytes:
        """The raw bytes of a batch. Raises `BatchMissing`/`BatchInaccessible` for problems of the
        batch, `PermanentError` when ingest cannot read that kind of URI at all (a deployment
        problem: the event is dead-lettered for replay), and lets transient I/O errors through."""
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as error:
            raise PermanentError(
                f"ingest cannot read {uri!r}: {error}; install the fsspec implementation of that "
                "protocol (e.g. s3fs, gcsfs) in the ingest image"
            ) from error
        try:
            data: bytes = fs.cat_file(path)
        except FileNotFoundError as error:
            raise BatchMissing(f"{uri} does not exist") from error
        except (PermissionError, IsADirectoryError) as error:
            raise BatchInaccessible(f"cannot read {uri}: {error}") from error
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

    def version_uri(self, dataset: str, version: str) -> str:
        """Where a version is (whether or not it is stored)."""
        return self._uri(self._version_path(dataset, version))

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
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, path)  # a rename: readers see the whole file or none

    def _uri(self, path: str) -> str:
        # Local paths stay plain paths (what pyarrow, pandas and MLflow take everywhere).
        return path if self._local else str(self.fs.unstrip_protocol(path))


def _safe_segment(name: str) -> str:
    """A name usable as one path segment (no separators, no `..`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned[:120] or "_"
