"""Durable state of live feedback, in ingest's schema of the state engine, shared by its replicas.

Predictions wait here for their label and labels for their prediction (serving batches its logs,
so a label can come first), keyed by (model, request id) so redeliveries change nothing. The two
halves arrive on different topics, consumed by different groups, so usually at different
replicas: each write of a model's halves runs under that model's transaction lock (`tables.write`),
so whichever half commits second sees the first and joins it. When both are there and the model's
spec is known they become one joined row of the model's dataset, which waits for the next flush.

Every replica flushes periodically. A flush first *claims* a dataset's rows in one atomic update
(`... SET flush = … WHERE flush IS NULL`), so two flushers never claim the same row; the claim is
named by its first and last row id, which makes it replayable: a flush that fails keeps its rows
claimed and the next flush replays the same claim (a crash between storing the version and
announcing it stores nothing twice). A claim is held by one flusher for `claim_seconds`; the same
flusher renews it when it replays, and once it lapses (its replica was killed mid-flush) the next
flusher takes it over, under the same name. Settled rows leave a tombstone (until the TTL) so a
late redelivery cannot join them a second time.

The join is the fleet's only one: the transaction that joins a request also writes, for every
version that answered or mirrored it (`ingest_waiting_answers`), its prediction and the label to an
outbox (`ingest_labeled_outbox`), under an event id derived from the model and the joined answers.
Ingest publishes each outbox row as a `PredictionsLabeled` and only then deletes it (publish, then
mark): a crash in between publishes the same event again, which the monitor recognises by its id.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import JsonValue
from sqlalchemy.engine import Connection

from modelfleet_common.state import StateEngine

from .feedback import FeedbackBinding, JoinedRow, PendingRow, join_row
from .tables import (
    FEEDBACK_BINDINGS,
    FEEDBACK_ROWS,
    LABELED_OUTBOX,
    METADATA,
    SETTLED_REQUESTS,
    WAITING_ANSWERS,
    WAITING_LABELS,
    WAITING_PREDICTIONS,
    chunks,
    insert,
    write,
)

#: How long a flusher holds its claim before another may take it over (`FLEET_INGEST_FEEDBACK_CLAIM_SECONDS`).
DEFAULT_CLAIM_SECONDS = 300.0

#: Most joined answers in one `PredictionsLabeled` (keeps a message far below the producer's limit).
LABELED_PER_EVENT = 200

#: Namespace of the event ids of `PredictionsLabeled`: uuid5 of the model and the joined answers.
LABELED_NAMESPACE = uuid.UUID("6f1d3f7e-2a4b-5c1e-9d3a-7b0e4c2f1a58")


@dataclass(frozen=True)
class WaitingPrediction:
    """A successful prediction waiting for its label."""

    request_id: str
    route_rank: int
    version: str
    features: dict[str, JsonValue]
    predicted_at: float  # epoch seconds
    #: The route that answered (or mirrored) and what it predicted: what the monitor scores.
    route: str = "champion"
    prediction: JsonValue = None


@dataclass(frozen=True)
class LabeledOutbox:
    """A join waiting to be published: its answers with their label, under a fixed event id."""

    id: int
    model: str
    event_id: uuid.UUID
    labeled: list[dict[str, JsonValue]]
    joined_at: float  # epoch seconds


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

    def claim(self, dataset: str, *, now: float) -> Claim | None:
        """The dataset's unfinished claim if this flusher holds it or its hold lapsed (replayed as
        it was, held again), else a new claim of every unclaimed row of the dataset; None when
        nothing is pending or another flusher holds the dataset's claim."""

    def settle(self, flush: str, *, now: float) -> None:
        """The claim's rows became a version or were quarantined: remove them, remember their keys."""

    def unpublished(self, model: str | None = None, *, limit: int = 100) -> list[LabeledOutbox]:
        """Joins not yet published as `PredictionsLabeled` (of one model, or all), oldest first."""

    def mark_published(self, outbox_id: int) -> None:
        """The join's event was published: forget it (a second replica's mark is a no-op)."""


