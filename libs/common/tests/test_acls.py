"""Kafka ACLs come from the topic catalog: each principal writes what it owns, reads what it uses."""

from __future__ import annotations

import pytest

from modelfleet_common.acls import fleet_acls, may_write
from modelfleet_common.naming import TopicNamer
from modelfleet_common.service import CatalogViolation, FleetService
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts.topics import (
    ALL_TOPICS,
    CLI,
    DEPLOYMENTS,
    HUMAN_REQUESTS,
    MODEL_EVALUATIONS,
    MODEL_HEALTH,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    PRINCIPALS,
    SERVICES,
    TRAINING_FINISHED,
    topics_produced_by,
)

NAMER = TopicNamer("acme.")
BINDINGS = fleet_acls(NAMER)
DECISIONS = {
    DEPLOYMENTS: "deployer",
    MODEL_EVALUATIONS: "evaluator",
    MODEL_REGISTRATIONS: "registry",
    MODEL_PROMOTIONS: "deployer",
    MODEL_HEALTH: "monitor",
    TRAINING_FINISHED: "trainer",
}


def test_the_cli_may_write_only_the_human_requests() -> None:
    written = {b.resource_name for b in BINDINGS if b.principal == CLI and b.operation == "write"}
    assert written == {NAMER.topic(t) for t in HUMAN_REQUESTS}
    assert {t.name for t in HUMAN_REQUESTS} == {
        "model-specs",
        "dataset-specs",
        "data-batches",
        "approvals-granted",
        "retrain-requests",
        "rollback-requests",
    }


@pytest.mark.parametrize(("topic", "owner"), DECISIONS.items(), ids=[t.name for t in DECISIONS])
def test_a_decision_topic_is_written_by_its_owner_alone(topic: object, owner: str) -> None:
    name = NAMER.topic(topic)  # type: ignore[arg-type]
    writers = {p for p in PRINCIPALS if may_write(BINDINGS, p, name)}
    assert writers == {owner}


def test_every_service_writes_its_own_topics_and_the_dead_letters_and_nothing_else() -> None:
    for service in SERVICES:
        written = {b.resource_name for b in BINDINGS if b.principal == service and b.operation == "write"}
        assert written == {NAMER.topic(t) for t in topics_produced_by(service)} | {NAMER.dead_letter()}


def test_consumer_groups_are_granted_under_each_services_own_prefix_only() -> None:
    groups = {(b.principal, b.pattern_type, b.resource_name) for b in BINDINGS if b.resource_type == "group"}
    assert groups == {(s, "prefixed", f"acme.fleet.{s}.") for s in SERVICES}


def test_reads_follow_the_catalogs_consumers() -> None:
    for topic in ALL_TOPICS:
        readers = {
            b.principal
            for b in BINDINGS
            if b.operation == "read" and b.resource_type == "topic" and b.resource_name == NAMER.topic(topic)
        }
        assert readers == set(topic.consumers)


def test_only_allow_bindings_on_topics_and_groups_exist_no_cluster_rights() -> None:
    assert {b.resource_type for b in BINDINGS} == {"topic", "group"}
    assert {b.operation for b in BINDINGS} == {"read", "write", "describe"}


def test_an_unknown_principal_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown principals"):
        fleet_acls(NAMER, ["mallory"])


def test_a_service_cannot_declare_a_publisher_the_catalog_does_not_give_it() -> None:
    service = FleetService("monitor", ServiceSettings())
    with pytest.raises(CatalogViolation, match="monitor publishes to 'deployments'"):
        service.publisher(DEPLOYMENTS)


def test_a_service_cannot_subscribe_to_a_topic_the_catalog_does_not_let_it_read() -> None:
    service = FleetService("serving", ServiceSettings())
    with pytest.raises(CatalogViolation, match="serving subscribes to 'model-evaluations'"):
        service.subscriber(MODEL_EVALUATIONS)
