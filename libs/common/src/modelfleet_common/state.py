"""Durable state of a service, in an engine several replicas share: PostgreSQL, or SQLite embedded.

A consumer group commits its offsets, so after a restart a service does not re-read the events
it already handled. Whatever it learned from them (the latest spec of each model, the rollout of
each model) must outlive the process, and with several replicas it must not live in one pod: a
model's events reach whichever replica owns its partition now, and after a kill or a rebalance
another replica continues with the same state. So every service keeps its state behind one
`StateEngine`, opened from `FLEET_STATE_URL`:

- `postgresql+psycopg://deployer@postgres:5432/modelfleet` (password from
  `FLEET_STATE_PASSWORD_FILE`): the shared engine for replicas > 1. Each service has its own
  schema (its name) that only its role may use.
- unset: a SQLite file `<state_dir>/<service>-state.sqlite`, the embedded default of one replica.

    engine = StateEngine.open(settings.state, service="trainer", state_dir=settings.state_dir)
    specs = engine.key_values()
    specs.put("specs", "churn-se", {"revision": "ab12…"})
    specs.get("specs", "churn-se")          # {"revision": "ab12…"}
    async with engine.locks.hold("churn-se"):   # one replica at a time for this model
        ...

Values are anything `json.dumps` accepts; each `put` replaces the whole value of its key.
`InMemoryKeyValueStore` has the same interface for tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .settings import ServiceSettings, StateSettings


class StateUnavailable(RuntimeError):
    """The state engine cannot be opened as configured; the message says which variable to fix."""


class KeyValueStore(ABC):
    """JSON values by (namespace, key)."""

    @abstractmethod
    def get(self, namespace: str, key: str) -> Any | None:
        """The value stored under `key`, or None when there is none."""

    @abstractmethod
    def put(self, namespace: str, key: str, value: Any) -> None:
        """Store `value` (JSON-serialisable) under `key`, replacing any previous value."""

    def put_many(self, namespace: str, values: Iterable[tuple[str, Any]]) -> None:
        """Store several values at once (one transaction where the engine has them)."""
        for key, value in values:
            self.put(namespace, key, value)

    @abstractmethod
    def delete(self, namespace: str, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def items(self, namespace: str) -> list[tuple[str, Any]]:
        """Every (key, value) of the namespace, sorted by key."""


def _encode(value: Any) -> str:
    # Encoding up front rejects what JSON cannot hold before anything is stored.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class InMemoryKeyValueStore(KeyValueStore):
    """A dict of JSON copies: same behaviour as the durable store, forgotten on restart."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], str] = {}

    def get(self, namespace: str, key: str) -> Any | None:
        raw = self._values.get((namespace, key))
        return None if raw is None else json.loads(raw)

    def put(self, namespace: str, key: str, value: Any) -> None:
        self._values[(namespace, key)] = _encode(value)

    def delete(self, namespace: str, key: str) -> None:
        self._values.pop((namespace, key), None)

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        return sorted((k, json.loads(raw)) for (ns, k), raw in self._values.items() if ns == namespace)


#: Tables of every service's schema. Services with richer state (ingest) add their own tables
#: to their own `MetaData` and create them through `StateEngine.create_tables`.
METADATA = sa.MetaData()

