"""Handle an effect once per key, even when Kafka delivers the event again.

Keys are event ids, or better natural keys (dataset + content hash, model + run id). The store
is an interface with an in-memory implementation (tests, caches) and a durable SQLite one that
survives restarts, so a redelivery after a crash still finds the mark.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path


class IdempotencyStore(ABC):
    """Remembers which keys have had their effect."""

    @abstractmethod
    def seen(self, key: str) -> bool:
        """True when the effect of `key` already happened."""

    @abstractmethod
    def mark(self, key: str) -> None:
        """Record that the effect of `key` happened."""


class InMemoryIdempotencyStore(IdempotencyStore):
    """A bounded LRU of keys; forgets on restart and when full."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def mark(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class SqliteIdempotencyStore(IdempotencyStore):
    """Durable keys in a local SQLite file (one per service replica's state directory)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS handled (key TEXT PRIMARY KEY, at REAL NOT NULL)")

    def seen(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM handled WHERE key = ?", (key,)).fetchone() is not None

    def mark(self, key: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO handled (key, at) VALUES (?, ?)", (key, time.time()))

    def close(self) -> None:
        self._db.close()


async def once(store: IdempotencyStore, key: str, effect: Callable[[], Awaitable[None]]) -> bool:
    """Run `effect` unless `key` was already handled; returns whether it ran.

    The mark is written after the effect, so a crash in between repeats the effect: effects must
    themselves tolerate a rare repeat (at-least-once), which natural keys downstream absorb.
    """
    if store.seen(key):
        return False
    await effect()
    store.mark(key)
    return True
