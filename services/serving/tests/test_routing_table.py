"""Serving keeps, per model, the routing table with the highest revision it has seen."""

from modelfleet_contracts import DeploymentChanged
from modelfleet_serving.routing_table import RoutingTable


def table(model: str, revision: int) -> DeploymentChanged:
    return DeploymentChanged(producer="deployer", model=model, revision=revision, stage="promoted")


def test_a_newer_revision_replaces_the_table_and_an_older_one_is_ignored() -> None:
    tables = RoutingTable()
    assert tables.apply(table("churn", 2))
    assert not tables.apply(table("churn", 1))
    assert not tables.apply(table("churn", 2)), "a redelivered revision changes nothing"
    assert tables.apply(table("fraud", 1))
    current = tables.get("churn")
    assert current is not None
    assert current.revision == 2
    assert tables.models() == ["churn", "fraud"]


def test_a_model_without_a_table_has_none() -> None:
    assert RoutingTable().get("churn") is None
