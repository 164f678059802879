"""`fleet_trainer_trainings_total{reason,outcome}`: every training's published outcome, by its trigger."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from modelfleet_contracts import ModelSpec, ModelSpecSubmitted, RetrainRequested
from modelfleet_trainer.domain import NotEnoughData
from modelfleet_trainer.handlers import TrainerDeps, apply_model_spec, record_dataset_version, retrain_model
from modelfleet_trainer.metrics import TrainerMetrics

from .test_handlers import FakeRunner, make_deps, version


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["reason"], s.labels["outcome"]): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "fleet_trainer_trainings_total"
    }


def with_metrics(runner: FakeRunner) -> tuple[TrainerDeps, CollectorRegistry]:
    registry = CollectorRegistry()
    deps = make_deps(runner, max_attempts=1)
    deps.coordinator.metrics = TrainerMetrics(registry)
    return deps, registry


async def test_trainings_are_counted_once_each_by_trigger_and_outcome(
    make_spec: Callable[..., ModelSpec], submit: Callable[..., ModelSpecSubmitted]
) -> None:
    runner = FakeRunner()
    deps, registry = with_metrics(runner)
    await record_dataset_version(version("v1"), deps)
    submission = submit(make_spec())
    await apply_model_spec(submission, deps)
    await apply_model_spec(submission, deps)  # redelivered: trained once, counted once
    runner.errors.append(NotEnoughData("3 rows"))
    await retrain_model(RetrainRequested(producer="trainer", model="pump-failure", reason="drift"), deps)
    await retrain_model(RetrainRequested(producer="cli:ops", model="ghost", reason="manual"), deps)
    assert counted(registry) == {
        ("spec", "succeeded"): 1.0,
        ("drift", "failed"): 1.0,
        ("manual", "failed"): 1.0,
    }
