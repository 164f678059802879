"""Durable state of ingest, in its schema of the state engine (PostgreSQL shared by its replicas,
or SQLite in the state dir).

The consumer group does not re-read the compacted `dataset-specs` topic after a restart, so the
declared spec of every dataset is kept here; so are the latest version of every dataset (what
`append` builds on) and the version each batch event produced (so a redelivered `append` does not
append twice). Reading a dataset's latest version and recording the next one is done under the
dataset's lock across replicas (`StateEngine.locks.hold(dataset)`, taken by the handlers), so two
batches of one dataset always build one on the other.

Applied spec events and batch outcomes guard against redeliveries, which are minutes old at most:
they are pruned after the idempotency TTL (`prune`), except the outcome of a feedback claim that
is still being replayed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from modelfleet_common.state import StateEngine
from modelfleet_contracts import DatasetSpec

from .tables import (
    APPLIED_SPEC_EVENTS,
    BATCH_OUTCOMES,
    DATASET_SPECS,
    DATASET_VERSIONS,
    FEEDBACK_ROWS,
    LATEST_VERSIONS,
    METADATA,
    insert,
    write,
)


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


@dataclass(frozen=True)
class Pruned:
    """Guards against redeliveries dropped because they outlived the TTL."""

    spec_events: int
    batch_outcomes: int


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

    def prune(self, before: float) -> Pruned:
        """Forget applied spec events and batch outcomes recorded before `before` (epoch seconds)."""


_VERSION_COLUMNS = (
    DATASET_VERSIONS.c.dataset,
    DATASET_VERSIONS.c.version,
    DATASET_VERSIONS.c.uri,
    DATASET_VERSIONS.c.profile_uri,
    DATASET_VERSIONS.c.row_count,
    DATASET_VERSIONS.c.columns_json,
    DATASET_VERSIONS.c.spec_revision,
)


class SqlIngestState:
    """`IngestState` in the service's state engine; every change is one transaction."""

    def __init__(self, engine: StateEngine) -> None:
        engine.create_tables(METADATA)
        self._engine = engine.engine

    def put_spec(
        self, dataset: str, revision: str, spec: DatasetSpec, event_id: str, occurred_at: str
    ) -> bool:
        now = time.time()
        with write(self._engine) as connection:
            applied = connection.execute(
                insert(connection, APPLIED_SPEC_EVENTS)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(APPLIED_SPEC_EVENTS.c.event_id),
                {"event_id": event_id, "dataset": dataset, "revision": revision, "applied_at": now},
            ).first()
            if applied is None:
                return False  # a redelivery: replaying it could undo a newer spec applied since
            row = {
                "dataset": dataset,
                "revision": revision,
                "spec_json": spec.model_dump_json(by_alias=True),
                "event_id": event_id,
                "occurred_at": occurred_at,
                "applied_at": now,
            }
            statement = insert(connection, DATASET_SPECS)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["dataset"],
                    set_={name: statement.excluded[name] for name in row if name != "dataset"},
                ),
                row,
            )
        return True

    def spec(self, dataset: str) -> DeclaredSpec | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(DATASET_SPECS.c.revision, DATASET_SPECS.c.spec_json).where(
                    DATASET_SPECS.c.dataset == dataset
                )
            ).one_or_none()
        if row is None:
            return None
        return DeclaredSpec(revision=row.revision, spec=DatasetSpec.model_validate_json(row.spec_json))

    def latest_version(self, dataset: str) -> VersionRecord | None:
        return self._version(
            sa.select(*_VERSION_COLUMNS)
            .join(
                LATEST_VERSIONS,
                sa.and_(
                    LATEST_VERSIONS.c.dataset == DATASET_VERSIONS.c.dataset,
                    LATEST_VERSIONS.c.version == DATASET_VERSIONS.c.version,
                ),
            )
            .where(LATEST_VERSIONS.c.dataset == dataset)
        )

    def batch_outcome(self, event_id: str) -> VersionRecord | None:
        return self._version(
            sa.select(*_VERSION_COLUMNS)
            .join(
                BATCH_OUTCOMES,
                sa.and_(
                    BATCH_OUTCOMES.c.dataset == DATASET_VERSIONS.c.dataset,
                    BATCH_OUTCOMES.c.version == DATASET_VERSIONS.c.version,
                ),
            )
            .where(BATCH_OUTCOMES.c.event_id == event_id)
        )

    def record_version(self, record: VersionRecord, *, event_id: str, mode: str) -> None:
        now = time.time()
        with write(self._engine) as connection:
            connection.execute(
                insert(connection, DATASET_VERSIONS).on_conflict_do_nothing(
                    index_elements=["dataset", "version"]
                ),
                {
                    "dataset": record.dataset,
                    "version": record.version,
                    "uri": record.uri,
                    "profile_uri": record.profile_uri,
                    "row_count": record.row_count,
                    "columns_json": json.dumps(record.columns),
                    "spec_revision": record.spec_revision,
                    "created_at": now,
                },
            )
            latest = insert(connection, LATEST_VERSIONS)
            connection.execute(
                latest.on_conflict_do_update(
                    index_elements=["dataset"],
                    set_={name: latest.excluded[name] for name in ("version", "event_id", "updated_at")},
                ),
                {
                    "dataset": record.dataset,
                    "version": record.version,
                    "event_id": event_id,
                    "updated_at": now,
                },
            )
            connection.execute(
                insert(connection, BATCH_OUTCOMES).on_conflict_do_nothing(index_elements=["event_id"]),
                {
                    "event_id": event_id,
                    "dataset": record.dataset,
                    "version": record.version,
                    "mode": mode,
                    "recorded_at": now,
                },
            )

    def prune(self, before: float) -> Pruned:
        replayed = sa.select(FEEDBACK_ROWS.c.flush).where(FEEDBACK_ROWS.c.flush.is_not(None))
        with write(self._engine) as connection:
            spec_events = connection.execute(
                sa.delete(APPLIED_SPEC_EVENTS).where(APPLIED_SPEC_EVENTS.c.applied_at < before)
            ).rowcount
            outcomes = connection.execute(
                sa.delete(BATCH_OUTCOMES).where(
                    BATCH_OUTCOMES.c.recorded_at < before, BATCH_OUTCOMES.c.event_id.not_in(replayed)
                )
            ).rowcount
        return Pruned(spec_events=int(spec_events or 0), batch_outcomes=int(outcomes or 0))

    def _version(self, query: sa.Select[tuple[object, ...]]) -> VersionRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(query).one_or_none()
        if row is None:
            return None
        return VersionRecord(
            dataset=row.dataset,
            version=row.version,
            uri=row.uri,
            profile_uri=row.profile_uri,
            row_count=int(row.row_count),
            columns=[(name, dtype) for name, dtype in json.loads(row.columns_json)],
            spec_revision=row.spec_revision,
        )
