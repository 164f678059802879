"""A training's heavy part (in a Ray task or a thread) is a child span of the training's trace."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelfleet_common.telemetry import export_to, tracer
from modelfleet_contracts import ModelSpec, ModelSpecSubmitted, TrainingFinished
from modelfleet_trainer.handlers import apply_model_spec, record_dataset_version
from modelfleet_trainer.runner import _tracing_environment

from .conftest import StoredVersion, TrackingServer
from .test_tracking import in_process_deps


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = export_to(exporter, batched=False)
    yield exporter
    processor.shutdown()


async def test_the_training_task_is_a_child_span_of_the_request_that_trained_it(
    mlflow_tracking: TrackingServer,
    store_version: Callable[..., StoredVersion],
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
    spans: InMemorySpanExporter,
) -> None:
    deps = in_process_deps(mlflow_tracking)
    await record_dataset_version(store_version().event, deps)
    with tracer().start_as_current_span("process model-specs") as consumed:
        await apply_model_spec(
            submit(make_spec("traced-fit", template="tabular-regressor", target="fuel")), deps
        )

    finished = deps.coordinator.publish[-1]  # type: ignore[index]
    assert isinstance(finished, TrainingFinished)
    [task] = [span for span in spans.get_finished_spans() if span.name == "training task"]
    assert task.context.trace_id == consumed.get_span_context().trace_id
    assert task.attributes is not None
    assert task.attributes["mlflow.run_id"] == finished.run_id
    assert task.status.status_code != trace.StatusCode.ERROR


def test_ray_workers_get_the_variables_that_say_where_spans_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_OTEL_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("FLEET_KAFKA_SASL_PASSWORD", "not for workers")
    forwarded = _tracing_environment()
    assert forwarded["FLEET_OTEL_EXPORTER"] == "otlp"
    assert forwarded["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert "FLEET_KAFKA_SASL_PASSWORD" not in forwarded
