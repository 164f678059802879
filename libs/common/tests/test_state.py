"""The key-value store keeps namespaced JSON values, and the SQLite one keeps them across restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet_common.state import InMemoryKeyValueStore, KeyValueStore, SqliteKeyValueStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield InMemoryKeyValueStore()
        return
    sqlite = SqliteKeyValueStore(tmp_path / "state.sqlite")
    yield sqlite
    sqlite.close()


def test_a_stored_value_comes_back_as_json(store: KeyValueStore) -> None:
    store.put("specs", "churn", {"revision": "r1", "features": ["a", "b"], "limit": 0.5, "pinned": None})
    assert store.get("specs", "churn") == {
        "revision": "r1",
        "features": ["a", "b"],
        "limit": 0.5,
        "pinned": None,
    }


def test_a_missing_key_has_no_value(store: KeyValueStore) -> None:
    assert store.get("specs", "nobody") is None


def test_a_put_replaces_the_previous_value(store: KeyValueStore) -> None:
    store.put("latest", "machines", "v1")
    store.put("latest", "machines", "v2")
    assert store.get("latest", "machines") == "v2"
    assert store.items("latest") == [("machines", "v2")]


def test_namespaces_do_not_share_keys(store: KeyValueStore) -> None:
    store.put("specs", "x", 1)
    store.put("versions", "x", 2)
    assert store.get("specs", "x") == 1
    assert store.items("versions") == [("x", 2)]


def test_items_are_sorted_by_key(store: KeyValueStore) -> None:
    for key in ("b", "c", "a"):
        store.put("n", key, key.upper())
    assert store.items("n") == [("a", "A"), ("b", "B"), ("c", "C")]


def test_a_deleted_key_is_gone_and_deleting_again_is_harmless(store: KeyValueStore) -> None:
    store.put("specs", "churn", {"revision": "r1"})
    store.delete("specs", "churn")
    store.delete("specs", "churn")
    assert store.get("specs", "churn") is None
    assert store.items("specs") == []


def test_a_value_json_cannot_hold_is_refused_and_nothing_is_stored(store: KeyValueStore) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        store.put("specs", "churn", {"when": object()})
    assert store.get("specs", "churn") is None


def test_the_sqlite_store_remembers_after_a_restart(tmp_path: Path) -> None:
    first = SqliteKeyValueStore(tmp_path / "state.sqlite")
    first.put("versions", "machines@abc", {"uri": "/data/abc.parquet"})
    first.close()

    again = SqliteKeyValueStore(tmp_path / "state.sqlite")
    assert again.get("versions", "machines@abc") == {"uri": "/data/abc.parquet"}
    again.close()
