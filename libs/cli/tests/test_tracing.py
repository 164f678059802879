"""A CLI command is a span, and the events it publishes carry its context to the fleet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from faststream.kafka import KafkaMessage, TestKafkaBroker
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from modelfleet_cli import main
from modelfleet_cli.publishing import cli_broker
from modelfleet_cli.tracing import trace_command
from modelfleet_common.kafka import EventPublisher
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import ServiceSettings
from modelfleet_common.telemetry import current_traceparent, export_to, span_context_of, tracer
from modelfleet_contracts import RetrainRequested
from modelfleet_contracts.topics import RETRAIN_REQUESTS


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


def test_a_command_runs_in_its_own_span_which_ends_with_it(spans: InMemorySpanExporter) -> None:
    seen: list[str | None] = []
    app = typer.Typer()
    app.callback()(trace_command)

    @app.command()
    def retrain(model: str) -> None:
        seen.append(current_traceparent())

    @app.command()
    def status() -> None:
        pass

    result = CliRunner().invoke(app, ["retrain", "churn-se"])
    assert result.exit_code == 0, result.output
    [span] = spans.get_finished_spans()
    assert span.name == "modelfleet retrain"
    assert span.parent is None
    context = span_context_of(seen[0])
    assert context is not None
    assert (context.trace_id, context.span_id) == (span.context.trace_id, span.context.span_id)
    assert current_traceparent() is None, "the span ended with the command"


async def test_an_event_the_cli_publishes_carries_the_current_spans_trace() -> None:
    settings = ServiceSettings()
    broker = cli_broker(settings)
    namer = TopicNamer(settings.topic_prefix)
    headers: list[dict[str, str]] = []

    @broker.subscriber(namer.topic(RETRAIN_REQUESTS))  # type: ignore[untyped-decorator]
    async def capture(event: RetrainRequested, message: KafkaMessage) -> None:
        headers.append(dict(message.headers))

    publish = EventPublisher(broker, namer, [RETRAIN_REQUESTS])
    async with TestKafkaBroker(broker):
        with tracer().start_as_current_span("modelfleet retrain") as command:
            await publish(RetrainRequested(producer="cli:test", model="churn-se", reason="manual"))
    [sent] = headers
    context = span_context_of(sent["traceparent"])
    assert context is not None
    assert context.trace_id == command.get_span_context().trace_id
    assert trace.format_trace_id(context.trace_id) in sent["traceparent"]


def test_modelfleet_retrain_publishes_its_request_inside_the_commands_span(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str | None]] = []

    async def publish_events(settings: ServiceSettings, events: list[RetrainRequested]) -> None:
        sent.extend((event.event_type, current_traceparent()) for event in events)

    monkeypatch.setattr(main, "publish_events", publish_events)
    result = CliRunner().invoke(main.app, ["retrain", "churn-se", "--note", "traced"])
    assert result.exit_code == 0, result.output
    [(event_type, traceparent)] = sent
    [command] = [span for span in spans.get_finished_spans() if span.name == "modelfleet retrain"]
    context = span_context_of(traceparent)
    assert event_type == "model.retrain.requested"
    assert context is not None
    assert (context.trace_id, context.span_id) == (command.context.trace_id, command.context.span_id)
