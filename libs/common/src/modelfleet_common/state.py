"""Small durable state of a service: namespaced JSON values by key.

A consumer group commits its offsets, so after a restart a service does not re-read the events
it already handled. Whatever it learned from them (the latest spec of each model, the versions
of each dataset) must therefore outlive the process: keep it in a `SqliteKeyValueStore` under
the service's `state_dir`. `InMemoryKeyValueStore` has the same interface for tests.

    store = SqliteKeyValueStore(settings.state_dir / "trainer-state.sqlite")
    store.put("specs", "churn-se", {"revision": "ab12…"})
    store.get("specs", "churn-se")          # {"revision": "ab12…"}
    store.items("specs")                    # [("churn-se", {...})], sorted by key

Values are anything `json.dumps` accepts; each `put` replaces the whole value of its key.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class KeyValueStore(ABC):
    """JSON values by (namespace, key)."""

    @abstractmethod
    def get(self, namespace: str, key: str) -> Any | None:
        """The value stored under `key`, or None when there is none."""

    @abstractmethod
    def put(self, namespace: str, key: str, value: Any) -> None:
        """Store `value` (JSON-serialisable) under `key`, replacing any previous value."""

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
    """A dict of JSON copies: same behaviour as the SQLite store, forgotten on restart."""

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


class SqliteKeyValueStore(KeyValueStore):
    """Durable values in one SQLite file; every write is committed when the call returns.

    Safe to use from several threads of one process (calls are serialised by a lock). One file
    belongs to one service replica: replicas do not share state through it.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv ("
            "namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (namespace, key))"
        )

    def get(self, namespace: str, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, namespace: str, key: str, value: Any) -> None:
        encoded = _encode(value)
        with self._lock:
            self._db.execute(
                "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                (namespace, key, encoded),
            )

    def delete(self, namespace: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM kv WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def close(self) -> None:
        """Close the file; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()
