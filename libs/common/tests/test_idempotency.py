"""An effect runs once per key, and the durable store remembers across restarts."""

from __future__ import annotations

from pathlib import Path

from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqlIdempotencyStore, once
from modelfleet_common.state import StateEngine

DAY = 86400.0


async def test_an_effect_runs_once_per_key(tmp_path: Path) -> None:
    runs: list[str] = []

    async def effect() -> None:
        runs.append("ran")

    durable = SqlIdempotencyStore(StateEngine.sqlite(tmp_path / "h.sqlite"), ttl_seconds=DAY)
    for store in (InMemoryIdempotencyStore(), durable):
        runs.clear()
        assert await once(store, "k", effect) is True
        assert await once(store, "k", effect) is False
        assert runs == ["ran"]


def test_the_durable_store_remembers_after_a_restart(tmp_path: Path) -> None:
    first = StateEngine.sqlite(tmp_path / "h.sqlite")
    SqlIdempotencyStore(first, ttl_seconds=DAY).mark("dataset:abc")
    first.close()
    assert SqlIdempotencyStore(StateEngine.sqlite(tmp_path / "h.sqlite"), ttl_seconds=DAY).seen("dataset:abc")


def test_marks_older_than_the_ttl_are_forgotten_and_pruned(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SqlIdempotencyStore(
        StateEngine.sqlite(tmp_path / "h.sqlite"),
        ttl_seconds=DAY,
        prune_every_seconds=3600,
        clock=lambda: now[0],
    )
    store.mark("old")
    now[0] += DAY / 2
    store.mark("recent")
    now[0] += DAY * 0.75
    assert not store.seen("old")
    assert store.seen("recent")
    assert store.prune() == 1
    now[0] += DAY
    store.mark("newest")  # more than prune_every after the last prune: prunes "recent"
    assert not store.seen("recent")
    assert store.prune() == 0


def test_the_in_memory_store_is_bounded() -> None:
    store = InMemoryIdempotencyStore(capacity=2)
    for key in ("a", "b", "c"):
        store.mark(key)
    assert not store.seen("a")
    assert store.seen("c")