KV = sa.Table(
    "kv",
    METADATA,
    sa.Column("namespace", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

HANDLED = sa.Table(
    "handled",
    METADATA,
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
)


def upsert(connection: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Insert `rows`, replacing the non-key columns of rows whose `keys` already exist."""
    if not rows:
        return
    dialect = connection.dialect.name
    insert = pg_dialect.insert(table) if dialect == "postgresql" else sqlite_dialect.insert(table)
    updated = {column: insert.excluded[column] for column in rows[0] if column not in keys}
    statement = (
        insert.on_conflict_do_update(index_elements=keys, set_=updated)
        if updated
        else insert.on_conflict_do_nothing(index_elements=keys)
    )
    connection.execute(statement, rows)


class SqlKeyValueStore(KeyValueStore):
    """Durable values in the engine's `kv` table; every write is committed when the call returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, namespace: str, key: str) -> Any | None:
        with self._engine.connect() as connection:
            raw = connection.execute(
                sa.select(KV.c.value).where(KV.c.namespace == namespace, KV.c.key == key)
            ).scalar_one_or_none()
        return None if raw is None else json.loads(raw)

    def put(self, namespace: str, key: str, value: Any) -> None:
        self.put_many(namespace, [(key, value)])

    def put_many(self, namespace: str, values: Iterable[tuple[str, Any]]) -> None:
        rows = [{"namespace": namespace, "key": key, "value": _encode(value)} for key, value in values]
        with self._engine.begin() as connection:
            upsert(connection, KV, rows, ["namespace", "key"])

    def delete(self, namespace: str, key: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(sa.delete(KV).where(KV.c.namespace == namespace, KV.c.key == key))

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(KV.c.key, KV.c.value).where(KV.c.namespace == namespace).order_by(KV.c.key)
            ).all()
        return [(key, json.loads(value)) for key, value in rows]


class KeyLocks:
    """One holder at a time per key (a model, a dataset), across the replicas of a service.

    Events of one model arrive on several topics, each consumed by its own group, so two replicas
    can handle the same model at once; a read-decide-write on its state takes this lock. On
    PostgreSQL it is a session advisory lock (released by the server if the holder dies); on
    SQLite, or without an engine (tests), an asyncio lock of this process.

    A held lock keeps one connection of its own (not one of the state pool, which the holder still
    needs for its reads and writes), and waiting never blocks a thread: the waiter polls
    `pg_try_advisory_lock` with a growing pause (20 ms to 500 ms), so many waiters cannot starve
    the event loop's thread pool that trainings and MLflow calls use.
    """

    def __init__(self, engine: Engine | None = None, scope: str = "") -> None:
        self._scope = scope
        self._local: dict[str, asyncio.Lock] = {}
        self._engine: Engine | None = None
        if engine is not None and engine.dialect.name == "postgresql":
            # A pool of their own: a held lock keeps its connection, as many as there are holders
            # (a new connection costs a SCRAM handshake, ~10 ms; a pooled one is reused).
            self._engine = sa.create_engine(engine.url, pool_size=4, max_overflow=200, pool_pre_ping=True)

    def _lock_id(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self._scope}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        local = self._local.setdefault(key, asyncio.Lock())
        async with local:
            if self._engine is None:
                yield
                return
            lock_id = self._lock_id(key)
            connection = await asyncio.to_thread(self._engine.connect)
            try:
                pause = 0.02
                while not await asyncio.to_thread(_try_lock, connection, lock_id):
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                try:
                    yield
                finally:
                    await asyncio.to_thread(_unlock, connection, lock_id)
            finally:
                await asyncio.to_thread(connection.close)


def _try_lock(connection: Connection, lock_id: int) -> bool:
    acquired = bool(connection.execute(sa.select(sa.func.pg_try_advisory_lock(lock_id))).scalar())
    connection.commit()
    return acquired


def _unlock(connection: Connection, lock_id: int) -> None:
    connection.execute(sa.select(sa.func.pg_advisory_unlock(lock_id)))
    connection.commit()


class StateEngine:
    """The engine of one service's state: its schema on PostgreSQL, or its SQLite file."""

    def __init__(self, engine: Engine, *, scope: str) -> None:
        self.engine = engine
        self.locks = KeyLocks(engine, scope)
        self._create_lock = threading.Lock()

    @classmethod
    def open(cls, settings: StateSettings, *, service: str, state_dir: Path) -> StateEngine:
        """Connect, make sure the schema has the common tables, and return the engine.

        Raises `StateUnavailable` naming the variable to fix when the URL is malformed, the
        server refuses the role, or the schema is missing and the role may not create it.
        """
        if settings.url is None:
            return cls.sqlite(state_dir / f"{service}-state.sqlite", scope=service)
        try:
            url = sa.make_url(settings.url)
        except ArgumentError:
            raise StateUnavailable(
                f"FLEET_STATE_URL is not a database URL (e.g. postgresql+psycopg://{service}@host:5432/modelfleet)"
            ) from None
        try:
            secret = settings.secret()
        except ValueError as error:
            raise StateUnavailable(str(error)) from None
        if secret is not None:
            url = url.set(password=secret.get_secret_value())
        schema = settings.schema_name or service
        if url.get_backend_name() == "sqlite":
            return cls(_sqlite_engine(url), scope=service)._with_tables()
        if url.get_backend_name() != "postgresql":
            raise StateUnavailable(
                f"FLEET_STATE_URL names {url.get_backend_name()!r}; modelfleet keeps state in "
                "postgresql (postgresql+psycopg://…) or sqlite"
            )
        engine = sa.create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size * 2,
            pool_pre_ping=True,
            execution_options={"schema_translate_map": {None: schema}},
            connect_args={"connect_timeout": int(settings.connect_timeout_seconds)},
        )
        shown = url.render_as_string(hide_password=True)
        try:
            with engine.connect() as connection:
                if not sa.inspect(connection).has_schema(schema):
                    raise StateUnavailable(
                        f"schema {schema!r} does not exist in {shown}: create it owned by the "
                        f"service's role (`make postgres` does; see docs/architecture.md)"
                    )
            opened = cls(engine, scope=f"{url.database}.{schema}")._with_tables()
            with engine.connect() as connection:
                # Existing tables are not created again: this read checks the role may use them.
                connection.execute(sa.select(KV.c.key).limit(1))
            return opened
        except SQLAlchemyError as error:
            raise StateUnavailable(
                f"cannot open the state engine at {shown} (FLEET_STATE_URL, "
                f"FLEET_STATE_PASSWORD_FILE, FLEET_STATE_SCHEMA): {_reason(error)}"
            ) from None

    @classmethod
    def sqlite(cls, path: Path, *, scope: str = "state") -> StateEngine:
        """An embedded engine in one file (one replica; also what tests use)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(_sqlite_engine(sa.make_url(f"sqlite:///{path}")), scope=scope)._with_tables()

    def _with_tables(self) -> StateEngine:
        self.create_tables(METADATA)
        return self

    def create_tables(self, metadata: sa.MetaData) -> None:
        """Create the tables of `metadata` that do not exist yet (idempotent, replica-safe)."""
        with self._create_lock:
            try:
                metadata.create_all(self.engine, checkfirst=True)
            except SQLAlchemyError:
                # Another replica created them between the check and the create.
                metadata.create_all(self.engine, checkfirst=True)

    @property
    def shared(self) -> bool:
        """Whether several replicas can share this engine (PostgreSQL) or not (SQLite)."""
        return self.engine.dialect.name == "postgresql"

    def key_values(self) -> SqlKeyValueStore:
        return SqlKeyValueStore(self.engine)

    def close(self) -> None:
        """Close every pooled connection; the engine cannot be used afterwards."""
        self.engine.dispose()


def open_service_state(settings: ServiceSettings, service: str) -> StateEngine:
    """The state engine of `service` as its settings say (`FLEET_STATE_*`, `FLEET_STATE_DIR`)."""
    return StateEngine.open(settings.state, service=service, state_dir=settings.state_dir)


def _sqlite_engine(url: sa.URL) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=sa.pool.QueuePool if url.database not in (None, "", ":memory:") else sa.pool.StaticPool,
    )

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _reason(error: SQLAlchemyError) -> str:
    # The driver's first line (e.g. 'password authentication failed for user "trainer"'), not the
    # SQL and parameters SQLAlchemy appends.
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
