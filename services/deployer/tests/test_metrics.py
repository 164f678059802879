"""The deployer's metrics: models by stage and risk class, rollout decisions, the oldest canary."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry

from modelfleet_contracts import DeploymentChanged, ModelSpecRetired, RollbackRequested
from modelfleet_contracts.topics import DEPLOYMENTS, MODEL_SPECS
from modelfleet_deployer.handlers import (
    ROLLOUTS,
    DeployerDeps,
    load_rollout,
    refresh_fleet_metrics,
    remember_model_spec,
    retire_model,
    roll_back_on_request,
    roll_out_version,
    weigh_model_health,
)
from modelfleet_deployer.metrics import STAGES, DeployerMetrics, fleet_view
from modelfleet_deployer.rebuild import rebuild_state

from .deployer_builders import MODEL, NOW, in_memory_deps, published, registered, spec
from .test_rebuild import Topics, health


def with_metrics() -> tuple[DeployerDeps, CollectorRegistry]:
    registry = CollectorRegistry()
    deps = in_memory_deps()
    deps.metrics = DeployerMetrics(registry)
    return deps, registry


def values(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels.values()): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    }


def everyone(model: str) -> bool:
    return True


async def canary_at_half() -> DeployerDeps:
    """A low-risk model: version 1 champion, version 2 in its canary's first step (50 %) since NOW."""
    deps, _ = with_metrics()
    await remember_model_spec(spec("low", canary_steps=[50, 100], min_requests_per_step=10), deps)
    await roll_out_version(registered("1"), deps)
    await roll_out_version(registered("2"), deps)
    return deps


async def test_every_rollout_decision_is_counted_once_by_risk_class() -> None:
    deps, registry = with_metrics()
    await remember_model_spec(spec("low", canary_steps=[50, 100], min_requests_per_step=10), deps)
    await roll_out_version(registered("1"), deps)
    second = registered("2")
    await roll_out_version(second, deps)
    await roll_out_version(second, deps)  # redelivered: applied once, counted once
    await weigh_model_health(health("2", 10, hour=1), deps)
    await weigh_model_health(health("2", 10, hour=2), deps)
    await roll_back_on_request(RollbackRequested(producer="cli:oncall", model=MODEL, reason="pager"), deps)
    await retire_model(ModelSpecRetired(producer="cli", model=MODEL, reason="gone"), deps)
    assert values(registry, "fleet_deployer_rollout_decisions_total") == {
        ("low", "promoted"): 2.0,  # version 1 at once, version 2 after its canary
        ("low", "canary"): 1.0,
        ("low", "step"): 1.0,
        ("low", "rolled_back"): 1.0,
        ("low", "retired"): 1.0,
    }


async def test_the_table_carries_the_risk_class_and_when_the_stage_began() -> None:
    deps = await canary_at_half()
    table = published(deps).of(DeploymentChanged)[-1]
    assert (table.stage, table.risk_class, table.stage_since) == ("canary", "low", NOW)


async def test_models_by_stage_and_the_oldest_canary_of_each_class() -> None:
    deps = await canary_at_half()
    registry = CollectorRegistry()
    deps.metrics = DeployerMetrics(registry)
    await remember_model_spec(spec("medium", model="fraud-de"), deps)
    await roll_out_version(registered("1").model_copy(update={"model": "fraud-de"}), deps)
    deps.clock = lambda: NOW + timedelta(hours=2)
    await refresh_fleet_metrics(deps, everyone)
    assert values(registry, "fleet_models") == {("canary", "low"): 1.0, ("promoted", "medium"): 1.0}
    assert values(registry, "fleet_deployer_canary_age_seconds") == {
        ("low",): 7200.0,
        ("medium",): 0.0,
        ("high",): 0.0,
        ("critical",): 0.0,
    }

    # The canary is promoted: its stage reads 0 (not a stale 1), and no canary is in progress.
    await weigh_model_health(health("2", 10, hour=1), deps)
    await weigh_model_health(health("2", 10, hour=2), deps)
    await refresh_fleet_metrics(deps, everyone)
    assert values(registry, "fleet_models") == {
        ("canary", "low"): 0.0,
        ("promoted", "low"): 1.0,
        ("promoted", "medium"): 1.0,
    }
    assert values(registry, "fleet_deployer_canary_age_seconds")[("low",)] == 0.0


async def test_a_replica_counts_only_the_models_it_owns() -> None:
    deps = await canary_at_half()
    records = deps.state.items(STAGES)
    assert fleet_view(records, lambda model: model != MODEL, NOW).models == {}
    assert fleet_view(records, lambda model: model == MODEL, NOW).models == {("canary", "low"): 1}


async def test_a_rebuilt_deployer_reports_the_same_stages_and_canary_age() -> None:
    before = await canary_at_half()
    topics = Topics()
    topics.add(MODEL_SPECS, spec("low", canary_steps=[50, 100], min_requests_per_step=10))
    topics.add(DEPLOYMENTS, *published(before).of(DeploymentChanged))
    after, _ = with_metrics()
    await rebuild_state(after, topics)
    later = NOW + timedelta(minutes=30)
    assert fleet_view(after.state.items(STAGES), everyone, later) == fleet_view(
        before.state.items(STAGES), everyone, later
    )
    assert fleet_view(after.state.items(STAGES), everyone, later).canary_age_seconds == {"low": 1800.0}


async def test_a_table_from_an_older_deployer_dates_its_stage_from_the_table() -> None:
    before = await canary_at_half()
    table = published(before).of(DeploymentChanged)[-1]
    old = table.model_copy(update={"risk_class": None, "stage_since": None, "occurred_at": NOW})
    topics = Topics()
    topics.add(DEPLOYMENTS, old)
    after, _ = with_metrics()
    await rebuild_state(after, topics)
    view = fleet_view(after.state.items(STAGES), everyone, NOW + timedelta(seconds=90))
    assert view.models == {("canary", "unknown"): 1}
    assert view.canary_age_seconds == {"unknown": 90.0}


async def test_a_store_from_before_the_stage_records_gets_them_at_startup() -> None:
    before = await canary_at_half()
    after, _ = with_metrics()
    after.state.put(ROLLOUTS, MODEL, load_rollout(before.state, MODEL).to_json())
    await rebuild_state(after, Topics())
    assert fleet_view(after.state.items(STAGES), everyone, NOW).models == {("canary", "low"): 1}
