"""registry: wiring of the broker, subscribers and publishers."""

from modelfleet_common.service import FleetService
from modelfleet_contracts import DeploymentChanged, ModelEvaluated, SpecEvent
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
from .config import RegistrySettings

service = FleetService("registry", RegistrySettings())
# Declared now so the AsyncAPI document shows what registry produces; handlers use it from #3-#5.
publish = service.publisher(MODEL_REGISTRATIONS, MODEL_PROMOTIONS, MODEL_ROLLBACKS, MODEL_ARCHIVALS)


@service.subscriber(MODEL_EVALUATIONS)
async def on_model_evaluated(event: ModelEvaluated) -> None:
    await handlers.note_model_evaluated(event)


@service.subscriber(DEPLOYMENTS)
async def on_deployment_changed(event: DeploymentChanged) -> None:
    await handlers.note_deployment_changed(event)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event)


app = service.app()
