"""The registry app consumes its topics through the fleet's consumer policy."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from polyfactory.factories.pydantic_factory import ModelFactory

from modelfleet_common.kafka import event_headers
from modelfleet_common.signing import TrustedKeys
from modelfleet_contracts import ModelEvaluated, ModelPromoted
from modelfleet_contracts.topics import MODEL_EVALUATIONS, MODEL_PROMOTIONS
from modelfleet_registry import app as registry_app
from modelfleet_registry.app import service
from modelfleet_registry.registration import Registrar

from .conftest import Lab


@pytest.fixture
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(registry_app.settings, "state_dir", tmp_path)
    monkeypatch.setattr(registry_app.settings, "signing_key_file", None)
    registry_app.dependencies.cache_clear()
    yield tmp_path
    registry_app.dependencies.cache_clear()


async def test_an_evaluation_without_a_digest_is_dead_lettered_with_the_reason(isolated_state: Path) -> None:
    event = ModelFactory.create_factory(ModelEvaluated).build(artifact_digest=None)
    topic = service.namer.topic(MODEL_EVALUATIONS)
    before = service.metrics.dead_letters.labels(topic, "PermanentError")._value.get()

    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))

    assert service.metrics.dead_letters.labels(topic, "PermanentError")._value.get() == before + 1
    assert service.metrics.events_handled.labels(topic, event.event_type)._value.get() == 0


def test_the_signing_key_defaults_to_the_state_directory(isolated_state: Path) -> None:
    registrar = registry_app.dependencies().registrar
    assert isinstance(registrar, Registrar)
    assert (isolated_state / "signing" / "ed25519.pem").is_file()
    public = TrustedKeys.from_file(isolated_state / "signing" / "ed25519.pem.pub")
    assert public.key_ids == [registrar.signer.key_id]


async def test_a_promotion_on_its_topic_moves_the_champion_alias_in_mlflow(
    isolated_state: Path, lab: Lab, registrar: Registrar, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_app.settings, "mlflow_tracking_uri", lab.uri)
    registrar.register(lab.evaluated(model_name))
    event = ModelPromoted(
        producer="deployer",
        model=model_name,
        version="1",
        decided_by="deployer",
        reason="first passing version",
    )
    topic = service.namer.topic(MODEL_PROMOTIONS)
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(event.model_dump_json().encode(), topic=topic, headers=event_headers(event))
    assert service.metrics.events_handled.labels(topic, event.event_type)._value.get() == 1
    assert lab.client.get_registered_model(model_name).aliases == {"champion": 1}
