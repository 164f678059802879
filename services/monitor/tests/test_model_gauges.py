"""The model drill-down gauges: the latest health window and the holdout metric of each owned model."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from modelfleet_contracts import DeploymentChanged, ModelSpecRetired
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_monitor import handlers
from modelfleet_monitor.metrics import MonitorMetrics
from modelfleet_monitor.rebalance import Handover

from .test_handlers import labeled, logged, make_deps, submitted

PER_ROUTE = (
    "fleet_model_requests",
    "fleet_model_error_rate",
    "fleet_model_latency_p99_seconds",
    "fleet_model_live_metric",
    "fleet_model_business_value",
    "fleet_model_version",
)


def gauges(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    """(metric, model[, route]) → value of every fleet_model_* series."""
    return {
        (sample.name, *sample.labels.values()): sample.value
        for metric in registry.collect()
        if metric.name.startswith("fleet_model_")
        for sample in metric.samples
    }


def target(version: str) -> RouteTarget:
    return RouteTarget(
        version=version,
        model_uri=f"models:/churn/{version}",
        digest="a" * 64,
        signature="s",
        signing_key_id="k",
    )


def table(revision: int, champion: str, challenger: str | None = None) -> DeploymentChanged:
    return DeploymentChanged(
        producer="deployer",
        model="churn",
        revision=revision,
        stage="canary" if challenger else "promoted",
        champion=target(champion),
        challenger=target(challenger) if challenger else None,
        challenger_weight=0.5 if challenger else 0.0,
    )


async def watched() -> tuple[handlers.MonitorDeps, CollectorRegistry]:
    """churn: version 1 champion (holdout accuracy 0.75), version 2 its canary; one report published."""
    deps, _, clock = make_deps()
    registry = CollectorRegistry()
    deps.metrics = MonitorMetrics(registry)
    await handlers.note_model_spec(submitted("churn", "medium"), deps)
    deps.facts.note_run("run-1", {"accuracy": 0.75})
    deps.facts.note_model_version("churn", "1", "run-1", None)
    await handlers.note_deployment_changed(table(1, "1", "2"), deps, partition=3)
    await handlers.record_predictions(logged("churn", "1", "champion", 10, errors=1), deps, partition=3)
    await handlers.record_predictions(logged("churn", "2", "challenger", 4, prefix="c"), deps, partition=3)
    await handlers.record_labeled(labeled("churn", {"r1": 1, "r2": 0, "r3": 1, "r4": 1}), deps, partition=3)
    await handlers.report_health(clock.advance(10), deps)
    return deps, registry


async def test_the_latest_window_of_each_route_and_the_champions_holdout_are_exported() -> None:
    _, registry = await watched()
    assert gauges(registry) == {
        ("fleet_model_requests", "churn", "champion"): 10.0,
        ("fleet_model_requests", "churn", "challenger"): 4.0,
        ("fleet_model_error_rate", "churn", "champion"): 0.1,
        ("fleet_model_error_rate", "churn", "challenger"): 0.0,
        ("fleet_model_latency_p99_seconds", "churn", "champion"): 0.005,
        ("fleet_model_latency_p99_seconds", "churn", "challenger"): 0.005,
        ("fleet_model_live_metric", "churn", "champion"): 0.75,
        ("fleet_model_version", "churn", "champion"): 1.0,
        ("fleet_model_version", "churn", "challenger"): 2.0,
        ("fleet_model_holdout_metric", "churn"): 0.75,
    }


async def test_a_route_the_routing_table_drops_loses_its_series() -> None:
    deps, registry = await watched()
    await handlers.note_deployment_changed(table(2, "2"), deps, partition=3)
    assert {key[2] for key in gauges(registry) if key[0] in PER_ROUTE} == {"champion"}
    # Version 2 is champion now, and the monitor knows no holdout of it.
    assert ("fleet_model_holdout_metric", "churn") not in gauges(registry)


async def test_a_retired_model_loses_every_series() -> None:
    deps, registry = await watched()
    await handlers.note_model_spec(ModelSpecRetired(producer="cli", model="churn", reason="gone"), deps)
    assert gauges(registry) == {}


async def test_a_replica_that_loses_the_models_partition_stops_exporting_it() -> None:
    deps, registry = await watched()
    topic = "fleet.prediction-logs.v1"
    handover = Handover(lambda: deps)
    await handover.on_partitions_revoked({TopicPartition(topic, 3)})
    await handover.on_partitions_assigned({TopicPartition(topic, 3)})
    assert len(gauges(registry)) == 10  # kept: the partition came back
    await handover.on_partitions_revoked({TopicPartition(topic, 3)})
    await handover.on_partitions_assigned({TopicPartition(topic, 0)})
    assert gauges(registry) == {}
