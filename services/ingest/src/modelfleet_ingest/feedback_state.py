"""Durable state of live feedback (SQLite under `FLEET_STATE_DIR`).

Predictions wait here for their label and labels for their prediction (serving batches its logs,
so a label can come first), keyed by (model, request id) so redeliveries change nothing. When both
are there and the model's spec is known they become one joined row of the model's dataset, which
waits for the next flush. A flush first *claims* its rows under a deterministic id, so a crash
between storing the version and announcing it is recovered by replaying the same claim; settled
rows leave a tombstone (until the TTL) so a late redelivery cannot join them a second time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import JsonValue

from .feedback import FeedbackBinding, JoinedRow, PendingRow, join_row
from .sqlite import open_database, transaction

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_bindings (
    model      TEXT PRIMARY KEY,
    dataset    TEXT NOT NULL,
    target     TEXT NOT NULL,
    where_json TEXT NOT NULL,
    revision   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waiting_predictions (
    model         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    route_rank    INTEGER NOT NULL,
    version       TEXT NOT NULL,
    features_json TEXT NOT NULL,
    predicted_at  REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS waiting_predictions_by_age ON waiting_predictions (model, predicted_at);
CREATE INDEX IF NOT EXISTS waiting_predictions_expiry ON waiting_predictions (predicted_at);
CREATE TABLE IF NOT EXISTS waiting_labels (
    model       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    label_json  TEXT NOT NULL,
    observed_at REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS waiting_labels_by_age ON waiting_labels (model, observed_at);
CREATE INDEX IF NOT EXISTS waiting_labels_expiry ON waiting_labels (observed_at);
CREATE TABLE IF NOT EXISTS feedback_rows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    row_json   TEXT NOT NULL,
    added_json TEXT NOT NULL,
    flush      TEXT,
    joined_at  REAL NOT NULL,
    UNIQUE (model, request_id)
);
CREATE INDEX IF NOT EXISTS feedback_rows_by_dataset ON feedback_rows (dataset, flush);
CREATE TABLE IF NOT EXISTS settled_requests (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    settled_at REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS settled_requests_expiry ON settled_requests (settled_at);
"""

#: A (model, request id) that already joined, or was settled, takes no new prediction or label.
_NOT_JOINED = (
    "NOT EXISTS (SELECT 1 FROM feedback_rows r WHERE r.model = :model AND r.request_id = :request_id) "
    "AND NOT EXISTS (SELECT 1 FROM settled_requests s WHERE s.model = :model AND s.request_id = :request_id)"
)


@dataclass(frozen=True)
class WaitingPrediction:
    """A successful prediction waiting for its label."""

    request_id: str
    route_rank: int
    version: str
    features: dict[str, JsonValue]
    predicted_at: float  # epoch seconds


@dataclass(frozen=True)
class Arrival:
    """What recording predictions or a label did: rows joined, and waiting rows evicted to stay
    within the per-model bound."""

    joined: int = 0
    evicted: int = 0


@dataclass(frozen=True)
class Expired:
    """Waiting predictions and labels dropped because they outlived the TTL."""

    predictions: int
    labels: int


@dataclass(frozen=True)
class Claim:
    """The rows of one flush of a dataset, under an id that names exactly these rows."""

    flush: str
    dataset: str
    rows: list[PendingRow]

    @property
    def range(self) -> str:
        """`<first>-<last>` row id of the claim."""
        return f"{self.rows[0].id}-{self.rows[-1].id}"


class FeedbackState(Protocol):
    """What ingest remembers of live feedback between events and across restarts."""

    def put_binding(self, model: str, binding: FeedbackBinding, revision: str, *, now: float) -> Arrival:
        """Remember what the model's feedback rows are made of, and join what was waiting for it."""

    def forget_model(self, model: str) -> int:
        """Forget a retired model and drop its waiting predictions and labels; returns how many
        were dropped (rows it already joined stay: they are labelled data of their dataset)."""

    def add_predictions(
        self, model: str, predictions: Sequence[WaitingPrediction], *, now: float, max_waiting: int
    ) -> Arrival:
        """Keep the predictions (one per request, the best route) and join those already labelled."""

    def add_label(
        self,
        model: str,
        request_id: str,
        label: JsonValue,
        *,
        observed_at: float,
        now: float,
        max_waiting: int,
    ) -> Arrival:
        """Keep the label and join it when its prediction is there."""

    def expire(self, before: float) -> Expired:
        """Drop waiting predictions and labels (and tombstones) older than `before` (epoch seconds)."""

    def pending(self) -> dict[str, int]:
        """Joined rows not yet settled, per dataset."""

    def claim(self, dataset: str) -> Claim | None:
        """The dataset's unfinished claim if there is one (it is replayed as it was), else a new
        claim of every pending row of the dataset; None when nothing is pending."""

    def settle(self, flush: str, *, now: float) -> None:
        """The claim's rows became a version or were quarantined: remove them, remember their keys."""