def flusher_id() -> str:
    """Who holds a claim: this pod (host name) and process, unique per start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SqlFeedbackState:
    """`FeedbackState` in the service's state engine; every change is one transaction.

    `owner` names this flusher in its claims (one per process); `claim_seconds` is how long a claim
    stays this flusher's before another may take it over.
    """

    def __init__(
        self, engine: StateEngine, *, owner: str | None = None, claim_seconds: float = DEFAULT_CLAIM_SECONDS
    ) -> None:
        engine.create_tables(METADATA)
        self._engine = engine.engine
        translate = self._engine.get_execution_options().get("schema_translate_map") or {}
        self._scope = str(translate.get(None) or "")
        self.owner = owner or flusher_id()
        self.claim_seconds = claim_seconds

    def put_binding(self, model: str, binding: FeedbackBinding, revision: str, *, now: float) -> Arrival:
        with self._write(model) as connection:
            row = {
                "model": model,
                "dataset": binding.dataset,
                "target": binding.target,
                "where_json": json.dumps(dict(binding.where)),
                "revision": revision,
            }
            statement = insert(connection, FEEDBACK_BINDINGS)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["model"],
                    set_={name: statement.excluded[name] for name in row if name != "model"},
                ),
                row,
            )
            return Arrival(joined=self._join(connection, model, None, now))

    def binding(self, model: str) -> FeedbackBinding | None:
        """The model's binding, if its spec is known."""
        with self._engine.connect() as connection:
            return _binding(connection, model)

    def forget_model(self, model: str) -> int:
        with self._write(model) as connection:
            connection.execute(sa.delete(FEEDBACK_BINDINGS).where(FEEDBACK_BINDINGS.c.model == model))
            dropped = 0
            for table in (WAITING_PREDICTIONS, WAITING_LABELS):
                dropped += connection.execute(sa.delete(table).where(table.c.model == model)).rowcount or 0
            connection.execute(sa.delete(WAITING_ANSWERS).where(WAITING_ANSWERS.c.model == model))
        return dropped

    def add_predictions(
        self, model: str, predictions: Sequence[WaitingPrediction], *, now: float, max_waiting: int
    ) -> Arrival:
        # One per request: the best route (a champion's or challenger's answer over a shadow's),
        # the first of equals, as the stored row keeps it against later ones.
        best: dict[str, WaitingPrediction] = {}
        for prediction in predictions:
            kept = best.get(prediction.request_id)
            if kept is None or prediction.route_rank < kept.route_rank:
                best[prediction.request_id] = prediction
        with self._write(model) as connection:
            taken = _joined_or_settled(connection, model, list(best))
            rows = [
                {
                    "model": model,
                    "request_id": prediction.request_id,
                    "route_rank": prediction.route_rank,
                    "version": prediction.version,
                    "features_json": json.dumps(prediction.features),
                    "predicted_at": prediction.predicted_at,
                }
                for prediction in best.values()
                if prediction.request_id not in taken
            ]
            if rows:
                # A champion/challenger record replaces a shadow's record of the same request.
                statement = insert(connection, WAITING_PREDICTIONS)
                connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=["model", "request_id"],
                        set_={
                            name: statement.excluded[name]
                            for name in ("route_rank", "version", "features_json", "predicted_at")
                        },
                        where=statement.excluded.route_rank < WAITING_PREDICTIONS.c.route_rank,
                    ),
                    rows,
                )
                # Every version's answer (shadows too): the monitor scores each against the label.
                connection.execute(
                    insert(connection, WAITING_ANSWERS).on_conflict_do_nothing(
                        index_elements=["model", "request_id", "version"]
                    ),
                    [
                        {
                            "model": model,
                            "request_id": prediction.request_id,
                            "version": prediction.version,
                            "route": prediction.route,
                            "prediction_json": json.dumps(prediction.prediction),
                            "predicted_at": prediction.predicted_at,
                        }
                        for prediction in predictions
                        if prediction.request_id not in taken
                    ],
                )
            joined = self._join(connection, model, [str(row["request_id"]) for row in rows], now)
            evicted = _evict(
                connection, WAITING_PREDICTIONS, WAITING_PREDICTIONS.c.predicted_at, model, max_waiting
            )
            if evicted:
                _drop_orphan_answers(connection, model)
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
        with self._write(model) as connection:
            if _joined_or_settled(connection, model, [request_id]):
                return Arrival()
            # The first label of a request holds; a redelivery (or a second opinion) changes nothing.
            connection.execute(
                insert(connection, WAITING_LABELS).on_conflict_do_nothing(
                    index_elements=["model", "request_id"]
                ),
                {
                    "model": model,
                    "request_id": request_id,
                    "label_json": json.dumps(label),
                    "observed_at": observed_at,
                },
            )
            joined = self._join(connection, model, [request_id], now)
            evicted = _evict(connection, WAITING_LABELS, WAITING_LABELS.c.observed_at, model, max_waiting)
        return Arrival(joined=joined, evicted=evicted)

    def expire(self, before: float) -> Expired:
        with write(self._engine) as connection:
            predictions = connection.execute(
                sa.delete(WAITING_PREDICTIONS).where(WAITING_PREDICTIONS.c.predicted_at < before)
            ).rowcount
            labels = connection.execute(
                sa.delete(WAITING_LABELS).where(WAITING_LABELS.c.observed_at < before)
            ).rowcount
            connection.execute(sa.delete(SETTLED_REQUESTS).where(SETTLED_REQUESTS.c.settled_at < before))
            connection.execute(sa.delete(WAITING_ANSWERS).where(WAITING_ANSWERS.c.predicted_at < before))
        return Expired(predictions=int(predictions or 0), labels=int(labels or 0))

    def pending(self) -> dict[str, int]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(FEEDBACK_ROWS.c.dataset, sa.func.count()).group_by(FEEDBACK_ROWS.c.dataset)
            ).all()
        return {dataset: int(count) for dataset, count in rows}

    def waiting(self, model: str) -> tuple[int, int]:
        """Predictions and labels of the model still waiting for their other half."""
        with self._engine.connect() as connection:
            counts = [
                connection.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.model == model)
                ).scalar_one()
                for table in (WAITING_PREDICTIONS, WAITING_LABELS)
            ]
        return int(counts[0]), int(counts[1])

    def claim(self, dataset: str, *, now: float) -> Claim | None:
        rows = FEEDBACK_ROWS.c
        until = now + self.claim_seconds
        with write(self._engine) as connection:
            unfinished = connection.execute(
                sa.select(rows.flush, rows.claimed_by, rows.claimed_until)
                .where(rows.dataset == dataset, rows.flush.is_not(None))
                .order_by(rows.id)
                .limit(1)
            ).one_or_none()
            if unfinished is not None:
                held = unfinished.claimed_by != self.owner and (unfinished.claimed_until or 0.0) > now
                if held:
                    return None  # another flusher is at it
                # Hold it again, only as it was seen: if another flusher took it over meanwhile,
                # nothing matches and this one leaves it alone.
                taken = connection.execute(
                    sa.update(FEEDBACK_ROWS)
                    .where(
                        rows.flush == unfinished.flush,
                        _matches(rows.claimed_by, unfinished.claimed_by),
                        _matches(rows.claimed_until, unfinished.claimed_until),
                    )
                    .values(claimed_by=self.owner, claimed_until=until)
                ).rowcount
                if not taken:
                    return None
                flush = str(unfinished.flush)
            else:
                # Atomic: a row another flusher claimed first no longer matches `flush IS NULL`
                # (PostgreSQL re-checks it after waiting for that flusher's row locks).
                token = f"claiming:{uuid.uuid4().hex}"
                claimed = connection.execute(
                    sa.update(FEEDBACK_ROWS)
                    .where(rows.dataset == dataset, rows.flush.is_(None))
                    .values(flush=token, claimed_by=self.owner, claimed_until=until)
                ).rowcount
                if not claimed:
                    return None
                first, last = connection.execute(
                    sa.select(sa.func.min(rows.id), sa.func.max(rows.id)).where(rows.flush == token)
                ).one()
                # Row ids are never reused, so this name stays the name of exactly these rows.
                flush = f"feedback:{dataset}:{first}-{last}"
                connection.execute(sa.update(FEEDBACK_ROWS).where(rows.flush == token).values(flush=flush))
            claimed_rows = connection.execute(
                sa.select(rows.id, rows.model, rows.request_id, rows.row_json, rows.added_json)
                .where(rows.flush == flush)
                .order_by(rows.id)
            ).all()
        pending = [
            PendingRow(
                id=int(row.id),
                model=row.model,
                request_id=row.request_id,
                row=JoinedRow(values=json.loads(row.row_json), added=tuple(json.loads(row.added_json))),
            )
            for row in claimed_rows
        ]
        if not pending:
            return None
        return Claim(flush=flush, dataset=dataset, rows=pending)

    def settle(self, flush: str, *, now: float) -> None:
        with write(self._engine) as connection:
            tombstones = sa.select(
                FEEDBACK_ROWS.c.model, FEEDBACK_ROWS.c.request_id, sa.literal(now, sa.Float)
            ).where(FEEDBACK_ROWS.c.flush == flush)
            connection.execute(
                insert(connection, SETTLED_REQUESTS)
                .from_select(["model", "request_id", "settled_at"], tombstones)
                .on_conflict_do_nothing(index_elements=["model", "request_id"])
            )
            connection.execute(sa.delete(FEEDBACK_ROWS).where(FEEDBACK_ROWS.c.flush == flush))

    def unpublished(self, model: str | None = None, *, limit: int = 100) -> list[LabeledOutbox]:
        outbox = LABELED_OUTBOX.c
        query = sa.select(outbox.id, outbox.model, outbox.event_id, outbox.labeled_json, outbox.joined_at)
        if model is not None:
            query = query.where(outbox.model == model)
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(outbox.id).limit(limit)).all()
        return [
            LabeledOutbox(
                id=int(row.id),
                model=row.model,
                event_id=uuid.UUID(row.event_id),
                labeled=json.loads(row.labeled_json),
                joined_at=float(row.joined_at),
            )
            for row in rows
        ]

    def mark_published(self, outbox_id: int) -> None:
        with write(self._engine) as connection:
            connection.execute(sa.delete(LABELED_OUTBOX).where(LABELED_OUTBOX.c.id == outbox_id))

    def _write(self, model: str) -> AbstractContextManager[Connection]:
        """A write transaction that runs after every other one of this model's feedback."""
        return write(self._engine, scope=self._scope, lock=f"feedback:{model}")

    def _join(self, connection: Connection, model: str, request_ids: Sequence[str] | None, now: float) -> int:
        """Turn the model's labelled predictions (of these requests, or all) into joined rows."""
        binding = _binding(connection, model)
        if binding is None:
            return 0  # the spec says which dataset and target: until it is known, both halves wait
        labels, predictions = WAITING_LABELS, WAITING_PREDICTIONS
        query = (
            sa.select(
                labels.c.request_id, predictions.c.features_json, labels.c.label_json, labels.c.observed_at
            )
            .join(
                predictions,
                sa.and_(
                    predictions.c.model == labels.c.model, predictions.c.request_id == labels.c.request_id
                ),
            )
            .where(labels.c.model == model)
        )
        if request_ids is None:
            pairs = connection.execute(query.order_by(labels.c.observed_at, labels.c.request_id)).all()
        else:
            order = {request_id: index for index, request_id in enumerate(dict.fromkeys(request_ids))}
            found = [
                pair
                for part in chunks(list(order))
                for pair in connection.execute(query.where(labels.c.request_id.in_(part))).all()
            ]
            pairs = sorted(found, key=lambda pair: order[pair.request_id])
        if not pairs:
            return 0
        joined = []
        for pair in pairs:
            row = join_row(json.loads(pair.features_json), json.loads(pair.label_json), binding)
            joined.append(
                {
                    "model": model,
                    "request_id": pair.request_id,
                    "dataset": binding.dataset,
                    "row_json": json.dumps(row.values),
                    "added_json": json.dumps(row.added),
                    "joined_at": now,
                }
            )
        # One row per statement keeps row ids in join order on both engines.
        statement = insert(connection, FEEDBACK_ROWS).on_conflict_do_nothing(
            index_elements=["model", "request_id"]
        )
        for values in joined:
            connection.execute(statement, values)
        keys = [pair.request_id for pair in pairs]
        _stage_labeled(connection, model, pairs, now)
        for part in chunks(keys):
            for table in (WAITING_PREDICTIONS, WAITING_LABELS, WAITING_ANSWERS):
                connection.execute(
                    sa.delete(table).where(table.c.model == model, table.c.request_id.in_(part))
                )
        return len(pairs)


