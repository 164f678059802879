"""registry's wiring: builds its ports (MLflow registry, signing key, state, Kafka publisher) once.

    deps = bootstrap(settings, publish=publish, metrics=metrics)         # the service
    deps = bootstrap(settings, publish=fake, registry=FakeRegistry(), handled=InMemoryIdempotencyStore())

Nothing here runs at import: the app calls it from its startup hook, so an unreadable signing
key or MLflow password, or an unreachable state engine, stops the service naming the problem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from modelfleet_common.idempotency import IdempotencyStore, durable_idempotency
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.state import KeyLocks, open_service_state
from modelfleet_contracts.envelope import Event

from .aliases import AliasRegistry, ChampionAliases
from .config import RegistrySettings
from .handlers import RegistryDeps
from .keys import load_signer
from .metrics import RegistryMetrics
from .mlflow_registry import MlflowModelRegistry
from .registration import ModelRegistry, Registrar


class FleetRegistry(ModelRegistry, AliasRegistry, Protocol):
    """What the registry service needs of a model registry: versions and aliases (MLflow's)."""


def bootstrap(
    settings: RegistrySettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    registry: FleetRegistry | None = None,
    handled: IdempotencyStore | None = None,
    metrics: RegistryMetrics | None = None,
) -> RegistryDeps:
    """The handlers' dependencies; any port given replaces the real one."""
    if registry is None:
        # Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
        use_mlflow_credentials(settings)
        registry = MlflowModelRegistry(
            settings.mlflow_tracking_uri,
            attempts=settings.mlflow_retry_attempts,
            backoff_seconds=settings.mlflow_retry_backoff_seconds,
            ready_timeout_seconds=settings.version_ready_timeout_seconds,
        )
    locks = KeyLocks()
    if handled is None:
        engine = open_service_state(settings, "registry")
        locks = engine.locks
        handled = durable_idempotency(engine, settings.state)
    return RegistryDeps(
        registrar=Registrar(
            registry=registry,
            signer=load_signer(settings.signing_key_path),
            topic_prefix=settings.topic_prefix,
        ),
        handled=handled,
        publish=publish,
        aliases=ChampionAliases(registry),
        locks=locks,
        metrics=metrics,
    )