class SqliteFeedbackState:
    """`FeedbackState` in one SQLite file; every change is one transaction."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, SCHEMA_VERSION)

    def put_binding(self, model: str, binding: FeedbackBinding, revision: str, *, now: float) -> Arrival:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO feedback_bindings (model, dataset, target, where_json, revision) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET dataset = excluded.dataset, "
                "target = excluded.target, where_json = excluded.where_json, revision = excluded.revision",
                (model, binding.dataset, binding.target, json.dumps(dict(binding.where)), revision),
            )
            return Arrival(joined=self._join(model, None, now))

    def binding(self, model: str) -> FeedbackBinding | None:
        """The model's binding, if its spec is known."""
        row = self._db.execute(
            "SELECT dataset, target, where_json FROM feedback_bindings WHERE model = ?", (model,)
        ).fetchone()
        if row is None:
            return None
        return FeedbackBinding(dataset=row[0], target=row[1], where=json.loads(row[2]))

    def forget_model(self, model: str) -> int:
        with transaction(self._db):
            self._db.execute("DELETE FROM feedback_bindings WHERE model = ?", (model,))
            dropped = self._db.execute("DELETE FROM waiting_predictions WHERE model = ?", (model,)).rowcount
            dropped += self._db.execute("DELETE FROM waiting_labels WHERE model = ?", (model,)).rowcount
        return int(dropped)

    def add_predictions(
        self, model: str, predictions: Sequence[WaitingPrediction], *, now: float, max_waiting: int
    ) -> Arrival:
        rows = [
            {
                "model": model,
                "request_id": prediction.request_id,
                "rank": prediction.route_rank,
                "version": prediction.version,
                "features": json.dumps(prediction.features),
                "predicted_at": prediction.predicted_at,
            }
            for prediction in predictions
        ]
        with transaction(self._db):
            # Upsert: a champion/challenger record replaces a shadow's record of the same request.
            self._db.executemany(
                "INSERT INTO waiting_predictions (model, request_id, route_rank, version, features_json, "
                "predicted_at) SELECT :model, :request_id, :rank, :version, :features, :predicted_at "
                f"WHERE {_NOT_JOINED} "
                "ON CONFLICT (model, request_id) DO UPDATE SET route_rank = excluded.route_rank, "
                "version = excluded.version, features_json = excluded.features_json, "
                "predicted_at = excluded.predicted_at "
                "WHERE excluded.route_rank < waiting_predictions.route_rank",
                rows,
            )
            joined = self._join(model, [prediction.request_id for prediction in predictions], now)
            evicted = self._evict("waiting_predictions", "predicted_at", model, max_waiting)
        return Arrival(joined=joined, evicted=evicted)

    def add_label(
        self,
        model: str,
        request_id: str,
        label: JsonValue,
        *,
        observed_at: float,
        now: float,
        max_waiting: int,
    ) -> Arrival:
        with transaction(self._db):
            # The first label of a request holds; a redelivery (or a second opinion) changes nothing.
            self._db.execute(
                "INSERT INTO waiting_labels (model, request_id, label_json, observed_at) "
                f"SELECT :model, :request_id, :label, :observed_at WHERE {_NOT_JOINED} "
                "ON CONFLICT (model, request_id) DO NOTHING",
                {
                    "model": model,
                    "request_id": request_id,
                    "label": json.dumps(label),
                    "observed_at": observed_at,
                },
            )
            joined = self._join(model, [request_id], now)
            evicted = self._evict("waiting_labels", "observed_at", model, max_waiting)
        return Arrival(joined=joined, evicted=evicted)

    def expire(self, before: float) -> Expired:
        with transaction(self._db):
            predictions = self._db.execute(
                "DELETE FROM waiting_predictions WHERE predicted_at < ?", (before,)
            )
            labels = self._db.execute("DELETE FROM waiting_labels WHERE observed_at < ?", (before,))
            self._db.execute("DELETE FROM settled_requests WHERE settled_at < ?", (before,))
        return Expired(predictions=predictions.rowcount, labels=labels.rowcount)

    def pending(self) -> dict[str, int]:
        rows = self._db.execute("SELECT dataset, COUNT(*) FROM feedback_rows GROUP BY dataset").fetchall()
        return {dataset: count for dataset, count in rows}

    def waiting(self, model: str) -> tuple[int, int]:
        """Predictions and labels of the model still waiting for their other half."""
        predictions = self._db.execute("SELECT COUNT(*) FROM waiting_predictions WHERE model = ?", (model,))
        labels = self._db.execute("SELECT COUNT(*) FROM waiting_labels WHERE model = ?", (model,))
        return int(predictions.fetchone()[0]), int(labels.fetchone()[0])

    def claim(self, dataset: str) -> Claim | None:
        with transaction(self._db):
            unfinished = self._db.execute(
                "SELECT flush FROM feedback_rows WHERE dataset = ? AND flush IS NOT NULL ORDER BY id LIMIT 1",
                (dataset,),
            ).fetchone()
            if unfinished is not None:
                flush = str(unfinished[0])
            else:
                first, last = self._db.execute(
                    "SELECT MIN(id), MAX(id) FROM feedback_rows WHERE dataset = ? AND flush IS NULL",
                    (dataset,),
                ).fetchone()
                if first is None:
                    return None
                flush = f"feedback:{dataset}:{first}-{last}"
                self._db.execute(
                    "UPDATE feedback_rows SET flush = ? WHERE dataset = ? AND flush IS NULL AND id <= ?",
                    (flush, dataset, last),
                )
            rows = self._db.execute(
                "SELECT id, model, request_id, row_json, added_json FROM feedback_rows "
                "WHERE flush = ? ORDER BY id",
                (flush,),
            ).fetchall()
        pending = [
            PendingRow(
                id=row_id,
                model=model,
                request_id=request_id,
                row=JoinedRow(values=json.loads(values), added=tuple(json.loads(added))),
            )
            for row_id, model, request_id, values, added in rows
        ]
        return Claim(flush=flush, dataset=dataset, rows=pending)

    def settle(self, flush: str, *, now: float) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO settled_requests (model, request_id, settled_at) "
                "SELECT model, request_id, ? FROM feedback_rows WHERE flush = ?",
                (now, flush),
            )
            self._db.execute("DELETE FROM feedback_rows WHERE flush = ?", (flush,))

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _join(self, model: str, request_ids: Sequence[str] | None, now: float) -> int:
        """Turn the model's labelled predictions (of these requests, or all) into joined rows."""
        binding = self.binding(model)
        if binding is None:
            return 0  # the spec says which dataset and target: until it is known, both halves wait
        query = (
            "SELECT l.request_id, p.features_json, l.label_json FROM waiting_labels l "
            "JOIN waiting_predictions p ON p.model = l.model AND p.request_id = l.request_id "
            "WHERE l.model = ?"
        )
        if request_ids is None:
            pairs = self._db.execute(query, (model,)).fetchall()
        else:
            pairs = [
                pair
                for request_id in dict.fromkeys(request_ids)
                for pair in self._db.execute(f"{query} AND l.request_id = ?", (model, request_id)).fetchall()
            ]
        for request_id, features, label in pairs:
            row = join_row(json.loads(features), json.loads(label), binding)
            self._db.execute(
                "INSERT OR IGNORE INTO feedback_rows "
                "(model, request_id, dataset, row_json, added_json, joined_at) VALUES (?, ?, ?, ?, ?, ?)",
                (model, request_id, binding.dataset, json.dumps(row.values), json.dumps(row.added), now),
            )
        keys = [(model, request_id) for request_id, _, _ in pairs]
        self._db.executemany("DELETE FROM waiting_predictions WHERE model = ? AND request_id = ?", keys)
        self._db.executemany("DELETE FROM waiting_labels WHERE model = ? AND request_id = ?", keys)
        return len(pairs)

    def _evict(self, table: str, age_column: str, model: str, max_waiting: int) -> int:
        """Drop the model's oldest waiting rows beyond `max_waiting`."""
        (count,) = self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE model = ?", (model,)).fetchone()
        excess = int(count) - max_waiting
        if excess <= 0:
            return 0
        self._db.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE model = ? "
            f"ORDER BY {age_column}, rowid LIMIT ?)",
            (model, excess),
        )
        return excess
