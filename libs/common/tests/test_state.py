"""The key-value store keeps namespaced JSON values, and the durable one keeps them across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet_common.settings import StateSettings
from modelfleet_common.state import InMemoryKeyValueStore, KeyValueStore, StateEngine, StateUnavailable


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield InMemoryKeyValueStore()
        return
    engine = StateEngine.sqlite(tmp_path / "state.sqlite")
    yield engine.key_values()
    engine.close()


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


def test_the_durable_store_remembers_after_a_restart(tmp_path: Path) -> None:
    first = StateEngine.sqlite(tmp_path / "state.sqlite")
    first.key_values().put("versions", "machines@abc", {"uri": "/data/abc.parquet"})
    first.close()

    again = StateEngine.sqlite(tmp_path / "state.sqlite")
    assert again.key_values().get("versions", "machines@abc") == {"uri": "/data/abc.parquet"}
    again.close()


def test_put_many_stores_every_value_and_replaces_existing_ones(store: KeyValueStore) -> None:
    store.put("windows", "a", 1)
    store.put_many("windows", [("a", 2), ("b", 3)])
    assert store.items("windows") == [("a", 2), ("b", 3)]


def test_without_a_url_a_service_gets_its_own_sqlite_file_in_its_state_dir(tmp_path: Path) -> None:
    engine = StateEngine.open(StateSettings(), service="trainer", state_dir=tmp_path)
    engine.key_values().put("specs", "m", 1)
    engine.close()
    assert (tmp_path / "trainer-state.sqlite").is_file()
    assert not StateEngine.open(StateSettings(), service="trainer", state_dir=tmp_path).shared


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "FLEET_STATE_URL is not a database URL"),
        ("mysql://trainer@db/modelfleet", "modelfleet keeps state in postgresql"),
        (
            "postgresql+psycopg://trainer@127.0.0.1:1/modelfleet",
            r"cannot open the state engine at postgresql\+psycopg://trainer:\*\*\*@127.0.0.1:1/modelfleet",
        ),
    ],
)
def test_a_state_url_that_cannot_work_is_refused_naming_the_variable_and_hiding_the_password(
    url: str, message: str, tmp_path: Path
) -> None:
    settings = StateSettings(url=url, password="s3cret", connect_timeout_seconds=2)
    with pytest.raises(StateUnavailable, match=message) as refused:
        StateEngine.open(settings, service="trainer", state_dir=tmp_path)
    assert "s3cret" not in str(refused.value)


async def test_a_key_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    engine = StateEngine.sqlite(tmp_path / "state.sqlite")
    order: list[str] = []

    async def hold(name: str) -> None:
        async with engine.locks.hold("churn"):
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a in", "a out", "b in", "b out"]


def test_the_password_file_is_read_when_the_engine_opens_not_when_settings_are_read(tmp_path: Path) -> None:
    settings = StateSettings(
        url="postgresql+psycopg://trainer@127.0.0.1:1/modelfleet", password_file=tmp_path / "gone"
    )
    with pytest.raises(
        StateUnavailable, match=f"FLEET_STATE_PASSWORD_FILE={tmp_path / 'gone'} cannot be read"
    ):
        StateEngine.open(settings, service="trainer", state_dir=tmp_path)
