"""The one Kafka client set-up of modelfleet: broker factory, topic provisioning, event publishing."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher import DefaultPublisher

from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import Topic, topic_of

from .naming import TopicNamer
from .settings import KafkaSettings

logger = logging.getLogger("modelfleet.kafka")


def make_broker(
    settings: KafkaSettings, *, client_id: str, middlewares: Sequence[Any] = (), **options: Any
) -> KafkaBroker:
    """A broker whose producer is idempotent with `acks=all` (no loss, no duplicates on retry)."""
    return KafkaBroker(
        settings.bootstrap,
        security=settings.security(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        middlewares=middlewares,
        # Give in-flight handlers time to finish (and commit) on SIGTERM.
        graceful_timeout=30.0,
        **options,
    )


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the cluster: bootstrap servers, TLS and SASL.

    Raises `KafkaSettingsError` when the settings cannot connect (no credentials, PLAINTEXT not allowed).
    """
    settings.check()
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
        "ssl_context": settings.ssl_context(),
    }
    if settings.uses_sasl:
        assert settings.sasl_password is not None  # checked by KafkaSettings.check
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    return options


class TopicsMissing(RuntimeError):
    """Topics a service needs do not exist and its principal may not create them."""


async def ensure_topics(settings: KafkaSettings, names: Iterable[tuple[str, bool]]) -> list[str]:
    """Create missing topics (`(name, compacted)` pairs); returns the names it created.

    On a secured cluster a service's principal may not create topics: the fleet's topics are
    provisioned by an admin (`modelfleet provision`, or Strimzi `KafkaTopic`s). Then a missing
    topic is a `TopicsMissing` error naming them, not a topic created with the wrong settings.
    """
    wanted = dict(names)
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        # A principal lists only the topics it may describe, which are the ones it uses.
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if compacted else {},
            )
            for name, compacted in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            refused: list[str] = []
            for name, code, *_ in response.topic_errors:
                error = for_code(code)
                # Another service may create them in between: that is fine.
                if code == 0 or error is TopicAlreadyExistsError:
                    continue
                if error in (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
                    refused.append(name)
                    continue
                raise error(f"creating topic {name}")
            if refused:
                raise TopicsMissing(
                    f"topics {', '.join(sorted(refused))} do not exist and "
                    f"{settings.sasl_username or 'this principal'} may not create them: provision the "
                    "fleet first (`modelfleet provision` as the Kafka admin, or its KafkaTopic resources)"
                )
            logger.info("created topics", extra={"topics": [t.name for t in missing]})
        return [t.name for t in missing]
    finally:
        await admin.close()


def fleet_topics(namer: TopicNamer, topics: Iterable[Topic]) -> list[tuple[str, bool]]:
    """Physical names (and compaction) of the given topics plus the dead-letter topic."""
    return [(namer.topic(t), t.compacted) for t in topics] + [(namer.dead_letter(), False)]


class EventPublisher:
    """Publishes events to their catalog topic, keyed, with the envelope mirrored in headers."""

    def __init__(self, broker: KafkaBroker, namer: TopicNamer, topics: Iterable[Topic]) -> None:
        self._publishers: dict[type[Event], DefaultPublisher] = {}
        for topic in topics:
            publisher = broker.publisher(
                namer.topic(topic),
                title=f"{namer.topic(topic)}:publish",
                description=topic.description,
                schema=topic.payload_type,
            )
            for contract in topic.contracts:
                self._publishers[contract] = publisher

    async def __call__(self, event: Event) -> None:
        """Publish one event; waits for the broker's acknowledgement (acks=all)."""
        publisher = self._publishers.get(type(event))
        if publisher is None:
            raise KeyError(
                f"{type(event).__name__} goes to {topic_of(type(event)).name!r}, "
                "which this service did not declare as a publisher"
            )
        await publisher.publish(
            event.model_dump_json().encode(),
            key=event.key.encode(),
            correlation_id=event.correlation_id,
            headers=event_headers(event),
        )


def event_headers(event: Event) -> dict[str, str]:
    """Headers that let consumers route, log and deduplicate without parsing the body."""
    return {
        "content-type": "application/json",
        "event_type": event.event_type,
        "event_id": str(event.event_id),
        "schema_version": str(event.schema_version),
    }


async def read_snapshot(settings: KafkaSettings, topic_name: str) -> list[bytes]:
    """Every message value of a topic from its beginning to its end *now*, partition by partition.

    For reading state (compacted topics such as model specs) outside a consumer group: nothing
    is committed, and a missing topic reads as empty. Callers bound it with `asyncio.timeout`.
    """
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **connection_options(settings))
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic_name)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic_name)
        if not partitions:
            return []
        assigned = [TopicPartition(topic_name, number) for number in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        values: list[bytes] = []
        pending = {tp for tp in assigned if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                values.extend(record.value for record in records if record.value is not None)
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return values
    finally:
        await consumer.stop()
