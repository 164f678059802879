"""serving: wiring of the broker, subscribers and publishers."""

from modelfleet_common.service import FleetService
from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.topics import DEPLOYMENTS, PREDICTION_LOGS

from . import handlers
from .config import ServingSettings

service = FleetService("serving", ServingSettings())
# Declared now so the AsyncAPI document shows what serving produces; handlers use it from #3-#5.
publish = service.publisher(PREDICTION_LOGS)


@service.subscriber(DEPLOYMENTS)
async def on_deployment_changed(event: DeploymentChanged) -> None:
    await handlers.note_deployment_changed(event)


app = service.app()
