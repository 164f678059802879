"""`fleet_registry_registrations_total{risk_class}`: one per announced registry version."""

from __future__ import annotations

from polyfactory.factories.pydantic_factory import ModelFactory
from prometheus_client import CollectorRegistry

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import ModelEvaluated, ModelPromoted, ModelRegistered, ModelRolledBack
from modelfleet_contracts.envelope import Event
from modelfleet_registry.handlers import RegistryDeps, register_model
from modelfleet_registry.metrics import RegistryMetrics


class Registrations:
    """A registrar numbering versions 1, 2, ... and carrying the evaluation's lineage."""

    def __init__(self) -> None:
        self.versions = 0

    def register(self, event: ModelEvaluated) -> ModelRegistered:
        self.versions += 1
        return ModelFactory.create_factory(ModelRegistered).build(
            model=event.model, version=str(self.versions), lineage=event.lineage
        )


class NoAliases:
    def promote(self, event: ModelPromoted) -> None:
        raise AssertionError("not moved in this test")

    def roll_back(self, event: ModelRolledBack) -> None:
        raise AssertionError("not moved in this test")


async def publish(event: Event) -> None:
    del event


async def test_each_registration_is_counted_once_by_the_risk_class_of_its_lineage() -> None:
    registry = CollectorRegistry()
    deps = RegistryDeps(
        registrar=Registrations(),
        handled=InMemoryIdempotencyStore(),
        publish=publish,
        aliases=NoAliases(),
        metrics=RegistryMetrics(registry),
    )
    evaluations = ModelFactory.create_factory(ModelEvaluated)
    high = evaluations.build(run_id="r1", lineage={"risk_class": "high"})
    for event in (high, high, evaluations.build(run_id="r2", lineage={})):  # `high` redelivered
        await register_model(event, deps)
    counted = {
        s.labels["risk_class"]: s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "fleet_registry_registrations_total"
    }
    assert counted == {"high": 1.0, "unknown": 1.0}
