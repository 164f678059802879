"""An effect runs once per key, and the durable store remembers across restarts."""

from __future__ import annotations

from pathlib import Path

from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqliteIdempotencyStore, once


async def test_an_effect_runs_once_per_key(tmp_path: Path) -> None:
    runs: list[str] = []

    async def effect() -> None:
        runs.append("ran")

    for store in (InMemoryIdempotencyStore(), SqliteIdempotencyStore(tmp_path / "h.sqlite")):
        runs.clear()
        assert await once(store, "k", effect) is True
        assert await once(store, "k", effect) is False
        assert runs == ["ran"]


def test_the_sqlite_store_remembers_after_a_restart(tmp_path: Path) -> None:
    first = SqliteIdempotencyStore(tmp_path / "h.sqlite")
    first.mark("dataset:abc")
    first.close()
    assert SqliteIdempotencyStore(tmp_path / "h.sqlite").seen("dataset:abc")


def test_the_in_memory_store_is_bounded() -> None:
    store = InMemoryIdempotencyStore(capacity=2)
    for key in ("a", "b", "c"):
        store.mark(key)
    assert not store.seen("a")
    assert store.seen("c")