def _stage_labeled(connection: Connection, model: str, pairs: Sequence[Any], now: float) -> None:
    """Write every answer of the joined requests, with its label, to the outbox: one row per
    `LABELED_PER_EVENT` answers, each under an event id derived from the model and its answers."""
    answers: dict[str, list[Any]] = {}
    columns = WAITING_ANSWERS.c
    for part in chunks([pair.request_id for pair in pairs]):
        found = connection.execute(
            sa.select(
                columns.request_id,
                columns.version,
                columns.route,
                columns.prediction_json,
                columns.predicted_at,
            )
            .where(columns.model == model, columns.request_id.in_(part))
            .order_by(columns.request_id, columns.version)
        ).all()
        for answer in found:
            answers.setdefault(answer.request_id, []).append(answer)
    labeled: list[dict[str, JsonValue]] = [
        {
            "request_id": pair.request_id,
            "version": answer.version,
            "route": answer.route,
            "prediction": json.loads(answer.prediction_json),
            "predicted_at": float(answer.predicted_at),
            "label": json.loads(pair.label_json),
            "observed_at": float(pair.observed_at),
        }
        for pair in pairs
        for answer in answers.get(pair.request_id, [])
    ]
    for start in range(0, len(labeled), LABELED_PER_EVENT):
        batch = labeled[start : start + LABELED_PER_EVENT]
        connection.execute(
            insert(connection, LABELED_OUTBOX).on_conflict_do_nothing(index_elements=["event_id"]),
            {
                "model": model,
                "event_id": str(labeled_event_id(model, batch)),
                "labeled_json": json.dumps(batch),
                "joined_at": now,
            },
        )


