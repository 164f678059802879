"""The broker itself refuses what the topic catalog does not allow: no event is trusted for arriving.

For every decision topic, a publish by the CLI principal and by a service that does not own the
topic is refused by the broker (topic authorization error), and the topic does not change.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from modelfleet_common.naming import TopicNamer
from modelfleet_contracts.topics import (
    CLI,
    DEPLOYMENTS,
    MODEL_EVALUATIONS,
    MODEL_HEALTH,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_SPECS,
    SERVICES,
    TRAINING_FINISHED,
    Topic,
)

from .fleet import SecuredBroker, free_port

pytestmark = pytest.mark.integration

DECISIONS = (
    DEPLOYMENTS,
    MODEL_EVALUATIONS,
    MODEL_REGISTRATIONS,
    MODEL_PROMOTIONS,
    MODEL_HEALTH,
    TRAINING_FINISHED,
)


def _outsiders(topic: Topic) -> list[str]:
    """The CLI and one service that does not own `topic`."""
    other = next(s for s in SERVICES if s not in topic.producers)
    return [CLI, other]


async def _end_offsets(broker: SecuredBroker, name: str) -> dict[TopicPartition, int]:
    return await broker.client().end_offsets(name)


async def _publish_as(broker: SecuredBroker, principal: str, name: str) -> None:
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **broker.options(principal))
    await producer.start()
    try:
        await producer.send_and_wait(name, b'{"forged": true}', key=b"churn-1")
    finally:
        await producer.stop()


@pytest.fixture
def namer(kafka_broker: SecuredBroker, topic_prefix: str) -> TopicNamer:
    kafka_broker.provision(topic_prefix)
    return TopicNamer(topic_prefix)


@pytest.mark.parametrize("topic", DECISIONS, ids=[t.name for t in DECISIONS])
async def test_a_decision_published_by_anyone_but_its_owner_is_refused_by_the_broker(
    topic: Topic, kafka_broker: SecuredBroker, namer: TopicNamer
) -> None:
    name = namer.topic(topic)
    before = await _end_offsets(kafka_broker, name)
    for outsider in _outsiders(topic):
        with pytest.raises(TopicAuthorizationFailedError):
            await _publish_as(kafka_broker, outsider, name)
    assert await _end_offsets(kafka_broker, name) == before


async def test_the_owner_publishes_its_decisions_and_the_cli_its_requests(
    kafka_broker: SecuredBroker, namer: TopicNamer
) -> None:
    for principal, topic in (("deployer", DEPLOYMENTS), (CLI, MODEL_SPECS)):
        name = namer.topic(topic)
        before = sum((await _end_offsets(kafka_broker, name)).values())
        await _publish_as(kafka_broker, principal, name)
        assert sum((await _end_offsets(kafka_broker, name)).values()) == before + 1


async def test_no_principal_but_the_admin_can_create_a_topic_by_writing_to_it(
    kafka_broker: SecuredBroker, namer: TopicNamer
) -> None:
    for principal in (CLI, "deployer"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _publish_as(kafka_broker, principal, f"{namer.prefix}fleet.made-up.v1")


def test_a_service_on_a_fleet_nobody_provisioned_stops_saying_how_to_provision_it(
    kafka_broker: SecuredBroker, tmp_path: Path
) -> None:
    # Its principal may not create topics: it must not start half-wired, nor create them wrongly.
    prefix = f"unprovisioned{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        **kafka_broker.env("registry"),
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_STATE_DIR": str(tmp_path / "state"),
        "FLEET_HTTP_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "modelfleet_registry"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "may not create them" in done.stdout + done.stderr
    assert "modelfleet provision" in done.stdout + done.stderr
