"""The monitor app consumes its topics through the fleet's consumer policy and reports health."""

import asyncio
from datetime import UTC, datetime

from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import GroundTruthObserved, ModelHealthReported, PredictionLogged
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_contracts.topics import GROUND_TRUTH, PREDICTION_LOGS
from modelfleet_monitor import app as app_module
from modelfleet_monitor.app import service


async def test_a_valid_event_on_a_subscribed_topic_is_handled_and_counted() -> None:
    event = ModelFactory.create_factory(GroundTruthObserved).build()
    topic = service.namer.topic(GROUND_TRUTH)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    handled = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    assert handled == 1


async def test_the_periodic_reporter_publishes_the_health_of_logged_predictions() -> None:
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
    reports: asyncio.Queue[Event] = asyncio.Queue()
    deps = app_module.dependencies()
    real_publish = deps.publish

    async def publish_and_capture(report: Event) -> None:
        await real_publish(report)
        reports.put_nowait(report)

    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(
            event.model_dump_json().encode(),
            topic=service.namer.topic(PREDICTION_LOGS),
            headers=event_headers(event),
        )
        deps.publish = publish_and_capture
        reporter = asyncio.create_task(app_module.report_periodically(0.01))
        try:
            report = await asyncio.wait_for(reports.get(), timeout=5)
        finally:
            reporter.cancel()
            deps.publish = real_publish
    assert isinstance(report, ModelHealthReported)
    assert (report.model, report.version, report.route, report.requests) == ("app-churn", "3", "champion", 1)


async def test_the_reporter_starts_after_startup_and_is_cancelled_on_shutdown() -> None:
    await app_module.start_reporting()
    (task,) = app_module._reporter

    await app_module.stop_reporting()

    assert task.cancelled()
    assert not app_module._reporter
