"""Publish events the way services do: same broker factory, same topics, same headers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

from modelfleet_common.kafka import EventPublisher, make_broker
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import ServiceSettings
from modelfleet_common.telemetry import global_provider
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import topic_of


def cli_broker(settings: ServiceSettings) -> KafkaBroker:
    """The CLI's broker: its published events carry the current span's context (the command's)
    in their `traceparent` header, as a service's do."""
    return make_broker(
        settings.kafka,
        client_id="modelfleet-cli",
        middlewares=(KafkaTelemetryMiddleware(tracer_provider=global_provider()),),
    )


async def publish_events(settings: ServiceSettings, events: list[Event]) -> None:
    """Publish `events` (acks=all) and return once the broker has them all."""
    broker = cli_broker(settings)
    publish = EventPublisher(broker, TopicNamer(settings.topic_prefix), {topic_of(type(e)) for e in events})
    await broker.start()
    try:
        for event in events:
            await publish(event)
    finally:
        await broker.stop()
