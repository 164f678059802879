"""The monitor app consumes its topics through the fleet's consumer policy and reports health."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import ModelHealthReported, PredictionLogged, PredictionsLabeled
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_contracts.topics import LABELED_PREDICTIONS, MODEL_SPECS, PREDICTION_LOGS
from modelfleet_monitor import app as app_module
from modelfleet_monitor.app import MODEL_TOPICS, service
from modelfleet_monitor.rebalance import Handover

from .test_signals import spec_event

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(app_module.settings, "state_dir", tmp_path)
    monkeypatch.setattr(app_module.settings, "policy_dir", POLICY_DIR)
    app_module.dependencies.cache_clear()
    yield
    app_module.dependencies.cache_clear()


async def test_a_valid_event_on_a_subscribed_topic_is_handled_and_counted() -> None:
    event = ModelFactory.create_factory(PredictionsLabeled).build()
    topic = service.namer.topic(LABELED_PREDICTIONS)
    before = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    handled = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    assert handled == before + 1


def test_a_models_events_of_every_topic_are_consumed_by_one_subscriber_in_one_range_assigned_group() -> None:
    names = {service.namer.topic(topic) for topic in MODEL_TOPICS}
    [subscriber] = [s for s in service.broker.subscribers if names & {topic.name for topic in s.topics}]
    assert {topic.name for topic in subscriber.topics} == names
    assert subscriber.group_id == f"{service.namer.group_prefix('monitor')}models.v1"
    assert subscriber._connection_args["partition_assignment_strategy"] == (RangePartitionAssignor,)
    assert isinstance(subscriber._listener, Handover)


async def test_the_partition_a_models_state_lives_on_is_the_records() -> None:
    spec = spec_event("pump-3")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(
            spec.model_dump_json().encode(),
            topic=service.namer.topic(MODEL_SPECS),
            partition=2,
            headers=event_headers(spec),
        )
    deps = app_module.dependencies()
    state = deps.models.get("pump-3")
    assert (state.partition, state.profile is not None) == (2, True)
    assert deps.models.store.get("specs", "pump-3")["partition"] == 2


async def test_the_periodic_report_publishes_the_health_of_logged_predictions() -> None:
    record = PredictionRecord(
        request_id="app-r1",
        version="3",
        route="champion",
        features={"x": 1},
        prediction=1,
        latency_ms=4.0,
        predicted_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    event = PredictionLogged(producer="serving", model="app-churn", predictions=[record])
    reports: list[Event] = []
    deps = app_module.dependencies()

    async def capture(report: Event) -> None:
        reports.append(report)

    deps.publish = capture
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(
            event.model_dump_json().encode(),
            topic=service.namer.topic(PREDICTION_LOGS),
            headers=event_headers(event),
        )
        await app_module.report()

    [report] = reports
    assert isinstance(report, ModelHealthReported)
    assert (report.model, report.version, report.route, report.requests) == ("app-churn", "3", "champion", 1)


def test_the_report_and_the_checkpoint_run_as_the_services_periodic_tasks() -> None:
    assert [entry[-1] for entry in service._periodic] == [
        "consumer-lag",
        "health-report",
        "window-checkpoint",
    ]


async def test_a_stopped_service_writes_its_windows_to_the_state_engine() -> None:
    deps = app_module.dependencies()
    deps.models.get("pump-9").watches.clear()
    deps.models.review("pump-9")

    await app_module.write_windows()

    assert deps.models.store.get("windows", "pump-9")["review"] is not None
