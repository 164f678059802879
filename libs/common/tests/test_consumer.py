"""The consumer policy: handled events count, bad ones are dead-lettered, the consumer goes on."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker

from modelfleet_common.consumer import PermanentError
from modelfleet_common.kafka import event_headers
from modelfleet_common.service import FleetService
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import RetrainRequested
from modelfleet_contracts.topics import RETRAIN_REQUESTS

pytestmark = pytest.mark.asyncio


class Harness:
    """A service with one subscriber whose behaviour a test scripts, and a dead-letter tap."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.service = FleetService("trainer", ServiceSettings(max_attempts=3, retry_backoff_seconds=0.001))
        self.handled: list[RetrainRequested] = []
        self.dead: list[dict[str, Any]] = []
        self.failures = list(failures or [])
        self.topic = self.service.namer.topic(RETRAIN_REQUESTS)

        @self.service.subscriber(RETRAIN_REQUESTS)
        async def on_retrain(event: RetrainRequested) -> None:
            if self.failures:
                raise self.failures.pop(0)
            self.handled.append(event)

        @self.service.broker.subscriber(self.service.namer.dead_letter())
        async def on_dead_letter(body: Any, message: KafkaMessage) -> None:
            self.dead.append({"body": message.body, "headers": message.headers})

    def handled_count(self) -> float:
        return self.service.metrics.events_handled.labels(self.topic, "model.retrain.requested")._value.get()


def retrain(model: str = "churn-se") -> RetrainRequested:
    return RetrainRequested(producer="test", model=model, reason="manual")


async def publish(broker: Any, harness: Harness, event: RetrainRequested) -> None:
    await broker.publish(event.model_dump_json().encode(), topic=harness.topic, headers=event_headers(event))


async def test_a_valid_event_is_handled_and_counted() -> None:
    harness = Harness()
    async with TestKafkaBroker(harness.service.broker) as broker:
        await publish(broker, harness, retrain())
    assert [e.model for e in harness.handled] == ["churn-se"]
    assert harness.handled_count() == 1
    assert harness.dead == []


async def test_a_non_json_message_is_dead_lettered_with_its_bytes_and_the_reason() -> None:
    harness = Harness()
    async with TestKafkaBroker(harness.service.broker) as broker:
        await broker.publish(b"\x00not json at all", topic=harness.topic)
        await publish(broker, harness, retrain("next-one"))
    assert [e.model for e in harness.handled] == ["next-one"]
    [dead] = harness.dead
    assert dead["body"] == b"\x00not json at all"
    assert dead["headers"]["x-dlq-source-topic"] == harness.topic
    assert dead["headers"]["x-dlq-service"] == "trainer"
    assert dead["headers"]["x-dlq-error-type"] == "ValidationError"
    assert dead["headers"]["x-dlq-attempts"] == "1"


async def test_a_schema_invalid_event_is_dead_lettered_without_retries() -> None:
    harness = Harness()
    async with TestKafkaBroker(harness.service.broker) as broker:
        await broker.publish(b'{"model": "m", "reason": "because"}', topic=harness.topic)
    [dead] = harness.dead
    assert dead["headers"]["x-dlq-error-type"] == "ValidationError"
    assert "producer" in dead["headers"]["x-dlq-error-message"]
    assert harness.service.metrics.handler_retries.labels(harness.topic)._value.get() == 0


async def test_a_transient_failure_is_retried_and_then_handled() -> None:
    harness = Harness(failures=[ConnectionError("mlflow is restarting")])
    async with TestKafkaBroker(harness.service.broker) as broker:
        await publish(broker, harness, retrain())
    assert len(harness.handled) == 1
    assert harness.dead == []
    assert harness.service.metrics.handler_retries.labels(harness.topic)._value.get() == 1


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries() -> None:
    harness = Harness(failures=[ConnectionError("down")] * 3)
    async with TestKafkaBroker(harness.service.broker) as broker:
        await publish(broker, harness, retrain())
    [dead] = harness.dead
    assert dead["headers"]["x-dlq-error-type"] == "ConnectionError"
    assert dead["headers"]["x-dlq-attempts"] == "3"
    assert dead["headers"]["event_type"] == "model.retrain.requested"


async def test_a_permanent_error_is_dead_lettered_at_once() -> None:
    harness = Harness(failures=[PermanentError("unknown template 'gbm@9'")])
    async with TestKafkaBroker(harness.service.broker) as broker:
        await publish(broker, harness, retrain())
    [dead] = harness.dead
    assert dead["headers"]["x-dlq-attempts"] == "1"
    assert dead["headers"]["x-dlq-error-message"] == "unknown template 'gbm@9'"
