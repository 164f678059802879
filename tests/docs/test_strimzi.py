"""The committed Strimzi KafkaUsers and KafkaTopics are what the topic catalog gives today."""

from __future__ import annotations

import yaml

from modelfleet_cli.kafka_access import render_strimzi, render_strimzi_topics
from modelfleet_cli.local_home import REPO
from modelfleet_common.acls import fleet_acls
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts.topics import PRINCIPALS

COMMITTED = REPO / "deploy" / "k8s" / "strimzi" / "kafka-users.yaml"


def test_the_committed_kafka_users_are_current() -> None:
    generated = render_strimzi(fleet_acls(TopicNamer("")))
    assert COMMITTED.read_text() == generated, f"run `modelfleet acls --strimzi > {COMMITTED}` and commit it"


def test_there_is_one_scram_user_per_principal_named_after_it() -> None:
    users = [doc for doc in yaml.safe_load_all(COMMITTED.read_text()) if doc]
    assert [user["metadata"]["name"] for user in users] == list(PRINCIPALS)
    assert {user["spec"]["authentication"]["type"] for user in users} == {"scram-sha-512"}


def test_the_cli_user_may_write_only_the_human_requests() -> None:
    cli = next(
        doc for doc in yaml.safe_load_all(COMMITTED.read_text()) if doc and doc["metadata"]["name"] == "cli"
    )
    written = {
        acl["resource"]["name"]
        for acl in cli["spec"]["authorization"]["acls"]
        if "Write" in acl["operations"]
    }
    assert written == {
        "fleet.model-specs.v1",
        "fleet.dataset-specs.v1",
        "fleet.data-batches.v1",
        "fleet.approvals-granted.v1",
        "fleet.retrain-requests.v1",
        "fleet.rollback-requests.v1",
    }


TOPICS = REPO / "deploy" / "k8s" / "strimzi" / "kafka-topics.yaml"


def test_the_committed_kafka_topics_are_current() -> None:
    assert TOPICS.read_text() == render_strimzi_topics(TopicNamer("")), (
        f"run `modelfleet topics --strimzi > {TOPICS}` and commit it"
    )


def test_every_topic_is_replicated_three_times_and_acknowledged_by_two() -> None:
    topics = [doc for doc in yaml.safe_load_all(TOPICS.read_text()) if doc]
    assert {(t["spec"]["replicas"], t["spec"]["config"]["min.insync.replicas"]) for t in topics} == {(3, 2)}
