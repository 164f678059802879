"""Trace context helpers: links to the traces a span summarises, bounded; loops resumed later;
log records that carry the current trace."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pythonjsonlogger.json import JsonFormatter

from modelfleet_common.logs import _EventContext, event_id
from modelfleet_common.telemetry import (
    MAX_LINKS,
    Evidence,
    continued_span,
    current_traceparent,
    export_to,
    links_to,
    root_span,
    span_context_of,
    tracer,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


def _traceparent(span: trace.Span) -> str:
    context = span.get_span_context()
    ids = f"{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}"
    return f"00-{ids}-{context.trace_flags:02x}"


def test_the_current_traceparent_names_the_current_span_and_is_none_outside_spans(
    spans: InMemorySpanExporter,
) -> None:
    assert current_traceparent() is None
    with tracer().start_as_current_span("request") as span:
        assert current_traceparent() == _traceparent(span)


def test_a_malformed_or_empty_traceparent_names_no_span() -> None:
    assert span_context_of(None) is None
    assert span_context_of("") is None
    assert span_context_of("00-not-a-trace-01") is None
    assert span_context_of(f"00-{'0' * 32}-{'1' * 16}-01") is None


def test_a_root_span_starts_its_own_trace_and_links_to_its_evidence_and_its_trigger(
    spans: InMemorySpanExporter,
) -> None:
    requests = []
    for _ in range(3):
        with tracer().start_as_current_span("request") as request:
            requests.append(_traceparent(request))
    with (
        tracer().start_as_current_span("consume") as trigger,
        root_span("drift detected", evidence=[*requests, requests[0], None]) as drift,
    ):
        pass
    finished = {span.name: span for span in spans.get_finished_spans()}
    detected = finished["drift detected"]
    assert detected.parent is None
    assert detected.context.trace_id != trigger.get_span_context().trace_id
    linked = [(link.context.trace_id, link.context.span_id) for link in detected.links]
    contexts = [span_context_of(traceparent) for traceparent in requests]
    expected = [(context.trace_id, context.span_id) for context in contexts if context is not None]
    assert sorted(linked[:-1]) == sorted(expected)
    assert linked[-1] == (trigger.get_span_context().trace_id, trigger.get_span_context().span_id)
    assert detected.links[-1].attributes == {"modelfleet.link": "trigger"}
    assert drift.get_span_context().trace_id == detected.context.trace_id


def test_links_are_bounded_and_keep_the_newest_evidence() -> None:
    parents = [f"00-{index + 1:032x}-{index + 1:016x}-01" for index in range(MAX_LINKS + 10)]
    links = links_to(parents)
    assert len(links) == MAX_LINKS
    assert [link.context.trace_id for link in links] == list(range(11, MAX_LINKS + 11))


def test_evidence_keeps_the_newest_distinct_traceparents_and_counts_them_all() -> None:
    evidence = Evidence(limit=2)
    evidence.extend(["a", "b", None, "a", "c"])
    assert list(evidence) == ["a", "c"]
    assert evidence.count == 4
    newer = Evidence(limit=2)
    newer.add("d")
    evidence.merge(newer)
    assert list(evidence) == ["c", "d"]
    assert evidence.count == 5


def test_a_continued_span_resumes_the_stored_trace_and_links_to_what_triggered_it(
    spans: InMemorySpanExporter,
) -> None:
    with tracer().start_as_current_span("registered") as registered:
        stored = _traceparent(registered)
    with tracer().start_as_current_span("health report") as report:
        with continued_span("rollout step", stored):
            pass
        with continued_span("no stored trace", None):
            pass
    finished = {span.name: span for span in spans.get_finished_spans()}
    step = finished["rollout step"]
    assert step.context.trace_id == registered.get_span_context().trace_id
    assert step.parent is not None
    assert step.parent.span_id == registered.get_span_context().span_id
    assert [link.context.span_id for link in step.links] == [report.get_span_context().span_id]
    plain = finished["no stored trace"]
    assert plain.parent is not None
    assert plain.parent.span_id == report.get_span_context().span_id


def test_log_records_carry_the_trace_and_span_id_only_while_a_span_is_current(
    spans: InMemorySpanExporter,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_EventContext("tests"))
    handler.setFormatter(JsonFormatter("%(message)s"))
    logger = logging.getLogger("modelfleet.tests.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with tracer().start_as_current_span("work") as span:
            logger.info("inside")
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert "span_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
    assert inside["service"] == "tests"


def test_a_record_about_another_event_keeps_its_id_and_names_the_event_in_hand_beside_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_EventContext("tests"))
    handler.setFormatter(JsonFormatter("%(message)s %(event_id)s"))
    logger = logging.getLogger("modelfleet.tests.events")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = event_id.set("consumed-1")
    try:
        logger.info("handling")
        logger.info("verdict published", extra={"event_id": "published-2"})
    finally:
        event_id.reset(token)
        logger.removeHandler(handler)
    handling, published = (json.loads(line) for line in stream.getvalue().splitlines())
    assert handling["event_id"] == "consumed-1"
    assert "handled_event_id" not in handling
    assert published["event_id"] == "published-2"
    assert published["handled_event_id"] == "consumed-1"


def test_an_http_call_made_with_requests_is_a_client_span_whose_context_goes_along(
    spans: InMemorySpanExporter,
) -> None:
    received: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.headers.get("traceparent"))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tracer().start_as_current_span("register version") as parent:
            requests.get(
                f"http://127.0.0.1:{server.server_port}/api/2.0/mlflow/registered-models/get", timeout=5
            )
    finally:
        server.shutdown()
    [client] = [span for span in spans.get_finished_spans() if span.kind == trace.SpanKind.CLIENT]
    assert client.parent is not None
    assert client.parent.span_id == parent.get_span_context().span_id
    context = span_context_of(received[0])
    assert context is not None
    assert (context.trace_id, context.span_id) == (client.context.trace_id, client.context.span_id)
