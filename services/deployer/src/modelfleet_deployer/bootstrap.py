"""deployer's wiring: builds its ports (state, approver keys, Kafka publisher, clock) once.

    deps = bootstrap(settings, publish=publish, metrics=metrics)      # the service
    deps = bootstrap(settings, publish=fake, state=InMemoryKeyValueStore(), clock=lambda: NOW)

Nothing here runs at import: the app calls it from its startup hook, so a bad policy or approver
keys file, or an unreachable state engine, stops the service naming the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from modelfleet_common.idempotency import IdempotencyStore, durable_idempotency
from modelfleet_common.policies import load_policies
from modelfleet_common.state import KeyLocks, KeyValueStore, open_service_state
from modelfleet_contracts.envelope import Event

from .approvals import APPROVER_KEYS_ENV, ApproverKeys
from .config import DeployerSettings
from .handlers import DeployerDeps, utc_now
from .metrics import DeployerMetrics

logger = logging.getLogger("modelfleet.deployer")


def approver_keys(settings: DeployerSettings) -> ApproverKeys:
    """The approvers' public keys; none (every approval rejected) when no file is configured."""
    if settings.approver_keys_file is None:
        logger.warning(
            "no approver keys file: every approval will be rejected; set %s to release "
            "high and critical risk models",
            APPROVER_KEYS_ENV,
        )
        return ApproverKeys({})
    return ApproverKeys.from_file(settings.approver_keys_file)


def bootstrap(
    settings: DeployerSettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    state: KeyValueStore | None = None,
    handled: IdempotencyStore | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: DeployerMetrics | None = None,
) -> DeployerDeps:
    """The handlers' dependencies; any port given replaces the real one.

    With the real state engine the per-model locks are shared by the replicas (PostgreSQL advisory
    locks); with a given store they are this process's.
    """
    policies = load_policies(settings.policy_dir)
    keys = approver_keys(settings)
    logger.info(
        "risk policies and approver keys loaded",
        extra={
            "policy_dir": str(settings.policy_dir.resolve()),
            "risk_classes": sorted(policies),
            "approvers_with_keys": keys.names,
        },
    )
    locks = KeyLocks()
    if state is None or handled is None:
        engine = open_service_state(settings, "deployer")
        locks = engine.locks
        state = state or engine.key_values()
        handled = handled or durable_idempotency(engine, settings.state)
    return DeployerDeps(
        policies=policies,
        approver_keys=keys,
        state=state,
        handled=handled,
        publish=publish,
        topic_prefix=settings.topic_prefix,
        clock=clock,
        locks=locks,
        metrics=metrics,
    )
