"""Handlers of deployer: one function per consumed event.

Each handler loads the model's `ModelRollout` and remembered spec from the key-value store, calls
the pure transition of `rollout`, publishes the events it returns and stores the new state.

The store is a cache of what the compacted topics say (see `rollout` and `rebuild`): at startup,
models missing from it are rebuilt from the latest `DeploymentChanged` and spec of each model.

Crash safety: events are published before the state is stored and the input is marked handled.
A crash in between redelivers the input to the old state, and the transition republishes the
very same events (their ids derive from the input's id), which consumers deduplicate; once the
mark is written (`once`, keyed on the input's event id) a redelivery publishes nothing.

Tracing: a version's rollout is one loop. The trace its `ModelRegistered` arrived in (the
retrain's, the drift incident's) is remembered per model (`ROLLOUT_TRACES`), and every later
decision about that rollout — a canary step or the promotion on a health report, a rollback on a
breach, a release on an approval — is published in a span of that trace
(`modelfleet_common.telemetry.continued_span`) linked to the event that triggered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_common.policies import RISK_CLASSES, EffectivePolicy, InvalidPolicy, Overrides, resolve_policy
from modelfleet_common.state import KeyLocks, KeyValueStore
from modelfleet_common.telemetry import annotate, continued_span, current_traceparent
from modelfleet_contracts import (
    ApprovalGranted,
    ApprovalRejected,
    DeploymentChanged,
    ModelHealthReported,
    ModelRegistered,
    ModelSpecRetired,
    ModelSpecSubmitted,
    RiskPolicy,
    RollbackRequested,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MonitoringPolicy, RiskClass, RolloutPolicy

from .approvals import ApproverKeys
from .metrics import STAGES, DeployerMetrics, decisions, fleet_view, stage_record
from .rollout import (
    ModelRollout,
    RolloutRules,
    Transition,
    on_approval_granted,
    on_approval_rejected,
    on_health_reported,
    on_model_registered,
    on_model_retired,
    on_rollback_requested,
    on_slo_breached,
    rollout_rules,
)

logger = logging.getLogger("modelfleet.deployer")

#: Key-value namespaces: the rollout state and the remembered spec of each model, by model name;
#: the nonces of approvals that released a version, by nonce.
ROLLOUTS = "rollouts"
SPECS = "specs"
APPROVAL_NONCES = "approval-nonces"
#: The trace each model's current rollout started in (`traceparent`, version), by model name.
ROLLOUT_TRACES = "rollout-traces"

#: Risk class assumed for a model whose spec and lineage do not say: the strictest that still
#: lets an approver release it, so nothing takes live traffic without a person's signature.
SAFE_DEFAULT_RISK_CLASS: RiskClass = "high"


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class DeployerDeps:
    policies: Mapping[RiskClass, RiskPolicy]
    approver_keys: ApproverKeys
    state: KeyValueStore
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]
    #: This fleet's topic prefix: approvals signed for another fleet's are rejected.
    topic_prefix: str
    clock: Callable[[], datetime] = utc_now
    #: One holder per model across the replicas: events of one model arrive on several topics
    #: (each its own consumer group, so possibly at two replicas at once) and must not interleave
    #: their read-transition-write, or one would overwrite the other's state.
    locks: KeyLocks = field(default_factory=KeyLocks)
    #: Models by stage, decisions, the oldest canary (`metrics`); none in tests that do not look.
    metrics: DeployerMetrics | None = None

    def lock(self, model: str) -> AbstractAsyncContextManager[None]:
        return self.locks.hold(model)


# --- remembered state ---------------------------------------------------------------------------


def load_rollout(store: KeyValueStore, model: str) -> ModelRollout:
    """The stored rollout state of `model`, or a fresh one."""
    data = store.get(ROLLOUTS, model)
    return ModelRollout(model) if data is None else ModelRollout.from_json(data)


def _spec_record(
    risk_class: RiskClass,
    rollout: RolloutPolicy,
    monitoring: MonitoringPolicy,
    approvers: list[str] | None = None,
    *,
    source: str,
    revision: str = "",
) -> dict[str, Any]:
    return {
        "risk_class": risk_class,
        "rollout": rollout.model_dump(mode="json"),
        "monitoring": monitoring.model_dump(mode="json"),
        "approvers": approvers,
        "source": source,
        "revision": revision,
    }


def resolved_policy(deps: DeployerDeps, model: str, record: Mapping[str, Any]) -> EffectivePolicy:
    """The effective policy of a remembered spec, by the fleet's one resolver.

    A spec that loosens a floor of its risk policy (one that reached the topic without
    `modelfleet apply`, which refuses it) is rolled out at the floor: its other overrides, and its
    tightenings, still count. Refusing it instead would leave either an older spec or none in force,
    both further from what its owner asked; the floor is exactly what the policy guarantees.
    `remember_model_spec` logs each floored field. Overrides that make no sense (canary steps that
    do not increase) are a `PermanentError`.
    """
    approvers = record.get("approvers")
    overrides = Overrides(
        rollout=RolloutPolicy.model_validate(record["rollout"]),
        monitoring=MonitoringPolicy.model_validate(record["monitoring"]),
        approvers=None if approvers is None else tuple(approvers),
    )
    try:
        return resolve_policy(deps.policies[record["risk_class"]], overrides, loosened="floor")
    except InvalidPolicy as error:
        raise PermanentError(f"{model}: {error}; fix the spec's rollout and apply it again") from error


def policy_of(deps: DeployerDeps, model: str, record: Mapping[str, Any]) -> RolloutRules:
    """The rollout rules of a remembered spec (see `resolved_policy`)."""
    return rollout_rules(resolved_policy(deps, model, record))


def submitted_spec_record(event: ModelSpecSubmitted) -> dict[str, Any]:
    """What the deployer remembers of a submitted spec: risk class, rollout/monitoring overrides
    and approvers."""
    body = event.spec.spec
    return _spec_record(
        event.spec.metadata.risk_class,
        body.rollout,
        body.monitoring,
        body.approvers,
        source="spec",
        revision=event.revision,
    )


def _remembered_spec(deps: DeployerDeps, model: str, event: Event) -> dict[str, Any]:
    """The model's remembered spec; for a model never seen, the safe default (remembered too)."""
    record: dict[str, Any] | None = deps.state.get(SPECS, model)
    if record is not None:
        return record
    lineage = event.lineage if isinstance(event, ModelRegistered) else {}
    declared = lineage.get("risk_class")
    if declared in RISK_CLASSES:
        risk_class: RiskClass = declared  # type: ignore[assignment]
        source = "lineage"
    else:
        risk_class, source = SAFE_DEFAULT_RISK_CLASS, "default"
        logger.warning(
            "no spec or lineage risk class known for this model; treating it as %s risk "
            "(approval required) until its spec arrives",
            risk_class,
            extra={"model": model, "event_type": event.event_type, "lineage_risk_class": declared},
        )
    record = _spec_record(risk_class, RolloutPolicy(), MonitoringPolicy(), source=source)
    deps.state.put(SPECS, model, record)
    return record


