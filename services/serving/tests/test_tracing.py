"""Requests are traced (continuing the caller's trace), their predictions keep the request's span,
and the flush of the prediction log links to the requests it carries, within a bound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from modelfleet_common.telemetry import MAX_LINKS, export_to
from modelfleet_contracts import PredictionLogged
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_serving import app as serving_app
from modelfleet_serving.prediction_log import PredictionLog

from .test_data_plane import ROW, champion, client, deploy, logged_batches  # noqa: F401 (fixtures)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


async def test_a_prediction_is_traced_in_the_callers_trace_and_its_log_record_names_the_request_span(
    client: httpx.AsyncClient,  # noqa: F811
    champion: RouteTarget,  # noqa: F811
    spans: InMemorySpanExporter,
) -> None:
    deploy("traced", champion=champion)
    response = await client.post(
        "/predict",
        json={"model": "traced", "inputs": [ROW, ROW]},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert response.status_code == 200, response.text
    [request] = [span for span in spans.get_finished_spans() if span.name == "POST /predict"]
    assert trace.format_trace_id(request.context.trace_id) == CALLER_TRACE
    assert request.parent is not None
    assert trace.format_span_id(request.parent.span_id) == CALLER_SPAN
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/predict"

    await serving_app.prediction_log.flush()
    records = [r for b in logged_batches if b.model == "traced" for r in b.predictions]
    request_span = f"{CALLER_TRACE}-{trace.format_span_id(request.context.span_id)}"
    assert [r.traceparent.split("-", 1)[1][:49] for r in records if r.traceparent] == [request_span] * 2

    [flush] = [
        span
        for span in spans.get_finished_spans()
        if span.name == "prediction-log flush" and (span.attributes or {}).get("modelfleet.model") == "traced"
    ]
    assert flush.parent is None, "a batch of many requests starts its own trace"
    assert flush.context.trace_id != request.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in flush.links] == [
        (request.context.trace_id, request.context.span_id)
    ]
    kinds = {
        span.kind
        for span in spans.get_finished_spans()
        if span.context.trace_id == flush.context.trace_id and span is not flush
    }
    # Published in the flush's trace, and consumed (by this test's subscriber) in it too.
    assert {trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER} <= kinds


async def test_feedback_is_traced_under_its_route(
    client: httpx.AsyncClient,  # noqa: F811
    champion: RouteTarget,  # noqa: F811
    spans: InMemorySpanExporter,
) -> None:
    deploy("labelled", champion=champion)
    answer = (await client.post("/predict", json={"model": "labelled", "inputs": [ROW]})).json()
    response = await client.post(
        "/feedback", json={"model": "labelled", "request_id": answer["request_id"], "label": True}
    )
    assert response.status_code == 202, response.text
    names = [span.name for span in spans.get_finished_spans() if span.kind == trace.SpanKind.SERVER]
    assert names == ["POST /predict", "POST /feedback"]


async def test_a_flush_links_to_at_most_the_bound_of_request_spans_the_newest_kept(
    spans: InMemorySpanExporter,
) -> None:
    published: list[PredictionLogged] = []

    async def publish(event: PredictionLogged) -> None:
        published.append(event)

    log = PredictionLog(publish, batch_size=100, buffer_limit=1000, registry=CollectorRegistry())
    parents = [f"00-{index + 1:032x}-{index + 1:016x}-01" for index in range(MAX_LINKS + 8)]
    for index, traceparent in enumerate(parents):
        log.append(
            "bounded",
            PredictionRecord(
                request_id=f"r-{index}",
                version="1",
                route="champion",
                features={"x": 1.0},
                latency_ms=0.1,
                predicted_at=datetime.now(UTC),
                traceparent=traceparent,
            ),
        )
    assert await log.flush() == MAX_LINKS + 8
    [flush] = [span for span in spans.get_finished_spans() if span.name == "prediction-log flush"]
    assert [link.context.trace_id for link in flush.links] == list(range(9, MAX_LINKS + 9))
    assert flush.attributes is not None
    assert flush.attributes["modelfleet.records"] == MAX_LINKS + 8
    assert [r.traceparent for r in published[0].predictions] == parents, "every record keeps its own"
