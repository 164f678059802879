"""deployer: wiring of the broker, subscribers and publishers."""

from modelfleet_common.service import FleetService
from modelfleet_contracts import (
    ApprovalGranted,
    ModelHealthReported,
    ModelRegistered,
    RollbackRequested,
    SloBreached,
    SpecEvent,
)
from modelfleet_contracts.topics import (
    APPROVAL_REQUESTS,
    APPROVALS_GRANTED,
    APPROVALS_REJECTED,
    DEPLOYMENTS,
    MODEL_HEALTH,
    MODEL_REGISTRATIONS,
    MODEL_SPECS,
    ROLLBACK_REQUESTS,
    SLO_BREACHES,
)

from . import handlers
from .config import DeployerSettings

service = FleetService("deployer", DeployerSettings())
# Declared now so the AsyncAPI document shows what deployer produces; handlers use it from #3-#5.
publish = service.publisher(DEPLOYMENTS, APPROVAL_REQUESTS, APPROVALS_REJECTED)


@service.subscriber(MODEL_REGISTRATIONS)
async def on_model_registered(event: ModelRegistered) -> None:
    await handlers.note_model_registered(event)


@service.subscriber(MODEL_HEALTH)
async def on_model_health_reported(event: ModelHealthReported) -> None:
    await handlers.note_model_health_reported(event)


@service.subscriber(SLO_BREACHES)
async def on_slo_breached(event: SloBreached) -> None:
    await handlers.note_slo_breached(event)


@service.subscriber(APPROVALS_GRANTED)
async def on_approval_granted(event: ApprovalGranted) -> None:
    await handlers.note_approval_granted(event)


@service.subscriber(ROLLBACK_REQUESTS)
async def on_rollback_requested(event: RollbackRequested) -> None:
    await handlers.note_rollback_requested(event)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.note_model_spec(event)


app = service.app()