def labeled_event_id(model: str, labeled: Sequence[dict[str, JsonValue]]) -> uuid.UUID:
    """The event id of a `PredictionsLabeled`: the same answers of the same model, the same id."""
    digest = hashlib.sha256(
        "\n".join([model, *(f"{entry['request_id']}\t{entry['version']}" for entry in labeled)]).encode()
    ).hexdigest()
    return uuid.uuid5(LABELED_NAMESPACE, digest)


def _drop_orphan_answers(connection: Connection, model: str) -> None:
    """Drop the answers of requests whose prediction no longer waits (evicted)."""
    waiting = sa.select(WAITING_PREDICTIONS.c.request_id).where(WAITING_PREDICTIONS.c.model == model)
    connection.execute(
        sa.delete(WAITING_ANSWERS).where(
            WAITING_ANSWERS.c.model == model, WAITING_ANSWERS.c.request_id.not_in(waiting)
        )
    )


def _binding(connection: Connection, model: str) -> FeedbackBinding | None:
    row = connection.execute(
        sa.select(
            FEEDBACK_BINDINGS.c.dataset, FEEDBACK_BINDINGS.c.target, FEEDBACK_BINDINGS.c.where_json
        ).where(FEEDBACK_BINDINGS.c.model == model)
    ).one_or_none()
    if row is None:
        return None
    return FeedbackBinding(dataset=row.dataset, target=row.target, where=json.loads(row.where_json))


