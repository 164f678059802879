"""The registry points `champion` where the deployer's promotions and rollbacks say, in MLflow."""

from __future__ import annotations

import pytest

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import ModelPromoted, ModelRolledBack
from modelfleet_registry.aliases import ChampionAliases
from modelfleet_registry.handlers import RegistryDeps, move_champion_on_rollback, move_champion_to_promoted
from modelfleet_registry.mlflow_registry import AliasTargetMissing, MlflowModelRegistry
from modelfleet_registry.registration import Registrar

from .conftest import Lab


def promoted(model: str, version: str, previous: str | None = None) -> ModelPromoted:
    return ModelPromoted(
        producer="deployer",
        model=model,
        version=version,
        previous_version=previous,
        decided_by="deployer",
        reason="canary passed",
    )


def rolled_back(model: str, from_version: str, to_version: str | None) -> ModelRolledBack:
    return ModelRolledBack(
        producer="deployer",
        model=model,
        from_version=from_version,
        to_version=to_version,
        decided_by="deployer",
        reason="error rate 0.2 exceeds the SLO 0.05",
    )


async def _unused_publish(event: object) -> None:
    raise AssertionError("moving an alias publishes nothing")


def deps_for(registrar: Registrar) -> RegistryDeps:
    registry = registrar.registry
    assert isinstance(registry, MlflowModelRegistry)
    return RegistryDeps(registrar, InMemoryIdempotencyStore(), _unused_publish, ChampionAliases(registry))


def aliases(lab: Lab, model: str) -> dict[str, int]:
    return dict(lab.client.get_registered_model(model).aliases)


async def test_a_promotion_moves_champion_and_drops_the_challenger_alias_of_that_version(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registrar.register(lab.evaluated(model_name))
    assert aliases(lab, model_name) == {"challenger": 1}

    await move_champion_to_promoted(promoted(model_name, "1"), deps_for(registrar))
    assert aliases(lab, model_name) == {"champion": 1}


async def test_a_promotion_keeps_a_newer_challenger_and_a_redelivery_changes_nothing(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registrar.register(lab.evaluated(model_name))
    registrar.register(lab.evaluated(model_name))
    deps = deps_for(registrar)
    event = promoted(model_name, "1")

    await move_champion_to_promoted(event, deps)
    await move_champion_to_promoted(event, deps)
    assert aliases(lab, model_name) == {"champion": 1, "challenger": 2}


async def test_a_rollback_points_champion_at_the_version_now_serving(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registrar.register(lab.evaluated(model_name))
    registrar.register(lab.evaluated(model_name))
    deps = deps_for(registrar)
    await move_champion_to_promoted(promoted(model_name, "1"), deps)
    await move_champion_to_promoted(promoted(model_name, "2", previous="1"), deps)
    assert aliases(lab, model_name) == {"champion": 2}

    await move_champion_on_rollback(rolled_back(model_name, "2", "1"), deps)
    assert aliases(lab, model_name) == {"champion": 1}

    await move_champion_on_rollback(rolled_back(model_name, "1", None), deps)
    assert aliases(lab, model_name) == {}


async def test_a_promotion_of_a_version_mlflow_does_not_have_is_a_permanent_error(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registrar.register(lab.evaluated(model_name))
    with pytest.raises(AliasTargetMissing, match=rf"cannot point {model_name}@champion at version 9"):
        await move_champion_to_promoted(promoted(model_name, "9"), deps_for(registrar))
