"""A deployer that lost its store rebuilds it from the compacted topics and decides as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

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
from modelfleet_deployer.rebuild import latest_tables, rebuild_state
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


async def test_the_highest_revision_of_a_model_wins_whatever_the_order_of_the_log() -> None:
    before, _ = await promoted_twice()
    tables = published(before).of(DeploymentChanged)
    latest, malformed = latest_tables(
        [table.model_dump_json().encode() for table in reversed(tables)] + [b'{"not": "an event"}']
    )
    assert (latest[MODEL], malformed) == (tables[-1], 1)


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
