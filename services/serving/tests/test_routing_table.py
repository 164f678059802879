"""Serving takes a model's first table as it comes, then only the next revision (+1) of it."""

import logging

import pytest
from prometheus_client import CollectorRegistry

from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving.handlers import RoutingMetrics, apply_deployment_changed
from modelfleet_serving.routing_table import RoutingTable

CHAMPION = RouteTarget(
    version="3", model_uri="runs:/r3/model", digest="a" * 64, signature="s", signing_key_id="k"
)
OTHER_MODELS_VERSION = RouteTarget(
    version="9", model_uri="runs:/r9/model", digest="b" * 64, signature="t", signing_key_id="k"
)


def table(model: str, revision: int, champion: RouteTarget | None = None) -> DeploymentChanged:
    return DeploymentChanged(
        producer="deployer", model=model, revision=revision, stage="promoted", champion=champion
    )


def test_the_next_revision_replaces_the_table_and_an_older_or_repeated_one_is_ignored() -> None:
    tables = RoutingTable()
    assert tables.apply(table("churn", 2)) == "first"
    assert tables.apply(table("churn", 1)) == "stale"
    assert tables.apply(table("churn", 2)) == "stale", "a redelivered revision changes nothing"
    assert tables.apply(table("churn", 3)) == "next"
    assert tables.apply(table("fraud", 1)) == "first"
    current = tables.get("churn")
    assert current is not None
    assert current.revision == 3
    assert tables.models() == ["churn", "fraud"]


def test_the_first_table_of_a_model_is_taken_at_any_revision_as_a_compacted_topic_may_hold_only_it() -> None:
    tables = RoutingTable()
    assert tables.apply(table("churn", 57)) == "first"
    assert tables.apply(table("churn", 58)) == "next"


def test_a_table_skipping_ahead_is_ignored_and_the_next_real_one_is_still_taken() -> None:
    tables = RoutingTable()
    tables.apply(table("churn", 4, CHAMPION))
    assert tables.apply(table("churn", 1004, OTHER_MODELS_VERSION)) == "jump"
    assert tables.apply(table("churn", 6)) == "jump", "two steps is a jump too"
    current = tables.get("churn")
    assert current is not None
    assert (current.revision, current.champion) == (4, CHAMPION)
    assert tables.apply(table("churn", 5, CHAMPION)) == "next"


def test_a_model_without_a_table_has_none() -> None:
    assert RoutingTable().get("churn") is None


def ignored(metrics: RoutingMetrics, reason: str) -> float:
    return float(metrics.ignored.labels(reason)._value.get())


async def test_a_forged_revision_plus_1000_is_ignored_counted_and_warned_and_the_champion_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tables, metrics = RoutingTable(), RoutingMetrics(CollectorRegistry())
    await apply_deployment_changed(table("churn", 1, CHAMPION), tables, metrics)

    with caplog.at_level(logging.WARNING, logger="modelfleet.serving"):
        await apply_deployment_changed(table("churn", 1001, OTHER_MODELS_VERSION), tables, metrics)

    current = tables.get("churn")
    assert current is not None
    assert (current.revision, current.champion) == (1, CHAMPION)
    assert ignored(metrics, "jump") == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "revision 1001 is not the applied revision 1 + 1" in warning.getMessage()

    await apply_deployment_changed(table("churn", 2, CHAMPION), tables, metrics)
    current = tables.get("churn")
    assert current is not None
    assert current.revision == 2, "the deployer's +1 table is applied"
    await apply_deployment_changed(table("churn", 2, CHAMPION), tables, metrics)
    assert ignored(metrics, "stale") == 1
