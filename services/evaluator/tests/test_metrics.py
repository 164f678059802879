"""`fleet_evaluator_evaluations_total{risk_class,verdict}`: one per published verdict."""

from __future__ import annotations

from polyfactory.factories.pydantic_factory import ModelFactory
from prometheus_client import CollectorRegistry

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import ModelEvaluated, TrainingFinished
from modelfleet_contracts.envelope import Event
from modelfleet_evaluator.handlers import EvaluatorDeps, evaluate_candidate
from modelfleet_evaluator.metrics import EvaluatorMetrics


class Verdicts:
    """An evaluator that passes the runs it is told to, and records the lineage's risk class."""

    def __init__(self, passing: set[str], lineage: dict[str, str]) -> None:
        self.passing = passing
        self.lineage = lineage

    def evaluate(self, event: TrainingFinished) -> ModelEvaluated:
        return ModelFactory.create_factory(ModelEvaluated).build(
            model=event.model, run_id=event.run_id, passed=event.run_id in self.passing, lineage=self.lineage
        )


async def publish(event: Event) -> None:
    del event


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["risk_class"], s.labels["verdict"]): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "fleet_evaluator_evaluations_total"
    }


async def test_each_candidate_is_counted_once_by_risk_class_and_verdict() -> None:
    registry = CollectorRegistry()
    deps = EvaluatorDeps(
        evaluator=Verdicts({"good"}, {"risk_class": "critical"}),
        handled=InMemoryIdempotencyStore(),
        publish=publish,
        metrics=EvaluatorMetrics(registry),
    )
    trainings = ModelFactory.create_factory(TrainingFinished)
    good, bad = trainings.build(run_id="good"), trainings.build(run_id="bad")
    for event in (good, bad, good):  # the last one redelivered
        await evaluate_candidate(event, deps)
    deps.evaluator = Verdicts(set(), {})
    await evaluate_candidate(trainings.build(run_id="no-spec"), deps)
    assert counted(registry) == {
        ("critical", "passed"): 1.0,
        ("critical", "failed"): 1.0,
        ("unknown", "failed"): 1.0,
    }
