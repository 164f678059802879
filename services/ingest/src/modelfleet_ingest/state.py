"""Durable local state of ingest (SQLite under `FLEET_STATE_DIR`).

The consumer group does not re-read the compacted `dataset-specs` topic after a restart, so the
declared spec of every dataset is kept here; so are the latest version of every dataset (what
`append` builds on) and the version each batch event produced (so a redelivered `append` does not
append twice).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelfleet_contracts import DatasetSpec

from .sqlite import open_database, transaction

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_specs (
    dataset     TEXT PRIMARY KEY,
    revision    TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    applied_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_spec_events (
    event_id   TEXT PRIMARY KEY,
    dataset    TEXT NOT NULL,
    revision   TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset       TEXT NOT NULL,
    version       TEXT NOT NULL,
    uri           TEXT NOT NULL,
    profile_uri   TEXT NOT NULL,
    row_count     INTEGER NOT NULL,
    columns_json  TEXT NOT NULL,
    spec_revision TEXT NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS latest_versions (
    dataset    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_outcomes (
    event_id    TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    version     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class DeclaredSpec:
    """The spec a dataset's batches are validated against."""

    revision: str
    spec: DatasetSpec


@dataclass(frozen=True)
class VersionRecord:
    """A stored version as ingest announced it."""

    dataset: str
    version: str
    uri: str
    profile_uri: str
    row_count: int
    columns: list[tuple[str, str]]  # (name, Arrow type)
    spec_revision: str


class IngestState(Protocol):
    """What ingest remembers between events and across restarts."""

    def put_spec(
        self, dataset: str, revision: str, spec: DatasetSpec, event_id: str, occurred_at: str
    ) -> bool:
        """Make this the dataset's spec unless this event was already applied; returns whether it was."""

    def spec(self, dataset: str) -> DeclaredSpec | None:
        """The dataset's latest declared spec, if any."""

    def latest_version(self, dataset: str) -> VersionRecord | None:
        """The dataset's latest version, if any."""

    def batch_outcome(self, event_id: str) -> VersionRecord | None:
        """The version a batch event already produced, if it did."""

    def record_version(self, record: VersionRecord, *, event_id: str, mode: str) -> None:
        """Remember a version, make it the dataset's latest and the outcome of the batch event."""


class SqliteIngestState:
    """`IngestState` in one SQLite file; every change is one transaction."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, SCHEMA_VERSION)

    def put_spec(
        self, dataset: str, revision: str, spec: DatasetSpec, event_id: str, occurred_at: str
    ) -> bool:
        now = time.time()
        with transaction(self._db):
            applied = self._db.execute(
                "INSERT OR IGNORE INTO applied_spec_events (event_id, dataset, revision, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (event_id, dataset, revision, now),
            )
            if applied.rowcount == 0:
                return False  # a redelivery: replaying it could undo a newer spec applied since
            self._db.execute(
                "INSERT INTO dataset_specs (dataset, revision, spec_json, event_id, occurred_at, applied_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset) DO UPDATE SET revision = excluded.revision, "
                "spec_json = excluded.spec_json, event_id = excluded.event_id, "
                "occurred_at = excluded.occurred_at, applied_at = excluded.applied_at",
                (dataset, revision, spec.model_dump_json(by_alias=True), event_id, occurred_at, now),
            )
        return True

    def spec(self, dataset: str) -> DeclaredSpec | None:
        row = self._db.execute(
            "SELECT revision, spec_json FROM dataset_specs WHERE dataset = ?", (dataset,)
        ).fetchone()
        if row is None:
            return None
        return DeclaredSpec(revision=row[0], spec=DatasetSpec.model_validate_json(row[1]))

    def latest_version(self, dataset: str) -> VersionRecord | None:
        return self._version(
            "SELECT v.* FROM latest_versions l JOIN dataset_versions v "
            "ON v.dataset = l.dataset AND v.version = l.version WHERE l.dataset = ?",
            dataset,
        )

    def batch_outcome(self, event_id: str) -> VersionRecord | None:
        return self._version(
            "SELECT v.* FROM batch_outcomes b JOIN dataset_versions v "
            "ON v.dataset = b.dataset AND v.version = b.version WHERE b.event_id = ?",
            event_id,
        )

    def record_version(self, record: VersionRecord, *, event_id: str, mode: str) -> None:
        now = time.time()
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO dataset_versions (dataset, version, uri, profile_uri, row_count, "
                "columns_json, spec_revision, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.dataset,
                    record.version,
                    record.uri,
                    record.profile_uri,
                    record.row_count,
                    json.dumps(record.columns),
                    record.spec_revision,
                    now,
                ),
            )
            self._db.execute(
                "INSERT INTO latest_versions (dataset, version, event_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (dataset) DO UPDATE SET version = excluded.version, "
                "event_id = excluded.event_id, updated_at = excluded.updated_at",
                (record.dataset, record.version, event_id, now),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO batch_outcomes (event_id, dataset, version, mode, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_id, record.dataset, record.version, mode, now),
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _version(self, query: str, key: str) -> VersionRecord | None:
        cursor = self._db.execute(query, (key,))
        row = cursor.fetchone()
        if row is None:
            return None
        values = dict(zip([column[0] for column in cursor.description], row, strict=True))
        return VersionRecord(
            dataset=values["dataset"],
            version=values["version"],
            uri=values["uri"],
            profile_uri=values["profile_uri"],
            row_count=values["row_count"],
            columns=[(name, dtype) for name, dtype in json.loads(values["columns_json"])],
            spec_revision=values["spec_revision"],
        )
