"""Hand a batch to the fleet: copy its bytes into the dataset store's upload area, so that ingest
(which reads only under its allowed roots) can read it wherever it runs.

    <FLEET_DATA_DIR>/uploads/<dataset>/<sha256>-<file name>

The name is the content's sha256, so the same bytes are stored once; the copy is capped at
`FLEET_INGEST_MAX_BYTES`, the most ingest reads. The store is any fsspec URI (`s3://bucket/fleet`
for a fleet in a cluster); a local store gets the file whole or not at all (temp file + rename).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfleet_contracts import DataBatchSubmitted
from modelfleet_contracts.envelope import Event

from .local_home import default_home

UPLOADS = "uploads"
CHUNK = 1024 * 1024


def _local_store() -> str:
    return str(default_home() / "data")


class UploadSettings(BaseSettings):
    """Where the CLI uploads batches: the same `FLEET_DATA_DIR` and size limit as ingest's."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    data_dir: str = Field(
        default_factory=_local_store,
        description=(
            "The fleet's dataset store (`FLEET_DATA_DIR`): a path or any fsspec URI; default: the "
            "local fleet's (`$FLEET_LOCAL_HOME/data`, else `.local/data`)."
        ),
    )
    ingest_max_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Largest batch ingest reads (`FLEET_INGEST_MAX_BYTES`)."
    )


class UploadFailed(Exception):
    """The batch cannot be uploaded (missing, not a file, too large, store unreachable)."""


@dataclass(frozen=True)
class Uploader:
    """Copies batches into `<data_dir>/uploads/` and says where they are."""

    data_dir: str
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: UploadSettings | None = None) -> Uploader:
        settings = settings or UploadSettings()
        return cls(settings.data_dir, settings.ingest_max_bytes)

    def __call__(self, dataset: str, source: str) -> str:
        """Upload `source` (a local path or any fsspec URI) as a batch of `dataset`; returns the
        URI to publish. Raises `UploadFailed` with what to do."""
        try:
            with fsspec.open(source, "rb") as batch, tempfile.TemporaryFile() as spool:
                digest = self._spool(source, batch, spool)
                return self._store(dataset, _file_name(source), digest, spool)
        except UploadFailed:
            raise
        except FileNotFoundError as error:
            raise UploadFailed(f"{source} does not exist") from error
        except IsADirectoryError as error:
            raise UploadFailed(f"{source} is a directory: name one .csv or .parquet file") from error
        except (OSError, ValueError, ImportError) as error:
            raise UploadFailed(
                f"cannot upload {source} to the dataset store {self.data_dir}: {error}"
            ) from error

    def _spool(self, source: str, batch: IO[bytes], spool: IO[bytes]) -> str:
        """Copy `batch` into `spool`, hashing it and stopping past the size limit."""
        digest = hashlib.sha256()
        size = 0
        while chunk := batch.read(CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise UploadFailed(
                    f"{source} is larger than {self.max_bytes} bytes, the most ingest reads in one batch "
                    "(FLEET_INGEST_MAX_BYTES): split it and submit the parts with --mode append"
                )
            digest.update(chunk)
            spool.write(chunk)
        spool.seek(0)
        return digest.hexdigest()

    def _store(self, dataset: str, name: str, digest: str, spool: IO[bytes]) -> str:
        fs, root = fsspec.core.url_to_fs(self.data_dir)
        local = isinstance(fs, LocalFileSystem)
        if local:
            root = os.path.abspath(root)  # ingest may run elsewhere: publish an absolute path
        folder = f"{root.rstrip('/')}/{UPLOADS}/{_segment(dataset)}"
        path = f"{folder}/{digest}-{name}"
        if not fs.exists(path):
            fs.makedirs(folder, exist_ok=True)
            partial = f"{path}.{uuid.uuid4().hex}.partial" if local else path
            with fs.open(partial, "wb") as target:
                shutil.copyfileobj(spool, target, CHUNK)
            if local:
                fs.mv(partial, path)  # a rename: ingest sees the whole file or none
        return path if local else str(fs.unstrip_protocol(path))


def upload_batches(events: Iterable[Event], upload: Callable[[str, str], str]) -> list[Event]:
    """`events` with every `DataBatchSubmitted` pointing at its uploaded copy (same event id)."""
    return [
        event.model_copy(update={"uri": upload(event.dataset, event.uri)})
        if isinstance(event, DataBatchSubmitted)
        else event
        for event in events
    ]


def _file_name(source: str) -> str:
    """The source's file name as one safe path segment (its suffix tells ingest the format)."""
    return _segment(Path(source.rstrip("/").rsplit("/", 1)[-1]).name)


def _segment(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned[:120] or "_"
