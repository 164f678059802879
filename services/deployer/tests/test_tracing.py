"""A version's rollout is one trace: decisions made later, on other events, are published in the
trace its registration arrived in, linked to the event that triggered them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelfleet_common.telemetry import export_to, tracer
from modelfleet_contracts import ApprovalRequested, DeploymentChanged, ModelPromoted
from modelfleet_contracts.envelope import Event
from modelfleet_deployer.handlers import ROLLOUT_TRACES, check_approval, remember_model_spec, roll_out_version

from .deployer_builders import MODEL, approval, in_memory_deps, registered, spec


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


class TracedPublisher:
    def __init__(self) -> None:
        self.events: list[tuple[Event, int]] = []

    async def __call__(self, event: Event) -> None:
        self.events.append((event, trace.get_current_span().get_span_context().trace_id))


async def test_an_approved_promotion_is_published_in_the_trace_of_the_registration(
    spans: InMemorySpanExporter,
) -> None:
    deps = in_memory_deps()
    publisher = TracedPublisher()
    deps.publish = publisher
    await remember_model_spec(spec("high"), deps)
    with tracer().start_as_current_span("process model-registrations") as registration:
        await roll_out_version(registered("1"), deps)
    with tracer().start_as_current_span("process approvals-granted") as granted:
        await check_approval(approval("1"), deps)

    loop = registration.get_span_context().trace_id
    traces = {type(event): trace_id for event, trace_id in publisher.events}
    assert traces[ApprovalRequested] == loop
    assert traces[ModelPromoted] == traces[DeploymentChanged] == loop != granted.get_span_context().trace_id
    [decision] = [span for span in spans.get_finished_spans() if span.name == "rollout approval.granted"]
    assert decision.parent is not None
    assert decision.parent.span_id == registration.get_span_context().span_id
    assert [link.context.span_id for link in decision.links] == [granted.get_span_context().span_id]
    assert decision.attributes is not None
    assert "model.promoted" in decision.attributes["modelfleet.published"]  # type: ignore[operator]
    assert decision.attributes["modelfleet.stage"] == "promoted"
    assert deps.state.get(ROLLOUT_TRACES, MODEL)["version"] == "1"


async def test_without_a_remembered_rollout_trace_decisions_stay_in_their_triggers_trace(
    spans: InMemorySpanExporter,
) -> None:
    deps = in_memory_deps()
    publisher = TracedPublisher()
    deps.publish = publisher
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)  # no span current: nothing to remember
    assert deps.state.get(ROLLOUT_TRACES, MODEL) is None
    with tracer().start_as_current_span("process approvals-granted") as granted:
        await check_approval(approval("1"), deps)
    promoted = [trace_id for event, trace_id in publisher.events if isinstance(event, ModelPromoted)]
    assert promoted == [granted.get_span_context().trace_id]