# --- one transition -----------------------------------------------------------------------------


async def _apply(
    event: Event,
    model: str,
    deps: DeployerDeps,
    transition_of: Callable[[ModelRollout, RolloutRules, datetime], Transition],
) -> None:
    """Run one transition for `event` on `model`'s state, once per input event id."""

    async def transition_and_publish() -> None:
        before = load_rollout(deps.state, model)
        policy = policy_of(deps, model, _remembered_spec(deps, model, event))
        transition = transition_of(before, policy, deps.clock())
        # Publish first: a crash before the store is written replays the same events (see above).
        with _rollout_span(event, model, deps) if transition.events else contextlib.nullcontext():
            _describe(transition.events)
            for published in transition.events:
                await deps.publish(published)
        after = transition.state
        _remember_rollout_trace(event, model, before, after, deps)
        if after != before:
            deps.state.put(ROLLOUTS, model, after.to_json())
            if stage_record(after) != stage_record(before):
                deps.state.put(STAGES, model, stage_record(after))
        if deps.metrics is not None:
            deps.metrics.count(after.risk_class, decisions(before, after, transition.events))
        for decision in (d for d in after.history if d.cause == event.event_id):
            logger.info(
                decision.reason,
                extra={"model": model, "stage": decision.stage, "version": decision.version or ""},
            )

    async with deps.lock(model):
        if not await once(deps.handled, f"applied:{event.event_id}", transition_and_publish):
            log_event(logger, "event already applied; nothing to do", event)


def _rollout_span(event: Event, model: str, deps: DeployerDeps) -> AbstractContextManager[object]:
    """The span a decision is published in: in the trace of the model's rollout when one is
    remembered (a registration itself stays in the trace it arrived in)."""
    remembered = deps.state.get(ROLLOUT_TRACES, model)
    if remembered is None or isinstance(event, ModelRegistered):
        return contextlib.nullcontext()
    return continued_span(
        f"rollout {event.event_type}",
        remembered.get("traceparent"),
        attributes={"modelfleet.model": model, "modelfleet.version": str(remembered.get("version", ""))},
    )


def _describe(events: Sequence[Event]) -> None:
    """What a decision published, on the span current while it does (for trace search)."""
    annotate(published=[event.event_type for event in events])
    stages = [event.stage for event in events if isinstance(event, DeploymentChanged)]
    if stages:
        annotate(stage=stages[-1])


