"""Every service starts against the real broker, reports ready, consumes, and stops cleanly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import (
    DataBatchSubmitted,
    DeploymentChanged,
    ModelRegistered,
    ModelRolledBack,
    PredictionLogged,
    RetrainRequested,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import topic_of

from .fleet import Kafka, ServiceProcess

pytestmark = pytest.mark.integration

#: One contract each service subscribes to and handles without other parts of the fleet, with the
#: fields it needs for that. (A random `ModelEvaluated` names no real MLflow run: the registry
#: rightly refuses it, and the assembly-line tests cover that path with real runs; a rollback that
#: leaves no champion removes an alias, and removing one that is not set is no error.)
CONSUMED_BY: dict[str, tuple[type[Event], dict[str, Any]]] = {
    "ingest": (DataBatchSubmitted, {}),
    "trainer": (RetrainRequested, {}),
    "evaluator": (TrainingFinished, {}),
    "registry": (ModelRolledBack, {"to_version": None}),
    "deployer": (ModelRegistered, {}),
    "monitor": (PredictionLogged, {}),
    "serving": (DeploymentChanged, {}),
}
#: Services whose handling calls MLflow (the registry moves its aliases there).
NEEDS_MLFLOW = frozenset({"registry"})


@pytest.mark.parametrize("name", list(CONSUMED_BY))
async def test_a_service_starts_consumes_a_valid_event_and_stops_cleanly_on_sigterm(
    name: str,
    start_service: Callable[..., ServiceProcess],
    kafka: Kafka,
    topic_prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    mlflow: dict[str, str] = {}
    if name in NEEDS_MLFLOW:
        mlflow["FLEET_MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_uri")
    service = start_service(name, **mlflow)
    contract, fields = CONSUMED_BY[name]
    event: Event = ModelFactory.create_factory(contract).build(**fields)
    topic = TopicNamer(topic_prefix).topic(topic_of(type(event)))

    await kafka.publish(
        topic, event.model_dump_json().encode(), key=event.key.encode(), headers=event_headers(event)
    )

    service.wait_for_metric("fleet_events_handled_total", 1, topic=topic, event_type=event.event_type)
    assert service.metric("fleet_dead_letters_total") == 0
    assert service.metric("fleet_ready") == 1
    assert service.terminate() == 0, service.logs()
