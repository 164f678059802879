"""registry: wiring of the broker, subscribers and publishers (dependencies: `bootstrap`)."""

from functools import cache

from modelfleet_common.service import FleetService
from modelfleet_contracts import ModelEvaluated, ModelPromoted, ModelRolledBack
from modelfleet_contracts.topics import (
    MODEL_EVALUATIONS,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
)

from . import handlers
from .bootstrap import bootstrap
from .config import RegistrySettings
from .metrics import RegistryMetrics

settings = RegistrySettings()
service = FleetService("registry", settings)
publish = service.publisher(MODEL_REGISTRATIONS)
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


app = service.app()


@app.on_startup
def build_dependencies() -> None:
    """Load (or create) the signing key before consuming, and log its id and public key file."""
    dependencies()
