"""The monitor's verdicts start traces of their own that link to the requests they summarise
(bounded), and the events they cause are published in those traces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelfleet_common.telemetry import MAX_LINKS, export_to, tracer
from modelfleet_contracts import (
    DriftDetected,
    ModelHealthReported,
    ModelReviewed,
    PredictionLogged,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MonitoringPolicy
from modelfleet_monitor import handlers
from modelfleet_monitor.snapshots import jsonable, watch_from_state, watch_state
from modelfleet_monitor.watch import VersionWatch

from .test_handlers import T0, logged
from .test_signals import WINDOW, fleet_with_one_model, traffic


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


class TracedPublisher:
    """Keeps each event with the trace id current when it was published."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, int]] = []

    async def __call__(self, event: Event) -> None:
        context = trace.get_current_span().get_span_context()
        self.events.append((event, context.trace_id if context.is_valid else 0))

    def of(self, kind: type[Event]) -> list[tuple[Event, int]]:
        return [(event, trace_id) for event, trace_id in self.events if isinstance(event, kind)]


def requests_of(batch: PredictionLogged, first: int) -> PredictionLogged:
    """The batch with a request span (traceparent) on each record, numbered from `first`."""
    records = [
        record.model_copy(update={"traceparent": f"00-{first + index:032x}-{first + index:016x}-01"})
        for index, record in enumerate(batch.predictions)
    ]
    return batch.model_copy(update={"predictions": records})


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


async def test_a_drift_incident_starts_a_trace_linked_to_its_windows_newest_requests_and_its_trigger(
    spans: InMemorySpanExporter,
) -> None:
    deps, _, _clock = await fleet_with_one_model()
    publisher = TracedPublisher()
    deps.publish = publisher
    await handlers.record_predictions(requests_of(traffic(WINDOW, prefix="base-"), 1), deps)
    await handlers.record_predictions(
        requests_of(traffic(WINDOW - 1, temperature=95.0, prefix="hot-"), 1001), deps
    )
    with tracer().start_as_current_span("consume prediction-logs") as consumer:
        await handlers.record_predictions(
            requests_of(traffic(1, temperature=95.0, prefix="last-"), 5000), deps
        )

    [(drift, trace_id)] = publisher.of(DriftDetected)
    [span] = named(spans, "drift detected")
    assert span.parent is None
    assert trace_id == span.context.trace_id != consumer.get_span_context().trace_id
    linked = [link.context.trace_id for link in span.links]
    # The window's newest rows (the last one closed it), then the consumed batch that closed it.
    assert linked[:-1] == [*range(1001 + WINDOW - MAX_LINKS, 1001 + WINDOW - 1), 5000]
    assert linked[-1] == consumer.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["modelfleet.model"] == drift.key == "pump"


async def test_a_health_report_links_to_its_windows_requests_and_its_breach_is_in_its_trace(
    spans: InMemorySpanExporter,
) -> None:
    deps, _, clock = await fleet_with_one_model(max_error_rate=0.1, review_interval_seconds=60)
    publisher = TracedPublisher()
    deps.publish = publisher
    await handlers.record_predictions(requests_of(logged("pump", "1", "champion", 5, errors=3), 7), deps)
    clock.advance(61)
    await handlers.report_health(clock(), deps)

    [report_span] = named(spans, "model health reported")
    assert report_span.parent is None
    assert sorted(link.context.trace_id for link in report_span.links) == list(range(7, 12))
    [(_, report_trace)] = publisher.of(ModelHealthReported)
    [(_, breach_trace)] = publisher.of(SloBreached)
    assert report_trace == breach_trace == report_span.context.trace_id

    [review_span] = named(spans, "model reviewed")
    [(_, review_trace)] = publisher.of(ModelReviewed)
    assert review_trace == review_span.context.trace_id != report_trace
    assert [link.context.span_id for link in review_span.links] == [report_span.context.span_id]


async def test_requests_without_a_trace_give_spans_without_links(spans: InMemorySpanExporter) -> None:
    deps, _publisher, clock = await fleet_with_one_model()
    await handlers.record_predictions(logged("pump", "1", "champion", 3), deps)
    await handlers.report_health(clock.advance(5), deps)
    [span] = named(spans, "model health reported")
    assert span.links == ()


def test_a_checkpointed_drift_window_keeps_the_request_spans_it_will_link_to() -> None:
    watch = VersionWatch("pump", "1", "classification")
    parents = [f"00-{index:032x}-{index:016x}-01" for index in range(1, 4)]
    watch.add([{"x": 1.0}] * 3, [1] * 3, MonitoringPolicy(), T0, traceparents=parents)

    copy = watch_from_state("pump", "1", json.loads(json.dumps(jsonable(watch_state(watch)))))

    assert list(copy.evidence) == parents
    copy.close_drift_window(T0)
    assert list(copy.evidence) == [], "a new window starts without evidence"
