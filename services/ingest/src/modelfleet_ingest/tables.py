"""ingest's own tables in its schema of the state engine (SQLAlchemy Core: PostgreSQL or SQLite).

Created by `StateEngine.create_tables(METADATA)` next to the common `kv` and `handled` tables.
Times are epoch seconds. Write transactions go through `write`, which makes the read-decide-write
of one change atomic on both engines: `BEGIN IMMEDIATE` on SQLite (one writer at a time), and on
PostgreSQL a transaction-scoped advisory lock per key (a model, a dataset) when the change must
see every earlier change of that key (READ COMMITTED alone would let two replicas each miss the
other's uncommitted half of a join).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

METADATA = sa.MetaData()

#: Row ids of feedback rows: never reused (SQLite AUTOINCREMENT, a PostgreSQL sequence), because a
#: claim's id names its first and last row and must never name another set of rows later.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

DATASET_SPECS = sa.Table(
    "ingest_dataset_specs",
    METADATA,
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("revision", sa.Text, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

APPLIED_SPEC_EVENTS = sa.Table(
    "ingest_applied_spec_events",
    METADATA,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("revision", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False, index=True),
)

DATASET_VERSIONS = sa.Table(
    "ingest_dataset_versions",
    METADATA,
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("profile_uri", sa.Text, nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("columns_json", sa.Text, nullable=False),
    sa.Column("spec_revision", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

LATEST_VERSIONS = sa.Table(
    "ingest_latest_versions",
    METADATA,
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

BATCH_OUTCOMES = sa.Table(
    "ingest_batch_outcomes",
    METADATA,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False, index=True),
)

FEEDBACK_BINDINGS = sa.Table(
    "ingest_feedback_bindings",
    METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("where_json", sa.Text, nullable=False),
    sa.Column("revision", sa.Text, nullable=False),
)

WAITING_PREDICTIONS = sa.Table(
    "ingest_waiting_predictions",
    METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("route_rank", sa.Integer, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("features_json", sa.Text, nullable=False),
    sa.Column("predicted_at", sa.Float, nullable=False, index=True),
    sa.Index("ingest_waiting_predictions_by_age", "model", "predicted_at"),
)

WAITING_LABELS = sa.Table(
    "ingest_waiting_labels",
    METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("label_json", sa.Text, nullable=False),
    sa.Column("observed_at", sa.Float, nullable=False, index=True),
    sa.Index("ingest_waiting_labels_by_age", "model", "observed_at"),
)

FEEDBACK_ROWS = sa.Table(
    "ingest_feedback_rows",
    METADATA,
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("added_json", sa.Text, nullable=False),
    sa.Column("joined_at", sa.Float, nullable=False),
    # The claim: `flush` names exactly its rows (kept while it is replayed), `claimed_by` the
    # flusher holding it and `claimed_until` when that hold lapses (a killed flusher's claim is
    # then taken over by the next flusher, under the same `flush`).
    sa.Column("flush", sa.Text, nullable=True),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.UniqueConstraint("model", "request_id", name="ingest_feedback_rows_request"),
    sa.Index("ingest_feedback_rows_by_dataset", "dataset", "flush"),
    sa.Index("ingest_feedback_rows_by_flush", "flush"),
    sqlite_autoincrement=True,
)

#: Every successful answer of a waiting request, one per version (the champion's or challenger's and
#: the shadows'): what the monitor scores against the label once the request is joined.
WAITING_ANSWERS = sa.Table(
    "ingest_waiting_answers",
    METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("prediction_json", sa.Text, nullable=False),
    sa.Column("predicted_at", sa.Float, nullable=False, index=True),
)

#: Joins waiting to be published as `PredictionsLabeled` (an outbox): written in the transaction
#: that joins, deleted only after the event was published, so a crash in between republishes the
#: same event (same `event_id`).
LABELED_OUTBOX = sa.Table(
    "ingest_labeled_outbox",
    METADATA,
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False, index=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("labeled_json", sa.Text, nullable=False),
    sa.Column("joined_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

SETTLED_REQUESTS = sa.Table(
    "ingest_settled_requests",
    METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("settled_at", sa.Float, nullable=False, index=True),
)


def insert(connection: Connection, table: sa.Table) -> Any:
    """An INSERT of `table` in the connection's dialect (for its ON CONFLICT clauses)."""
    if connection.dialect.name == "postgresql":
        return pg_dialect.insert(table)
    return sqlite_dialect.insert(table)


@contextmanager
def write(engine: Engine, *, scope: str = "", lock: str | None = None) -> Iterator[Connection]:
    """One write transaction, committed when the block returns and rolled back when it raises.

    SQLite: `BEGIN IMMEDIATE` takes the database's write lock before the first read, so every
    read of the block sees the last committed state and nobody writes until it commits. PostgreSQL:
    with `lock`, a transaction-scoped advisory lock on it (of this `scope`) is taken first, so the
    transactions of one key run one after the other; without, READ COMMITTED and row locks.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif lock is not None:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id(scope, lock))))
        yield connection


def lock_id(scope: str, key: str) -> int:
    """A signed 64-bit advisory lock id of `key` within `scope`."""
    digest = hashlib.blake2b(f"{scope}\0ingest\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """`values` in lists of at most `size` (bound parameters per statement stay few)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
