"""The deployer app consumes its topics through the fleet's consumer policy and publishes decisions."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_contracts import (
    DeploymentChanged,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    ModelSpec,
    ModelSpecSubmitted,
    RollbackRequested,
)
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.topics import (
    DEPLOYMENTS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    ROLLBACK_REQUESTS,
    Topic,
)
from modelfleet_deployer import app as deployer_app
from modelfleet_deployer.app import service
from modelfleet_deployer.handlers import SPECS, load_rollout

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


def target(version: str) -> RouteTarget:
    return RouteTarget(
        version=version,
        model_uri=f"models:/pump-7/{version}",
        digest="a" * 64,
        signature="c2lnbmF0dXJl",
        signing_key_id="0123456789abcdef",
    )


@pytest.mark.usefixtures("isolated_state")
async def test_the_startup_hook_rebuilds_an_empty_store_from_the_compacted_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = DeploymentChanged(
        producer="deployer",
        model="pump-7",
        revision=5,
        stage="promoted",
        champion=target("2"),
        last_known_good=target("1"),
        passing_versions=[target("1"), target("2")],
    )
    document = ModelSpec.model_validate(
        {
            "metadata": {"name": "pump-7", "owner": "ops@example.com", "risk_class": "low"},
            "spec": {
                "dataset": {"name": "pumps"},
                "features": ["pressure"],
                "target": "failed",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
            },
        }
    )
    spec = ModelSpecSubmitted(producer="cli", model="pump-7", revision="r1", spec=document)
    topics = {DEPLOYMENTS.name: [table], MODEL_SPECS.name: [spec]}

    async def read_topic_snapshot(topic: Topic) -> list[bytes]:
        return [event.model_dump_json().encode() for event in topics.get(topic.name, [])]

    monkeypatch.setattr(deployer_app, "read_topic_snapshot", read_topic_snapshot)
    await deployer_app.build_dependencies()

    state = deployer_app.dependencies().state
    assert load_rollout(state, "pump-7").durable[:3] == ("promoted", target("2"), target("1"))
    assert state.get(SPECS, "pump-7")["risk_class"] == "low"

    rollbacks: list[ModelRolledBack] = []

    @service.broker.subscriber(service.namer.topic(MODEL_ROLLBACKS))  # type: ignore[untyped-decorator]
    async def capture_rollback(rollback: ModelRolledBack) -> None:
        rollbacks.append(rollback)

    request = RollbackRequested(producer="cli:oncall", model="pump-7", reason="pager")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(
            request.model_dump_json().encode(),
            topic=service.namer.topic(ROLLBACK_REQUESTS),
            headers=event_headers(request),
        )
    [rollback] = rollbacks
    assert (rollback.from_version, rollback.to_version) == ("2", "1")
