"""The deployer app consumes its topics through the fleet's consumer policy and publishes decisions."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import DeploymentChanged, ModelPromoted, ModelRegistered, RollbackRequested
from modelfleet_contracts.topics import DEPLOYMENTS, MODEL_PROMOTIONS, MODEL_REGISTRATIONS, ROLLBACK_REQUESTS
from modelfleet_deployer import app as deployer_app
from modelfleet_deployer.app import service

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(deployer_app.settings, "state_dir", tmp_path)
    monkeypatch.setattr(deployer_app.settings, "policy_dir", POLICY_DIR)
    deployer_app.dependencies.cache_clear()
    yield
    deployer_app.dependencies.cache_clear()


@pytest.mark.usefixtures("isolated_state")
async def test_a_low_risk_first_version_is_handled_counted_and_published_as_champion() -> None:
    event = ModelFactory.create_factory(ModelRegistered).build(
        model="pump-7", passed_evaluation=True, lineage={"risk_class": "low"}
    )
    tables: list[DeploymentChanged] = []
    promotions: list[ModelPromoted] = []

    @service.broker.subscriber(service.namer.topic(DEPLOYMENTS))  # type: ignore[untyped-decorator]
    async def capture_table(table: DeploymentChanged) -> None:
        tables.append(table)

    @service.broker.subscriber(service.namer.topic(MODEL_PROMOTIONS))  # type: ignore[untyped-decorator]
    async def capture_promotion(promotion: ModelPromoted) -> None:
        promotions.append(promotion)

    topic = service.namer.topic(MODEL_REGISTRATIONS)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))

    assert service.metrics.events_handled.labels(topic, event.event_type)._value.get() == 1
    [table] = tables
    [promotion] = promotions
    assert table.champion is not None
    assert (table.model, table.champion.version) == ("pump-7", event.version)
    assert (promotion.version, promotion.causation_id) == (event.version, event.event_id)


@pytest.mark.usefixtures("isolated_state")
async def test_a_rollback_of_a_model_that_never_served_is_dead_lettered_with_the_reason() -> None:
    event = ModelFactory.create_factory(RollbackRequested).build()
    topic = service.namer.topic(ROLLBACK_REQUESTS)
    before = service.metrics.dead_letters.labels(topic, "RolloutRefused")._value.get()
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    assert service.metrics.dead_letters.labels(topic, "RolloutRefused")._value.get() == before + 1


def test_the_startup_hook_refuses_an_invalid_policy_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deployer_app.settings, "state_dir", tmp_path)
    monkeypatch.setattr(deployer_app.settings, "policy_dir", tmp_path / "missing")
    deployer_app.dependencies.cache_clear()
    try:
        with pytest.raises(Exception, match="set FLEET_POLICY_DIR"):
            deployer_app.dependencies()
    finally:
        deployer_app.dependencies.cache_clear()
