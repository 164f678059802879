"""deployer: wiring of the broker, subscribers and publishers (dependencies: `bootstrap`)."""

import asyncio
from functools import cache

from modelfleet_common.kafka import read_snapshot
from modelfleet_common.service import FleetService
from modelfleet_contracts import (
    ApprovalGranted,
    ApprovalRejected,
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
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    ROLLBACK_REQUESTS,
    SLO_BREACHES,
    Topic,
)

from . import handlers, rebuild
from .bootstrap import bootstrap
from .config import DeployerSettings
from .metrics import DeployerMetrics

settings = DeployerSettings()
service = FleetService("deployer", settings)
rebuild_metrics = rebuild.RebuildMetrics(service.metrics.registry)
metrics = DeployerMetrics(service.metrics.registry)
publish = service.publisher(
    DEPLOYMENTS, MODEL_PROMOTIONS, MODEL_ROLLBACKS, APPROVAL_REQUESTS, APPROVALS_REJECTED
)


@cache
def dependencies() -> handlers.DeployerDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, metrics=metrics)


@service.subscriber(MODEL_SPECS)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.remember_model_spec(event, dependencies())


@service.subscriber(MODEL_REGISTRATIONS)
async def on_model_registered(event: ModelRegistered) -> None:
    await handlers.roll_out_version(event, dependencies())


@service.subscriber(MODEL_HEALTH)
async def on_model_health_reported(event: ModelHealthReported) -> None:
    await handlers.weigh_model_health(event, dependencies())


@service.subscriber(SLO_BREACHES)
async def on_slo_breached(event: SloBreached) -> None:
    await handlers.roll_back_breach(event, dependencies())


@service.subscriber(APPROVALS_GRANTED)
async def on_approval_granted(event: ApprovalGranted) -> None:
    await handlers.check_approval(event, dependencies())


@service.subscriber(APPROVALS_REJECTED)
async def on_approval_rejected(event: ApprovalRejected) -> None:
    await handlers.withdraw_rejected_version(event, dependencies())


@service.subscriber(ROLLBACK_REQUESTS)
async def on_rollback_requested(event: RollbackRequested) -> None:
    await handlers.roll_back_on_request(event, dependencies())


async def refresh_metrics() -> None:
    """Count the models this replica owns (those keyed to its partitions of model-specs)."""
    owned = service.ownership(MODEL_SPECS)
    if owned is not None:  # not assigned yet: whose models are whose is not known
        await handlers.refresh_fleet_metrics(dependencies(), owned.owns)


# The deployer reads its own routing tables back when it rebuilds its state.
service.uses(DEPLOYMENTS)
service.every(settings.deployer_metrics_seconds, refresh_metrics, name="fleet-metrics")
app = service.app()


async def read_topic_snapshot(topic: Topic) -> list[bytes]:
    """Every message of one of this fleet's topics, from its beginning to its end now."""
    async with asyncio.timeout(settings.state_rebuild_timeout_seconds):
        return await read_snapshot(settings.kafka, service.namer.topic(topic))


@app.on_startup
async def build_dependencies() -> None:
    """Before consuming: load and validate policies and approver keys (a bad file stops the
    service), then rebuild the state the local store lacks from the compacted topics (Kafka
    unreachable stops it too: running on a forgotten state would treat every model as new)."""
    await rebuild.rebuild_state(
        dependencies(),
        read_topic_snapshot,
        mode=settings.state_rebuild,
        metrics=rebuild_metrics,
    )
