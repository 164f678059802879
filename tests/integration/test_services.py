"""Every service starts against the real broker, reports ready, consumes, and stops cleanly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from modelfleet_common.kafka import event_headers
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import (
    DataBatchSubmitted,
    DeploymentChanged,
    ModelEvaluated,
    ModelRegistered,
    PredictionLogged,
    PredictionRecord,
    RetrainRequested,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import topic_of

from .fleet import Kafka, ServiceProcess

pytestmark = pytest.mark.integration

ONE_EVENT_PER_SERVICE: dict[str, Event] = {
    "ingest": DataBatchSubmitted(producer="test", dataset="sales", uri="/nowhere/sales.csv"),
    "trainer": RetrainRequested(producer="test", model="churn-se", reason="manual"),
    "evaluator": TrainingFinished(
        producer="test",
        model="churn-se",
        spec_revision="r1",
        dataset="churn",
        dataset_version="d1",
        template="tabular-classifier",
        template_version="1",
        run_id="run1",
        model_uri="runs:/run1/model",
        duration_seconds=1.0,
        code_version="0.1.0",
        environment_hash="e1",
    ),
    "registry": ModelEvaluated(
        producer="test",
        model="churn-se",
        run_id="run1",
        model_uri="runs:/run1/model",
        spec_revision="r1",
        passed=True,
        gates=[],
    ),
    "deployer": ModelRegistered(
        producer="test",
        model="churn-se",
        version="1",
        run_id="run1",
        model_uri="models:/churn-se/1",
        digest="ab" * 32,
        signature="c2ln",
        signing_key_id="k1",
        passed_evaluation=True,
    ),
    "monitor": PredictionLogged(
        producer="test",
        model="churn-se",
        predictions=[
            PredictionRecord(
                request_id="r1",
                version="1",
                route="champion",
                features={"x": 1.0},
                prediction=1,
                latency_ms=2.0,
                predicted_at=datetime.now(UTC),
            )
        ],
    ),
    "serving": DeploymentChanged(producer="test", model="churn-se", revision=1, stage="candidate"),
}


@pytest.mark.parametrize("name", list(ONE_EVENT_PER_SERVICE))
async def test_a_service_starts_consumes_a_valid_event_and_stops_cleanly_on_sigterm(
    name: str, start_service: Callable[..., ServiceProcess], kafka: Kafka, topic_prefix: str
) -> None:
    service = start_service(name)
    event = ONE_EVENT_PER_SERVICE[name]
    topic = TopicNamer(topic_prefix).topic(topic_of(type(event)))

    await kafka.publish(
        topic, event.model_dump_json().encode(), key=event.key.encode(), headers=event_headers(event)
    )

    service.wait_for_metric("fleet_events_handled_total", 1, topic=topic, event_type=event.event_type)
    assert service.metric("fleet_dead_letters_total") == 0
    assert service.metric("fleet_ready") == 1
    assert service.terminate() == 0, service.logs()
