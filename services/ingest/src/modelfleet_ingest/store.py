"""The dataset store: immutable, content-addressed Parquet versions, and a quarantine."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq

from .domain import content_version


class UnreadableBatch(Exception):
    """The batch could not be read as the format it claims."""


@dataclass(frozen=True)
class StoredVersion:
    version: str
    uri: str


class LocalDatasetStore:
    """Datasets under `<root>/datasets/<name>/<sha256>.parquet`; rejected bytes under `<root>/quarantine`.

    A version file is written once (temp file + atomic rename) and never modified, so any
    version stays readable forever and a model can be retrained on exactly the data it saw.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def read_batch(self, uri: str, fmt: str) -> pa.Table:
        try:
            if fmt == "csv":
                return pyarrow.csv.read_csv(uri)
            return pq.read_table(uri)
        except (OSError, pa.ArrowException) as error:
            raise UnreadableBatch(f"cannot read {uri!r} as {fmt}: {error}") from error

    def put_version(self, dataset: str, table: pa.Table) -> StoredVersion:
        version = content_version(table)
        target = self.root / "datasets" / dataset / f"{version}.parquet"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.partial")
            pq.write_table(table, partial)
            partial.replace(target)
        return StoredVersion(version=version, uri=str(target.resolve()))

    def quarantine(self, dataset: str, uri: str) -> str:
        """Keep the raw bytes of a rejected batch (or note that there were none to keep)."""
        source = Path(uri)
        folder = self.root / "quarantine" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        if not source.is_file():
            missing = folder / f"missing-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.txt"
            missing.write_text(f"batch {uri} did not exist when ingest received it\n")
            return str(missing.resolve())
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        target = folder / f"{digest}-{source.name}"
        if not target.exists():
            shutil.copyfile(source, target)
        return str(target.resolve())
