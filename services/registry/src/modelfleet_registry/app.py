"""registry: wiring of the broker, subscribers and publishers."""

from functools import cache

from modelfleet_common.idempotency import SqliteIdempotencyStore
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.service import FleetService
from modelfleet_contracts import DeploymentChanged, ModelEvaluated, ModelPromoted, ModelRolledBack, SpecEvent
from modelfleet_contracts.topics import (
    DEPLOYMENTS,
    MODEL_ARCHIVALS,
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
)

from . import handlers
from .aliases import ChampionAliases
from .config import RegistrySettings
from .keys import load_signer
from .mlflow_registry import MlflowModelRegistry
from .registration import Registrar

settings = RegistrySettings()
# Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
use_mlflow_credentials(settings)
service = FleetService("registry", settings)
# Archivals are declared for the AsyncAPI document; their handler comes later.
publish = service.publisher(MODEL_REGISTRATIONS, MODEL_ARCHIVALS)


@cache
def dependencies() -> handlers.RegistryDeps:
    """The handlers' dependencies, built once (by the startup hook, or by the first event in tests)."""
    registry = MlflowModelRegistry(
        settings.mlflow_tracking_uri,
        attempts=settings.mlflow_retry_attempts,
        backoff_seconds=settings.mlflow_retry_backoff_seconds,
        ready_timeout_seconds=settings.version_ready_timeout_seconds,
    )
    return handlers.RegistryDeps(
        registrar=Registrar(
            registry=registry,
            signer=load_signer(settings.signing_key_path),
            topic_prefix=settings.topic_prefix,
        ),
        handled=SqliteIdempotencyStore(settings.state_dir / "registry-handled.sqlite"),
        publish=publish,
        aliases=ChampionAliases(registry),
    )


@service.subscriber(MODEL_EVALUATIONS, max_workers=settings.consumer_workers)
async def on_model_evaluated(event: ModelEvaluated) -> None:
    await handlers.register_model(event, dependencies())


@service.subscriber(MODEL_PROMOTIONS)
async def on_model_promoted(event: ModelPromoted) -> None:
    await handlers.move_champion_to_promoted(event, dependencies())


@service.subscriber(MODEL_ROLLBACKS)
async def on_model_rolled_back(event: ModelRolledBack) -> None:
    await handlers.move_champion_on_rollback(event, dependencies())


@service.subscriber(DEPLOYMENTS)
async def on_deployment_changed(event: DeploymentChanged) -> None:
    await handlers.note_deployment_changed(event)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event)


app = service.app()


@app.on_startup
def build_dependencies() -> None:
    """Load (or create) the signing key before consuming, and log its id and public key file."""
    dependencies()
