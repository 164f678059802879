"""The deployer app consumes its topics through the fleet's consumer policy."""

from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import RollbackRequested
from modelfleet_contracts.topics import ROLLBACK_REQUESTS
from modelfleet_deployer.app import service


async def test_a_valid_event_on_a_subscribed_topic_is_handled_and_counted() -> None:
    event = ModelFactory.create_factory(RollbackRequested).build()
    topic = service.namer.topic(ROLLBACK_REQUESTS)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    handled = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    assert handled == 1