def _remember_rollout_trace(
    event: Event, model: str, before: ModelRollout, after: ModelRollout, deps: DeployerDeps
) -> None:
    """A registration that started a rollout names the trace of its later decisions; a retired
    model's is forgotten."""
    if isinstance(event, ModelSpecRetired):
        deps.state.delete(ROLLOUT_TRACES, model)
        return
    traceparent = current_traceparent()
    if isinstance(event, ModelRegistered) and event.passed_evaluation and after != before and traceparent:
        deps.state.put(ROLLOUT_TRACES, model, {"traceparent": traceparent, "version": event.version})


async def refresh_fleet_metrics(deps: DeployerDeps, owns: Callable[[str], bool]) -> None:
    """Export the models `owns` says are this replica's by stage and risk class, and the oldest
    shadow or canary (see `metrics`). The stage records are read in a thread: the event loop
    keeps consuming meanwhile."""
    if deps.metrics is not None:
        records = await asyncio.to_thread(deps.state.items, STAGES)
        deps.metrics.show(fleet_view(records, owns, deps.clock()))


# --- handlers -----------------------------------------------------------------------------------


async def remember_model_spec(event: ModelSpecSubmitted | ModelSpecRetired, deps: DeployerDeps) -> None:
    """Remember a model's risk class and rollout/monitoring overrides; retire it on retirement."""
    if isinstance(event, ModelSpecRetired):
        await retire_model(event, deps)
        return
    record = submitted_spec_record(event)
    # Refuse a spec whose rollout makes no sense now, not when its next version arrives.
    policy = resolved_policy(deps, event.model, record)
    if policy.floored:
        logger.warning(
            "spec loosens floors of the %s risk policy; its versions roll out at the floor: %s",
            policy.risk_class,
            "; ".join(str(violation) for violation in policy.floored),
            extra={"model": event.model, "event_id": str(event.event_id), "revision": event.revision},
        )
    async with deps.lock(event.model):
        deps.state.put(SPECS, event.model, record)
    log_event(logger, f"spec remembered: {record['risk_class']} risk", event)


async def retire_model(event: ModelSpecRetired, deps: DeployerDeps) -> None:
    """Empty the routing table of a model leaving the fleet, and forget its spec."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_model_retired(state, event, policy, now=now),
    )
    async with deps.lock(event.model):
        deps.state.delete(SPECS, event.model)


async def roll_out_version(event: ModelRegistered, deps: DeployerDeps) -> None:
    """Start rolling out a registered version (a failing one is only noted)."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_model_registered(state, event, policy, now=now),
    )


async def weigh_model_health(event: ModelHealthReported, deps: DeployerDeps) -> None:
    """Advance, hold or roll back a challenger on a live health window."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_health_reported(state, event, policy, now=now),
    )


async def roll_back_breach(event: SloBreached, deps: DeployerDeps) -> None:
    """Roll back the version whose SLO was breached."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_slo_breached(state, event, policy, now=now),
    )


async def check_approval(event: ApprovalGranted, deps: DeployerDeps) -> None:
    """Release a waiting version on a valid signed approval; publish the rejection of an invalid one.

    The nonce of an approval that released a version is remembered in the state store, so the same
    signed approval published again (under a new event id) is rejected as a replay. It is written
    before the events are published: a crash in between redelivers this very event, whose own
    nonce record does not count as a replay.
    """

    def transition(state: ModelRollout, policy: RolloutRules, now: datetime) -> Transition:
        used = deps.state.get(APPROVAL_NONCES, event.nonce) if event.nonce else None
        result = on_approval_granted(
            state,
            event,
            policy,
            deps.approver_keys,
            now=now,
            topic_prefix=deps.topic_prefix,
            nonce_seen=used is not None and used.get("event_id") != str(event.event_id),
        )
        released = result.state.stage != state.stage and result.state.pending_approval is None
        if event.nonce and released:
            deps.state.put(
                APPROVAL_NONCES,
                event.nonce,
                {"event_id": str(event.event_id), "model": event.model, "version": event.version},
            )
        return result

    await _apply(event, event.model, deps, transition)


async def withdraw_rejected_version(event: ApprovalRejected, deps: DeployerDeps) -> None:
    """Withdraw a waiting version a person refused (the deployer's own rejections change nothing)."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_approval_rejected(state, event, policy, now=now),
    )


async def roll_back_on_request(event: RollbackRequested, deps: DeployerDeps) -> None:
    """Carry out a person's rollback; an impossible one is refused (dead-lettered) with the reason."""
    await _apply(
        event,
        event.model,
        deps,
        lambda state, policy, now: on_rollback_requested(state, event, policy, now=now),
    )
