"""Ingest's periodic publications start traces of their own, linked to the spans the joins they
summarise were made in (the prediction-log flush, the /feedback request)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelfleet_common.telemetry import export_to, tracer
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.handlers import (
    IngestDeps,
    materialize_feedback,
    note_model_spec,
    publish_labeled,
    record_ground_truth,
    record_predictions,
)

from .test_feedback import (
    NOW,
    feedback_deps,
    label,
    logged,
    model_spec,
    plants,
    plants_with_a_batch,
    prediction,
)

__all__ = ["feedback_deps", "plants", "plants_with_a_batch"]  # fixtures


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_a_feedback_version_links_to_the_spans_its_rows_were_joined_in(
    feedback_deps: IngestDeps, spans: InMemorySpanExporter
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    with tracer().start_as_current_span("process prediction-logs"):
        await record_predictions(logged(prediction("r1"), prediction("r2")), feedback_deps)
    joined_in = []
    for request in ("r1", "r2"):
        with tracer().start_as_current_span("process ground-truth") as span:
            await record_ground_truth(label(request), feedback_deps)
        joined_in.append(span.get_span_context().span_id)

    await materialize_feedback(NOW, feedback_deps)

    [version] = [s for s in spans.get_finished_spans() if s.name == "feedback version created"]
    assert version.parent is None
    assert [link.context.span_id for link in version.links] == joined_in


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_joins_published_late_by_the_periodic_publish_link_to_where_they_were_joined(
    feedback_deps: IngestDeps, published: list[Event], spans: InMemorySpanExporter
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)
    deliver = feedback_deps.publish

    async def broker_down(event: Event) -> None:
        raise ConnectionError("broker unreachable")

    feedback_deps.publish = broker_down
    with tracer().start_as_current_span("process ground-truth") as joined:
        await record_ground_truth(label("r1"), feedback_deps)
    feedback_deps.publish = deliver

    assert await publish_labeled(feedback_deps) == 1
    [late] = [s for s in spans.get_finished_spans() if s.name == "predictions labeled"]
    assert late.parent is None
    assert [link.context.span_id for link in late.links] == [joined.get_span_context().span_id]
