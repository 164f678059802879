"""The trainer app consumes its topics through the fleet's consumer policy and answers them."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import RetrainRequested, TrainingFailed
from modelfleet_contracts.topics import RETRAIN_REQUESTS, TRAINING_FAILED
from modelfleet_trainer import app as trainer_app
from modelfleet_trainer.app import service


@pytest.fixture
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(trainer_app.settings, "state_dir", tmp_path / "state")
    monkeypatch.setattr(trainer_app.settings, "training_runner", "in_process")
    monkeypatch.setattr(trainer_app.settings, "mlflow_tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    trainer_app.dependencies.cache_clear()
    yield
    trainer_app.dependencies.cache_clear()


@pytest.mark.usefixtures("isolated_state")
async def test_a_valid_event_on_a_subscribed_topic_is_handled_counted_and_answered() -> None:
    # The trainer has no spec of this model: a permanent failure, without Ray or MLflow.
    event = ModelFactory.create_factory(RetrainRequested).build()
    received: list[TrainingFailed] = []

    @service.broker.subscriber(service.namer.topic(TRAINING_FAILED))  # type: ignore[untyped-decorator]
    async def capture(failed: TrainingFailed) -> None:
        received.append(failed)

    topic = service.namer.topic(RETRAIN_REQUESTS)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))

    handled = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    assert handled == 1
    [failed] = received
    assert (failed.model, failed.failure, failed.error_type) == (event.model, "permanent", "UnknownModel")
    assert failed.causation_id == event.event_id
    assert (trainer_app.settings.state_dir / "trainer-state.sqlite").exists()
