"""The prediction↔label join exists once: ingest publishes each join it makes (every version that
answered or mirrored the request, with the label) as `PredictionsLabeled` for the monitor, however
late the label; publish, then mark, under an event id derived from the join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelfleet_contracts import PredictionsLabeled
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.feedback_state import SqlFeedbackState
from modelfleet_ingest.handlers import (
    IngestDeps,
    materialize_feedback,
    note_model_spec,
    publish_labeled,
    record_ground_truth,
    record_predictions,
)
from modelfleet_ingest.store import DatasetStore

from .conftest import Engines, Published, deps_on
from .test_feedback import NOW, label, logged, model_spec, plants, plants_with_a_batch, prediction, versions

__all__ = ["plants", "plants_with_a_batch"]  # fixtures shared with the feedback tests

pytestmark = pytest.mark.usefixtures("plants_with_a_batch")


def joins(published: list[Event]) -> list[PredictionsLabeled]:
    return [event for event in published if isinstance(event, PredictionsLabeled)]


@pytest.fixture
def feedback_deps(deps: IngestDeps) -> IngestDeps:
    deps.clock = lambda: NOW
    return deps


async def test_a_label_hours_late_is_published_joined_with_every_version_that_answered(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    asked = NOW - timedelta(hours=5)
    await note_model_spec(model_spec(), feedback_deps)
    champion = prediction("r1", route="champion", version="1", predicted_at=asked)
    shadow = prediction("r1", route="shadow", version="2", predicted_at=asked)
    failed = prediction("r2", error="the model cannot use these inputs", predicted_at=asked)
    await record_predictions(logged(champion, shadow, failed), feedback_deps)
    assert joins(published) == []

    await record_ground_truth(label("r1", True), feedback_deps)  # five hours later
    await record_ground_truth(label("r2", True), feedback_deps)  # its prediction failed: no join

    [joined] = joins(published)
    assert joined.model == "failures-p1"
    assert joined.causation_id is None  # a root event: it joins two events of different topics
    assert [(entry.version, entry.route, entry.prediction, entry.label) for entry in joined.labeled] == [
        ("1", "champion", False, True),
        ("2", "shadow", False, True),
    ]
    assert {entry.predicted_at for entry in joined.labeled} == {asked}
    assert {entry.observed_at for entry in joined.labeled} == {NOW}
    # The dataset's feedback version is what it was: one row per request, the champion's.
    await materialize_feedback(NOW, feedback_deps)
    [_, version] = versions(published)
    assert version.feedback_rows == 1
    assert joins(published) == [joined]


async def test_redelivered_halves_of_a_published_join_publish_nothing_again(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    predictions, truth = logged(prediction("r1")), label("r1")
    for _ in range(2):
        await record_predictions(predictions, feedback_deps)
        await record_ground_truth(truth, feedback_deps)
    await materialize_feedback(NOW, feedback_deps)
    await record_ground_truth(truth, feedback_deps)
    assert await publish_labeled(feedback_deps) == 0

    assert len(joins(published)) == 1


async def test_a_join_whose_publish_fails_waits_and_is_published_by_the_periodic_publish(
    feedback_deps: IngestDeps, published: list[Event]
) -> None:
    async def broker_down(event: Event) -> None:
        raise ConnectionError("broker unreachable")

    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1")), feedback_deps)
    feedback_deps.publish = broker_down
    await record_ground_truth(label("r1"), feedback_deps)  # joined; its publish fails, it does not raise
    with pytest.raises(ConnectionError):
        await publish_labeled(feedback_deps)
    state = feedback_deps.feedback
    assert len(state.unpublished()) == 1

    feedback_deps.publish = published
    assert await publish_labeled(feedback_deps) == 1
    assert state.unpublished() == []
    assert len(joins(published)) == 1


async def test_a_crash_between_publish_and_mark_republishes_the_same_event(
    feedback_deps: IngestDeps, published: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = feedback_deps.feedback
    assert isinstance(state, SqlFeedbackState)

    def crash(outbox_id: int) -> None:
        raise RuntimeError("killed between publish and mark")

    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1"), prediction("r2")), feedback_deps)
    with monkeypatch.context() as patched:
        patched.setattr(state, "mark_published", crash)
        await record_ground_truth(label("r1"), feedback_deps)  # published, not marked
        with pytest.raises(RuntimeError):
            await publish_labeled(feedback_deps)  # published again, not marked
    assert await publish_labeled(feedback_deps) == 1  # the next cycle (or replica) publishes and marks
    assert await publish_labeled(feedback_deps) == 0

    first, *again = joins(published)
    assert len(again) == 2
    # The same event each time: the monitor counts it once, by its id.
    assert {event.event_id for event in again} == {first.event_id}
    assert all(event.model_dump() == first.model_dump() for event in again)


async def test_event_ids_are_derived_from_the_join(feedback_deps: IngestDeps, published: list[Event]) -> None:
    await note_model_spec(model_spec(), feedback_deps)
    await record_predictions(logged(prediction("r1"), prediction("r2")), feedback_deps)
    await record_ground_truth(label("r1"), feedback_deps)
    await record_ground_truth(label("r2"), feedback_deps)

    first, second = joins(published)
    assert first.event_id != second.event_id
    assert first.occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_a_join_another_replica_could_not_publish_is_published_by_the_next_one(
    engines: Engines, tmp_path: Path
) -> None:
    async def broker_down(event: Event) -> None:
        raise ConnectionError("broker unreachable")

    store = DatasetStore(str(tmp_path / "store"))
    killed, survivor = Published(), Published()
    first = deps_on(engines.open(), store, killed)
    second = deps_on(engines.open(), store, survivor)
    first.clock = second.clock = lambda: NOW
    await note_model_spec(model_spec(), first)
    await record_predictions(logged(prediction("r1"), prediction("r2")), first)
    first.publish = broker_down
    await record_ground_truth(label("r1"), first)
    await record_ground_truth(label("r2"), first)

    assert await publish_labeled(second) == 2
    assert await publish_labeled(first) == 0
    assert [entry.request_id for event in joins(survivor) for entry in event.labeled] == ["r1", "r2"]
