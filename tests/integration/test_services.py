"""Every service starts against the real broker, reports ready, consumes, and stops cleanly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import (
    DataBatchSubmitted,
    DeploymentChanged,
    ModelRegistered,
    ModelSpecRetired,
    PredictionLogged,
    RetrainRequested,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import topic_of

from .fleet import Kafka, ServiceProcess

pytestmark = pytest.mark.integration

#: One contract each service subscribes to and handles without other parts of the fleet. (A
#: random `ModelEvaluated` names no real MLflow run: the registry rightly refuses it, and the
#: assembly-line tests cover that path with real runs.)
CONSUMED_BY: dict[str, type[Event]] = {
    "ingest": DataBatchSubmitted,
    "trainer": RetrainRequested,
    "evaluator": TrainingFinished,
    "registry": ModelSpecRetired,
    "deployer": ModelRegistered,
    "monitor": PredictionLogged,
    "serving": DeploymentChanged,
}


@pytest.mark.parametrize("name", list(CONSUMED_BY))
async def test_a_service_starts_consumes_a_valid_event_and_stops_cleanly_on_sigterm(
    name: str, start_service: Callable[..., ServiceProcess], kafka: Kafka, topic_prefix: str
) -> None:
    service = start_service(name)
    event: Event = ModelFactory.create_factory(CONSUMED_BY[name]).build()
    topic = TopicNamer(topic_prefix).topic(topic_of(type(event)))

    await kafka.publish(
        topic, event.model_dump_json().encode(), key=event.key.encode(), headers=event_headers(event)
    )

    service.wait_for_metric("fleet_events_handled_total", 1, topic=topic, event_type=event.event_type)
    assert service.metric("fleet_dead_letters_total") == 0
    assert service.metric("fleet_ready") == 1
    assert service.terminate() == 0, service.logs()