def _joined_or_settled(connection: Connection, model: str, request_ids: list[str]) -> set[str]:
    """The requests among `request_ids` that already joined, or were settled: they take no new
    prediction or label."""
    taken: set[str] = set()
    for part in chunks(request_ids):
        for table in (FEEDBACK_ROWS, SETTLED_REQUESTS):
            taken.update(
                connection.execute(
                    sa.select(table.c.request_id).where(table.c.model == model, table.c.request_id.in_(part))
                ).scalars()
            )
    return taken


def _evict(
    connection: Connection, table: sa.Table, age: sa.Column[float], model: str, max_waiting: int
) -> int:
    """Drop the model's oldest waiting rows beyond `max_waiting`."""
    count = connection.execute(
        sa.select(sa.func.count()).select_from(table).where(table.c.model == model)
    ).scalar_one()
    excess = int(count) - max_waiting
    if excess <= 0:
        return 0
    oldest = (
        sa.select(table.c.request_id)
        .where(table.c.model == model)
        .order_by(age, table.c.request_id)
        .limit(excess)
    )
    connection.execute(sa.delete(table).where(table.c.model == model, table.c.request_id.in_(oldest)))
    return excess


def _matches(column: sa.Column[object], value: object) -> sa.ColumnElement[bool]:
    """`column` holds `value` (NULL included)."""
    return column.is_(None) if value is None else column == value
