"""registry: wiring of the broker, subscribers and publishers (dependencies: `bootstrap`)."""

from functools import cache

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
from .bootstrap import bootstrap
from .config import RegistrySettings
from .metrics import RegistryMetrics

settings = RegistrySettings()
service = FleetService("registry", settings)
# Archivals are declared for the AsyncAPI document; their handler comes later.
publish = service.publisher(MODEL_REGISTRATIONS, MODEL_ARCHIVALS)
metrics = RegistryMetrics(service.metrics.registry)


@cache
def dependencies() -> handlers.RegistryDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, metrics=metrics)


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
