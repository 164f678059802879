"""Handle an effect once per key, even when Kafka delivers the event again.

Keys are event ids, or better natural keys (dataset + content hash, model + run id). The store
is an interface with an in-memory implementation (tests, caches) and a durable one in the
service's state engine (PostgreSQL shared by its replicas, or SQLite) that survives restarts
and rebalances, so a redelivery after a crash, to any replica, still finds the mark.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from .settings import StateSettings
from .state import HANDLED, StateEngine, upsert


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


class SqlIdempotencyStore(IdempotencyStore):
    """Durable keys in the state engine's `handled` table, shared by a service's replicas.

    Each mark carries its time; marks older than `ttl_seconds` are pruned (at most once per
    `prune_every_seconds`, by whichever replica marks next), so the table stays as large as the
    traffic of one TTL. The TTL must outlast any redelivery: Kafka redelivers what a consumer had
    not committed, which is seconds to minutes old, never weeks.
    """

    def __init__(
        self,
        engine: StateEngine,
        *,
        ttl_seconds: float,
        prune_every_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine.engine
        self.ttl_seconds = ttl_seconds
        self._prune_every = prune_every_seconds
        self._clock = clock
        self._last_prune = float("-inf")

    def seen(self, key: str) -> bool:
        with self._engine.connect() as connection:
            at = connection.execute(sa.select(HANDLED.c.at).where(HANDLED.c.key == key)).scalar_one_or_none()
        return at is not None and at >= self._clock() - self.ttl_seconds

    def mark(self, key: str) -> None:
        now = self._clock()
        with self._engine.begin() as connection:
            upsert(connection, HANDLED, [{"key": key, "at": now}], ["key"])
        if now - self._last_prune >= self._prune_every:
            self.prune()

    def prune(self) -> int:
        """Delete the marks older than the TTL; returns how many went."""
        now = self._clock()
        self._last_prune = now
        with self._engine.begin() as connection:
            result = connection.execute(sa.delete(HANDLED).where(HANDLED.c.at < now - self.ttl_seconds))
        return result.rowcount or 0


def durable_idempotency(engine: StateEngine, settings: StateSettings) -> SqlIdempotencyStore:
    """The service's idempotency marks in its state engine, kept `idempotency_ttl_seconds`."""
    return SqlIdempotencyStore(engine, ttl_seconds=settings.idempotency_ttl_seconds)


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
