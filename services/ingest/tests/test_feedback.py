"""ingest joins served predictions with their labels and appends them to the model's dataset as
`feedback` versions; rows that break the schema are quarantined, never dropped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pydantic import JsonValue

from modelfleet_contracts import (
    ColumnSpec,
    DataBatchSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
    GroundTruthObserved,
    ModelSpec,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PredictionLogged,
    PredictionRecord,
)
from modelfleet_contracts.data import DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import Route
from modelfleet_contracts.specs import DatasetBinding, ModelMetadata, ModelSpecBody, PipelineRef
from modelfleet_ingest.feedback import FeedbackBinding
from modelfleet_ingest.feedback_state import SqlFeedbackState, WaitingPrediction
from modelfleet_ingest.handlers import (
    FeedbackPolicy,
    IngestDeps,
    ingest_batch,
    materialize_feedback,
    note_model_spec,
    record_ground_truth,
    record_predictions,
)
from modelfleet_ingest.validation import OUT_OF_RANGE, UNEXPECTED_COLUMN, UNKNOWN_CATEGORY

from .conftest import Engines

Declare = Callable[..., Awaitable[None]]
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MODEL = "failures-p1"


@pytest.fixture
def plants() -> DatasetSchema:
    """Machines of several plants; model `failures-p1` is trained on plant p1 only."""
    return DatasetSchema(
        columns=[
            ColumnSpec(name="plant", type="string"),
            ColumnSpec(name="machine", type="string", categories=["m1", "m2", "m3"]),
            ColumnSpec(name="temperature", type="float", min=-50, max=150),
            ColumnSpec(name="failed", type="bool"),
        ]
    )


@pytest.fixture
def feedback_deps(deps: IngestDeps) -> IngestDeps:
    deps.clock = lambda: NOW
    return deps


def model_spec(
    model: str = MODEL, dataset: str = "plants", where: dict[str, str | int | float | bool] | None = None
) -> ModelSpecSubmitted:
    spec = ModelSpec(
        metadata=ModelMetadata(name=model, owner="team@example.com", risk_class="low"),
        spec=ModelSpecBody(
            dataset=DatasetBinding(name=dataset, where={"plant": "p1"} if where is None else where),
            features=["machine", "temperature"],
            target="failed",
            pipeline=PipelineRef(template="tabular-classifier", version="1"),
        ),
    )
    return ModelSpecSubmitted(producer="test", model=model, revision=f"rev-{model}", spec=spec)


def prediction(
    request_id: str,
    features: dict[str, JsonValue] | None = None,
    *,
    route: Route = "champion",
    version: str = "1",
    error: str | None = None,
    predicted_at: datetime = NOW - timedelta(minutes=5),
) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        version=version,
        route=route,
        features={"machine": "m1", "temperature": 70.5} if features is None else features,
        prediction=None if error else False,
        latency_ms=1.0,
        error=error,
        predicted_at=predicted_at,
    )


def logged(*records: PredictionRecord, model: str = MODEL) -> PredictionLogged:
    return PredictionLogged(producer="serving", model=model, predictions=list(records))


def label(
    request_id: str, value: JsonValue = True, *, model: str = MODEL, at: datetime = NOW
) -> GroundTruthObserved:
    return GroundTruthObserved(
        producer="labels", model=model, request_id=request_id, label=value, occurred_at=at
    )


def versions(published: list[Event]) -> list[DatasetVersionCreated]:
    return [event for event in published if isinstance(event, DatasetVersionCreated)]


def rejections(published: list[Event]) -> list[DatasetVersionRejected]:
    return [event for event in published if isinstance(event, DatasetVersionRejected)]


def rows_of(version: DatasetVersionCreated) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = pq.read_table(version.uri).to_pydict()
    return rows


@pytest.fixture
async def plants_with_a_batch(
    deps: IngestDeps, declare: Declare, plants: DatasetSchema, uploads: Path
) -> None:
    """Dataset `plants` declared, with one row from a batch as its latest version."""
    await declare(plants, dataset="plants")
    batch = uploads / "plants.csv"
    batch.write_text("plant,machine,temperature,failed\np2,m2,20.0,false\n")
    await ingest_batch(DataBatchSubmitted(producer="test", dataset="plants", uri=str(batch)), deps)


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_a_labelled_prediction_is_appended_to_the_latest_version_as_feedback(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    [batch_version] = versions(published)
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(
        logged(prediction("r1"), prediction("r2", {"machine": "m3", "temperature": 99})), feedback_deps
    )
    await record_ground_truth(label("r1", True), feedback_deps)
    await record_ground_truth(label("r2", False), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    assert (version.origin, version.feedback_rows, version.row_count) == ("feedback", 2, 3)
    assert version.causation_id is None
    assert rows_of(version) == {
        "plant": ["p2", "p1", "p1"],
        "machine": ["m2", "m1", "m3"],
        "temperature": [20.0, 70.5, 99.0],
        "failed": [False, True, False],
    }
    assert pq.read_table(version.source_uri).to_pydict()["machine"] == ["m1", "m3"]
    assert "/feedback/plants/" in version.source_uri
    assert feedback_deps.state.latest_version("plants").version == version.version  # type: ignore[union-attr]
    assert batch_version.version != version.version


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_a_label_that_arrives_before_its_prediction_joins_it(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_ground_truth(label("r1", True), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    assert version.feedback_rows == 1
    assert rows_of(version)["failed"] == [False, True]


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_champion_and_shadow_answers_of_one_request_give_one_row_and_failures_none(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    shadow = prediction("r1", {"machine": "m2", "temperature": 1.0}, route="shadow", version="2")
    champion = prediction("r1", {"machine": "m1", "temperature": 70.5}, route="champion")
    failed = prediction("r2", error="the model cannot use these inputs")
    await record_predictions(logged(shadow, failed), feedback_deps)
    await record_predictions(logged(champion), feedback_deps)
    await record_predictions(logged(shadow), feedback_deps)  # a late shadow does not displace it
    await record_ground_truth(label("r1"), feedback_deps)
    await record_ground_truth(label("r2"), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    assert version.feedback_rows == 1
    assert rows_of(version)["machine"] == ["m2", "m1"]  # the batch row, then the champion's input


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_redelivered_predictions_and_labels_do_not_duplicate_rows(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    predictions, truth = logged(prediction("r1")), label("r1")
    for _ in range(2):
        await record_predictions(predictions, feedback_deps)
        await record_ground_truth(truth, feedback_deps)
    await materialize_feedback(NOW, feedback_deps)
    # Redelivered again after the row became part of a version.
    await record_predictions(predictions, feedback_deps)
    await record_ground_truth(truth, feedback_deps)
    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    assert version.feedback_rows == 1
    assert version.row_count == 2


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_where_values_fill_columns_the_input_lacks_but_do_not_override_it(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(where={"plant": "p1"}), feedback_deps)
    await record_predictions(
        logged(prediction("r1"), prediction("r2", {"machine": "m1", "temperature": 5, "plant": "p9"})),
        feedback_deps,
    )
    await record_ground_truth(label("r1"), feedback_deps)
    await record_ground_truth(label("r2"), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    assert rows_of(version)["plant"] == ["p2", "p1", "p9"]


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_rows_that_break_the_schema_are_quarantined_while_good_rows_become_a_version(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(
        logged(
            prediction("good", {"machine": "m1", "temperature": 70.5, "request_source": "app"}),
            prediction("too-hot", {"machine": "m1", "temperature": 900}),
            prediction("unknown-machine", {"machine": "m7", "temperature": 10}),
        ),
        feedback_deps,
    )
    for request_id in ("good", "too-hot", "unknown-machine"):
        await record_ground_truth(label(request_id), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [_, version] = versions(published)
    [rejection] = rejections(published)
    assert version.feedback_rows == 1
    assert rows_of(version)["temperature"] == [20.0, 70.5]  # undeclared input keys are ignored
    assert rejection.rows_rejected == 2
    assert rejection.source_uri.startswith("feedback://plants/rows-")
    assert sorted(problem.code for problem in rejection.problems) == [OUT_OF_RANGE, UNKNOWN_CATEGORY]
    assert "data row 1" in next(p.message for p in rejection.problems if p.code == OUT_OF_RANGE)
    quarantined = pq.read_table(rejection.quarantine_uri).to_pydict()
    assert quarantined["feedback_request_id"] == ["too-hot", "unknown-machine"]
    assert quarantined["temperature"] == ["900", "10"]
    # Settled: nothing waits any more, so the next flush publishes nothing.
    published.clear()
    await materialize_feedback(NOW, feedback_deps)
    assert published == []


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_a_target_the_dataset_does_not_declare_rejects_the_model_s_rows(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    spec = model_spec()
    body = spec.spec.spec.model_copy(update={"target": "broke_down"})
    await note_model_spec(
        spec.model_copy(update={"spec": spec.spec.model_copy(update={"spec": body})}), feedback_deps
    )
    await record_predictions(logged(prediction("r1")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [rejection] = rejections(published)
    assert versions(published)[1:] == []
    assert [(p.code, p.column) for p in rejection.problems] == [
        (UNEXPECTED_COLUMN, "broke_down"),
        ("null_not_allowed", "failed"),
    ]


async def test_nothing_pending_makes_no_version(
    feedback_deps: IngestDeps, declare: Declare, plants: DatasetSchema, published: list[Event]
) -> None:
    await declare(plants, dataset="plants")
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)  # never labelled

    await materialize_feedback(NOW, feedback_deps)

    assert published == []


async def test_feedback_starts_a_dataset_that_has_no_version_yet(
    feedback_deps: IngestDeps, declare: Declare, plants: DatasetSchema, published: list[Event]
) -> None:
    await declare(plants, dataset="plants")
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [version] = versions(published)
    assert (version.row_count, version.feedback_rows) == (1, 1)


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_rows_of_a_model_whose_spec_is_unknown_wait_until_it_arrives(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await record_predictions(logged(prediction("r1")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)
    await materialize_feedback(NOW, feedback_deps)
    assert len(versions(published)) == 1  # only the batch's

    await note_model_spec(model_spec(), feedback_deps)
    await materialize_feedback(NOW, feedback_deps)

    assert versions(published)[-1].feedback_rows == 1


async def test_rows_of_an_undeclared_dataset_wait_for_its_spec(
    feedback_deps: IngestDeps, declare: Declare, plants: DatasetSchema, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)
    await materialize_feedback(NOW, feedback_deps)
    assert versions(published) == []
    assert rejections(published) == []

    await declare(plants, dataset="plants")
    await materialize_feedback(NOW, feedback_deps)

    [version] = versions(published)
    assert version.feedback_rows == 1


async def test_a_retired_model_s_waiting_predictions_are_forgotten(feedback_deps: IngestDeps) -> None:
    state = feedback_deps.feedback
    assert isinstance(state, SqlFeedbackState)
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)

    await note_model_spec(ModelSpecRetired(producer="test", model=MODEL, reason="replaced"), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)

    assert state.pending() == {}
    assert state.waiting(MODEL) == (0, 1)


async def test_predictions_and_labels_wait_at_most_the_ttl(feedback_deps: IngestDeps) -> None:
    state = feedback_deps.feedback
    assert isinstance(state, SqlFeedbackState)
    feedback_deps.feedback_policy = FeedbackPolicy(ttl_seconds=3600)
    await record_predictions(
        logged(prediction("old", predicted_at=NOW - timedelta(minutes=50))), feedback_deps
    )
    await record_predictions(
        logged(prediction("new", predicted_at=NOW - timedelta(minutes=5))), feedback_deps
    )
    await record_ground_truth(label("other", at=NOW - timedelta(minutes=50)), feedback_deps)
    await record_predictions(
        logged(prediction("ancient", predicted_at=NOW - timedelta(hours=2))), feedback_deps
    )
    assert state.waiting(MODEL) == (2, 1)

    await materialize_feedback(NOW + timedelta(minutes=20), feedback_deps)

    assert state.waiting(MODEL) == (1, 0)
    dropped = feedback_deps.feedback_metrics.dropped
    assert dropped.labels("prediction", "expired")._value.get() == 2
    assert dropped.labels("label", "expired")._value.get() == 1


async def test_the_oldest_waiting_predictions_are_dropped_beyond_the_bound(
    feedback_deps: IngestDeps, declare: Declare, plants: DatasetSchema, published: list[Event]
) -> None:
    feedback_deps.feedback_policy = FeedbackPolicy(max_waiting_per_model=2)
    await declare(plants, dataset="plants")
    await note_model_spec(model_spec(), feedback_deps)
    records = [
        prediction(f"r{minute}", predicted_at=NOW - timedelta(minutes=10 - minute)) for minute in range(3)
    ]
    await record_predictions(logged(*records), feedback_deps)
    for request_id in ("r0", "r1", "r2"):
        await record_ground_truth(label(request_id), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [version] = versions(published)
    assert version.feedback_rows == 2
    assert feedback_deps.feedback_metrics.dropped.labels("prediction", "bound")._value.get() == 1


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_a_flush_cut_short_after_storing_its_version_is_announced_once_and_not_appended_twice(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)
    failing = True

    async def publish_fails_once(event: Event) -> None:
        nonlocal failing
        if failing and isinstance(event, DatasetVersionCreated):
            failing = False
            raise ConnectionError("broker unreachable")
        published.append(event)

    feedback_deps.publish = publish_fails_once
    with pytest.raises(Exception, match="could not be materialized"):
        await materialize_feedback(NOW, feedback_deps)
    # A new row joins before the retry: it waits for the next flush, the claim is replayed as it was.
    await record_predictions(logged(prediction("r2")), feedback_deps)
    await record_ground_truth(label("r2"), feedback_deps)
    await materialize_feedback(NOW, feedback_deps)
    await materialize_feedback(NOW, feedback_deps)

    [_, first, second] = versions(published)
    assert (first.row_count, first.feedback_rows) == (2, 1)
    assert (second.row_count, second.feedback_rows) == (3, 1)


def test_feedback_rows_survive_a_restart(engines: Engines) -> None:
    state = SqlFeedbackState(engines.open())
    state.put_binding(MODEL, FeedbackBinding("plants", "failed", {"plant": "p1"}), "r1", now=0)
    waiting = WaitingPrediction("r1", 0, "1", {"machine": "m1"}, predicted_at=1.0)
    state.add_predictions(MODEL, [waiting], now=1, max_waiting=10)
    engines.opened[0].close()

    reopened = SqlFeedbackState(engines.open())
    arrival = reopened.add_label(MODEL, "r1", True, observed_at=2, now=2, max_waiting=10)
    claim = reopened.claim("plants", now=2)

    assert arrival.joined == 1
    assert claim is not None
    [row] = claim.rows
    assert row.row.values == {"machine": "m1", "failed": True, "plant": "p1"}


@pytest.mark.usefixtures("plants_with_a_batch")
async def test_feedback_onto_a_latest_version_that_no_longer_fits_the_spec_is_quarantined_whole(
    feedback_deps: IngestDeps, declare: Declare, plants: DatasetSchema, published: list[Event]
) -> None:
    narrower = plants.model_copy(
        update={
            "columns": [
                *plants.columns[:3],
                ColumnSpec(name="failed", type="bool"),
                ColumnSpec(name="shift", type="int"),
            ]
        }
    )
    await declare(narrower, dataset="plants", revision="r2")
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(
        logged(prediction("r1", {"machine": "m1", "temperature": 1, "shift": 2})), feedback_deps
    )
    await record_ground_truth(label("r1"), feedback_deps)

    await materialize_feedback(NOW, feedback_deps)

    [rejection] = rejections(published)
    assert len(versions(published)) == 1  # only the batch's
    assert rejection.rows_rejected == 1
    assert {problem.code for problem in rejection.problems} == {"append_base_incompatible"}
