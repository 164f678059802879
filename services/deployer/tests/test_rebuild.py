"""A deployer that lost its store rebuilds it from the compacted topics and decides as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry

from modelfleet_contracts import (
    DeploymentChanged,
    ModelHealthReported,
    ModelRolledBack,
    ModelSpecRetired,
    RollbackRequested,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import DEPLOYMENTS, MODEL_SPECS, Topic
from modelfleet_deployer.handlers import (
    ROLLOUTS,
    SPECS,
    DeployerDeps,
    check_approval,
    load_rollout,
    remember_model_spec,
    roll_back_on_request,
    roll_out_version,
    weigh_model_health,
)
from modelfleet_deployer.rebuild import RebuildMetrics, latest_tables, rebuild_state
from modelfleet_deployer.rollout import ModelRollout

from .deployer_builders import MODEL, NOW, approval, in_memory_deps, published, registered, spec


@dataclass
class Topics:
    """The snapshot reader of the deployer, fed with events as if they were on the topics."""

    messages: dict[str, list[bytes]] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)

    def add(self, topic: Topic, *events: Event) -> None:
        self.messages.setdefault(topic.name, []).extend(event.model_dump_json().encode() for event in events)

    async def __call__(self, topic: Topic) -> list[bytes]:
        self.read.append(topic.name)
        return self.messages.get(topic.name, [])


def health(version: str, requests: int, hour: int) -> ModelHealthReported:
    start = NOW + timedelta(hours=hour)
    return ModelHealthReported.model_validate(
        {
            "producer": "monitor",
            "model": MODEL,
            "version": version,
            "window_start": start,
            "window_end": start + timedelta(minutes=5),
            "route": "challenger",
            "requests": requests,
            "errors": 0,
            "latency_p99_ms": 40.0,
        }
    )


async def promoted_twice() -> tuple[DeployerDeps, Topics]:
    """Version 2 promoted over version 1 (the last known good); the topics as the deployer left them."""
    deps = in_memory_deps()
    low = spec("low", canary_steps=[100], min_requests_per_step=10)
    await remember_model_spec(low, deps)
    await roll_out_version(registered("1"), deps)
    await roll_out_version(registered("2"), deps)
    await weigh_model_health(health("2", 10, hour=1), deps)
    state = load_rollout(deps.state, MODEL)
    assert state.champion is not None
    assert state.last_known_good is not None
    assert (state.champion.version, state.last_known_good.version) == ("2", "1")
    topics = Topics()
    topics.add(MODEL_SPECS, low)
    topics.add(DEPLOYMENTS, *published(deps).of(DeploymentChanged))
    return deps, topics


def durable(state: ModelRollout) -> tuple[Any, ...]:
    return (state.revision, *state.durable)


async def test_a_deployer_with_an_empty_store_gets_every_models_state_and_spec_back() -> None:
    before, topics = await promoted_twice()
    after = in_memory_deps()
    rebuilt = await rebuild_state(after, topics)
    assert (rebuilt.rollouts, rebuilt.specs) == ((MODEL,), (MODEL,))
    assert topics.read == ["deployments", "model-specs"]
    assert durable(load_rollout(after.state, MODEL)) == durable(load_rollout(before.state, MODEL))
    assert after.state.get(SPECS, MODEL) == before.state.get(SPECS, MODEL)


async def test_a_rebuilt_deployer_rolls_back_to_the_same_last_known_good_publishing_the_same_events() -> None:
    before, topics = await promoted_twice()
    after = in_memory_deps()
    await rebuild_state(after, topics)
    request = RollbackRequested(producer="cli:oncall", model=MODEL, reason="pager")
    already = len(published(before).events)
    await roll_back_on_request(request, before)
    await roll_back_on_request(request, after)
    assert published(after).events == published(before).events[already:]
    (rolled_back,) = published(after).of(ModelRolledBack)
    assert (rolled_back.from_version, rolled_back.to_version) == ("2", "1")


async def test_a_rebuilt_deployer_promotes_the_version_that_was_waiting_for_approval() -> None:
    before = in_memory_deps()
    high = spec("high")
    await remember_model_spec(high, before)
    await roll_out_version(registered("1"), before)
    topics = Topics()
    topics.add(MODEL_SPECS, high)
    topics.add(DEPLOYMENTS, *published(before).of(DeploymentChanged))
    after = in_memory_deps()
    await rebuild_state(after, topics)
    assert load_rollout(after.state, MODEL).pending_approval == "1"

    approved = approval("1")
    already = len(published(before).events)
    await check_approval(approved, before)
    await check_approval(approved, after)
    assert published(after).events == published(before).events[already:]
    assert load_rollout(after.state, MODEL).stage == "promoted"


async def test_models_already_in_the_store_keep_their_stored_state() -> None:
    before, topics = await promoted_twice()
    stored = before.state.get(ROLLOUTS, MODEL)
    topics.add(MODEL_SPECS, spec("low", model="pump-7"))
    rebuilt = await rebuild_state(before, topics)
    assert (rebuilt.rollouts, rebuilt.specs) == ((), ("pump-7",))
    assert before.state.get(ROLLOUTS, MODEL) == stored


async def test_the_all_mode_replaces_a_stale_stored_state_with_the_topics() -> None:
    before, topics = await promoted_twice()
    before.state.put(ROLLOUTS, MODEL, ModelRollout(MODEL).to_json())
    rebuilt = await rebuild_state(before, topics, mode="all")
    assert rebuilt.rollouts == (MODEL,)
    champion = load_rollout(before.state, MODEL).champion
    assert champion is not None
    assert champion.version == "2"


async def test_the_deployer_numbers_a_models_tables_1_2_3_from_its_first() -> None:
    before, _ = await promoted_twice()
    revisions = [table.revision for table in published(before).of(DeploymentChanged)]
    assert revisions == list(range(1, len(revisions) + 1))
    assert len(revisions) > 1


async def test_an_older_table_after_a_newer_one_is_stale_and_a_malformed_message_is_counted() -> None:
    before, _ = await promoted_twice()
    tables = published(before).of(DeploymentChanged)
    latest = latest_tables(
        [table.model_dump_json().encode() for table in reversed(tables)] + [b'{"not": "an event"}']
    )
    assert (latest.tables[MODEL], latest.malformed, latest.stale) == (tables[-1], 1, len(tables) - 1)


async def test_a_compacted_topic_holding_only_the_latest_table_rebuilds_from_it() -> None:
    before, _ = await promoted_twice()
    last = published(before).of(DeploymentChanged)[-1]
    assert last.revision > 1
    latest = latest_tables([last.model_dump_json().encode()])
    assert latest.tables[MODEL] == last


def forged(table: DeploymentChanged, revision: int, champion_version: str) -> DeploymentChanged:
    """A table as someone with write access to the topic could publish it: any champion, any revision."""
    assert table.champion is not None
    stolen = table.champion.model_copy(update={"version": champion_version})
    return table.model_copy(update={"revision": revision, "champion": stolen, "event_id": uuid4()})


async def test_a_forged_table_with_revision_plus_1000_is_ignored_by_the_rebuild_which_continues_from_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, topics = await promoted_twice()
    real = published(before).of(DeploymentChanged)
    topics.add(DEPLOYMENTS, forged(real[-1], real[-1].revision + 1000, champion_version="99"))
    after = in_memory_deps()
    metrics = RebuildMetrics(CollectorRegistry())

    rebuilt = await rebuild_state(after, topics, metrics=metrics)

    state = load_rollout(after.state, MODEL)
    assert state.champion is not None
    assert (state.revision, state.champion.version) == (real[-1].revision, "2"), "keeps its champion"
    assert rebuilt.jumped_tables == (MODEL,)
    assert metrics.ignored.labels("jump")._value.get() == 1
    assert f"revision {real[-1].revision + 1000} of {MODEL} skips ahead" in caplog.text


async def test_after_a_rebuild_the_deployers_next_table_is_exactly_one_revision_on() -> None:
    before, topics = await promoted_twice()
    last = published(before).of(DeploymentChanged)[-1]
    after = in_memory_deps()
    await rebuild_state(after, topics)

    await roll_out_version(registered("3"), after)

    [table] = published(after).of(DeploymentChanged)
    assert table.revision == last.revision + 1
    assert (
        latest_tables([event.model_dump_json().encode() for event in (last, table)]).tables[MODEL] == table
    ), "a reader of the topic takes it"


async def test_a_retired_model_keeps_its_versions_but_not_its_spec() -> None:
    before, topics = await promoted_twice()
    retirement = ModelSpecRetired(producer="cli", model=MODEL, reason="market closed")
    await remember_model_spec(retirement, before)
    topics.add(MODEL_SPECS, retirement)
    topics.add(DEPLOYMENTS, published(before).of(DeploymentChanged)[-1])
    after = in_memory_deps()
    rebuilt = await rebuild_state(after, topics)
    assert (rebuilt.rollouts, rebuilt.specs) == ((MODEL,), ())
    state = load_rollout(after.state, MODEL)
    assert (state.stage, [target.version for target in state.versions]) == ("retired", ["1", "2"])
    assert after.state.get(SPECS, MODEL) is None


async def test_a_spec_the_deployer_refused_is_not_rebuilt_either(caplog: pytest.LogCaptureFixture) -> None:
    topics = Topics()
    topics.add(MODEL_SPECS, spec("medium", canary_steps=[50, 10]))
    after = in_memory_deps()
    rebuilt = await rebuild_state(after, topics)
    assert (rebuilt.specs, rebuilt.refused_specs) == ((), (MODEL,))
    assert after.state.get(SPECS, MODEL) is None
    assert "canary_steps must strictly increase" in caplog.text
