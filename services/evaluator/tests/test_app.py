"""The evaluator app consumes training outcomes through the fleet's consumer policy and answers them."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import ModelEvaluated, TrainingFinished
from modelfleet_contracts.topics import MODEL_EVALUATIONS, TRAINING_FINISHED
from modelfleet_evaluator import app as evaluator_app
from modelfleet_evaluator.app import service
from modelfleet_evaluator.bootstrap import bootstrap
from modelfleet_evaluator.config import EvaluatorSettings

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(evaluator_app.settings, "state_dir", tmp_path)
    monkeypatch.setattr(evaluator_app.settings, "policy_dir", POLICY_DIR)
    evaluator_app.dependencies.cache_clear()
    yield
    evaluator_app.dependencies.cache_clear()


@pytest.mark.usefixtures("isolated_state")
async def test_a_training_outcome_is_handled_counted_and_answered_with_an_evaluation() -> None:
    # Without spec and holdout the candidate cannot be evaluated: a failed verdict, no MLflow needed.
    event = ModelFactory.create_factory(TrainingFinished).build(spec=None, holdout_uri=None)
    received: list[ModelEvaluated] = []

    @service.broker.subscriber(service.namer.topic(MODEL_EVALUATIONS))  # type: ignore[untyped-decorator]
    async def capture(verdict: ModelEvaluated) -> None:
        received.append(verdict)

    topic = service.namer.topic(TRAINING_FINISHED)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))

    handled = service.metrics.events_handled.labels(topic, event.event_type)._value.get()
    assert handled == 1
    [verdict] = received
    assert (verdict.model, verdict.run_id, verdict.passed) == (event.model, event.run_id, False)
    assert verdict.gates[0].gate == "inputs"
    assert verdict.causation_id == event.event_id


def test_bootstrap_refuses_an_invalid_policy_directory(tmp_path: Path) -> None:
    settings = EvaluatorSettings(state_dir=tmp_path, policy_dir=tmp_path / "missing")
    with pytest.raises(Exception, match="set FLEET_POLICY_DIR"):
        bootstrap(settings, publish=service.publisher(MODEL_EVALUATIONS))


def test_bootstrap_keeps_the_marks_in_the_state_engine_of_the_state_dir(tmp_path: Path) -> None:
    settings = EvaluatorSettings(state_dir=tmp_path, policy_dir=POLICY_DIR)
    deps = bootstrap(settings, publish=service.publisher(MODEL_EVALUATIONS))
    deps.handled.mark("evaluated:m:r1")
    assert (tmp_path / "evaluator-state.sqlite").is_file()
    again = bootstrap(settings, publish=service.publisher(MODEL_EVALUATIONS))
    assert again.handled.seen("evaluated:m:r1")
