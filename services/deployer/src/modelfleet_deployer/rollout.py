"""The rollout state machine of one model: pure, so every decision can be tested and replayed.

Each `on_*` function takes the model's current `ModelRollout`, one input event, the model's
effective policy and the time `now`, and returns a `Transition`: the new state and the events to
publish. Nothing here reads a clock, a file or the network; the handlers do that around it.

Life of a challenger: candidate → shadow (if the policy asks) → awaiting_approval (if the policy
asks) → canary steps (e.g. 10 → 50 → 100 %) → promoted; or rolled_back on any breach, rejection
or a person's request; retired when the model leaves the fleet.

Idempotency: an input whose `event_id` was already applied changes nothing, and so do inputs that
are stale by their natural key (a version already known, a health window already counted, a
breach of a version no longer in traffic). Events published for an input get ids derived from
the input's id, so a redelivery after a crash republishes the very same events and consumers
deduplicate them.

Durability: the compacted `deployments` topic is the source of truth and the deployer's local
store only a cache. Every change of the *durable* state (`ModelRollout.durable`: stage, champion,
last known good, the version in rollout and how far it got, the pending approval, every passing
version) is published as a `DeploymentChanged` with a new revision, even when serving's routing
table stays the same, so the latest record of a model is enough to rebuild it
(`rollout_from_table`). What a step has counted so far (`step_requests`, `last_window_end`,
`champion_live`, `challenger_live`) and the bookkeeping (`history`, `recent_inputs`) is not published: after a
rebuild a shadow stage or canary step counts its requests again from zero and waits for a fresh
champion metric. That is the conservative choice: a version may take a little longer to
advance, but never advances on evidence that cannot be checked any more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from statistics import NormalDist
from typing import Any
from uuid import UUID, uuid5

from pydantic import TypeAdapter

from modelfleet_common.consumer import PermanentError
from modelfleet_common.humanize import milliseconds, percent
from modelfleet_common.policies import DEFAULT_KEPT_VERSIONS, EffectivePolicy
from modelfleet_contracts import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    ModelHealthReported,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    ModelSpecRetired,
    RollbackRequested,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import RouteTarget, Stage
from modelfleet_contracts.specs import RiskClass

from .approvals import ApproverKeys, Expected, verify_approval

PRODUCER = "deployer"

#: How many applied input ids a state remembers to recognise redeliveries.
RECENT_INPUTS = 256

#: How many decisions a state keeps; older ones live on in the published events and logs.
HISTORY_LIMIT = 200


class RolloutRefused(PermanentError):
    """A person's request cannot be carried out as asked (e.g. a rollback to an unknown version)."""


# --- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutRules:
    """What governs one model's rollouts: the rollout part of its effective policy."""

    risk_class: RiskClass
    shadow: bool
    canary_steps: tuple[int, ...]
    min_requests_per_step: int
    requires_approval: bool
    approvers: tuple[str, ...]
    max_error_rate: float | None
    max_latency_p99_ms: float | None
    #: How much lower the challenger's live metric may be than the champion's (higher is better).
    live_margin: float
    #: Labels a window needs before its live metric counts (as the champion's reference, or against it).
    min_live_labels: int
    #: How sure the deployer must be that the challenger is worse (beyond the margin) to roll it back.
    live_confidence: float = 0.95
    #: Passing versions a routing table keeps as rollback targets (`kept_versions`).
    kept_versions: int = DEFAULT_KEPT_VERSIONS


def rollout_rules(policy: EffectivePolicy) -> RolloutRules:
    """The rollout rules of a model's effective policy (`modelfleet_common.policies.resolve_policy`:
    its risk class's policy, overridden by its spec, never below the policy's floors).

    The live non-inferiority margin is the offline `non_inferiority_margin`, so the same tolerance
    applies before and after a version takes traffic.
    """
    rollout = policy.rollout
    return RolloutRules(
        risk_class=policy.risk_class,
        shadow=rollout.shadow,
        canary_steps=rollout.canary_steps,
        min_requests_per_step=rollout.min_requests_per_step,
        requires_approval=rollout.requires_approval,
        approvers=policy.approvers,
        max_error_rate=policy.monitoring.max_error_rate,
        max_latency_p99_ms=policy.monitoring.max_latency_p99_ms,
        live_margin=policy.gates.non_inferiority_margin,
        min_live_labels=rollout.min_live_labels,
        live_confidence=policy.gates.confidence,
        kept_versions=rollout.kept_versions,
    )


# --- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One decision of the state machine, with the input that caused it and why."""

    at: datetime
    cause: UUID
    stage: Stage
    version: str | None
    reason: str


@dataclass(frozen=True)
class LiveTally:
    """Labels scored for one version since its current step began: the live metric as a mean."""

    metric: str
    total: float = 0.0
    labels: int = 0
    #: Sum of the squared per-label scores, while every report said how spread its scores were.
    squares: float | None = 0.0

    @property
    def value(self) -> float:
        """Mean of the metric over the labels (0 labels: 0, never compared)."""
        return self.total / self.labels if self.labels else 0.0

    @property
    def variance(self) -> float | None:
        """Variance of the per-label scores; accuracy's follows from its value alone."""
        if not self.labels:
            return None
        if self.metric == "accuracy":
            # Shares of 0 or 1 are pulled half a label inwards: a perfect small sample is not certain.
            share = min(max(self.value, 0.5 / self.labels), 1 - 0.5 / self.labels)
            return share * (1 - share)
        if self.squares is None:
            return None
        return max(self.squares / self.labels - self.value**2, 0.0)

    @staticmethod
    def add(tally: LiveTally | None, report: ModelHealthReported) -> LiveTally | None:
        """`tally` with the report's labelled window added; a different metric starts a new tally."""
        if report.live_metric is None or report.live_metric_value is None or report.labelled == 0:
            return tally
        if tally is None or tally.metric != report.live_metric:
            tally = LiveTally(report.live_metric)
        mean, std, labels = report.live_metric_value, report.live_metric_std, report.labelled
        squares = (
            None if tally.squares is None or std is None else tally.squares + (std**2 + mean**2) * labels
        )
        return LiveTally(tally.metric, tally.total + mean * labels, tally.labels + labels, squares)


@dataclass(frozen=True)
class ModelRollout:
    """Everything the deployer knows about one model's rollout. Immutable: transitions replace it."""

    model: str
    stage: Stage = "candidate"
    champion: RouteTarget | None = None
    last_known_good: RouteTarget | None = None
    challenger: RouteTarget | None = None
    #: Whether the challenger gets a mirrored copy of traffic (shadow, and while awaiting approval).
    mirrored: bool = False
    #: Index into the policy's canary steps while in `canary`.
    step_index: int = 0
    #: Share of request keys the challenger answers (0 unless in `canary`).
    weight: float = 0.0
    #: Revision of the last published `DeploymentChanged`; 0 = none published yet.
    revision: int = 0
    #: Challenger requests counted in the current shadow stage or canary step.
    step_requests: int = 0
    #: End of the last challenger health window counted, so a window is never counted twice.
    last_window_end: datetime | None = None
    #: The champion's live metric since the current step began: the reference the challenger is held
    #: to, over the same stretch of traffic.
    champion_live: LiveTally | None = None
    #: The challenger's live metric since the current step began.
    challenger_live: LiveTally | None = None
    #: Version waiting for a signed approval, if any.
    pending_approval: str | None = None
    #: Every passing version registered, so people can roll back to any of them.
    versions: tuple[RouteTarget, ...] = ()
    history: tuple[Decision, ...] = ()
    #: Ids of recently applied inputs (bounded), to recognise redeliveries.
    recent_inputs: tuple[UUID, ...] = field(default=(), repr=False)
    #: Risk class of the policy of its last transition (published with the table, for metrics).
    risk_class: RiskClass | None = None
    #: When it entered `stage` with its current challenger: the age of a shadow or canary.
    stage_since: datetime | None = None

    def version(self, version: str) -> RouteTarget | None:
        """The route target of a known passing version, or None."""
        return next((target for target in self.versions if target.version == version), None)

    @property
    def table(self) -> tuple[Any, ...]:
        """What serving acts on: the routing part of the published `DeploymentChanged`."""
        challenger = self.challenger if self.stage == "canary" else None
        return (self.stage, self.champion, challenger, self.weight, tuple(self.shadows))

    @property
    def durable(self) -> tuple[Any, ...]:
        """What the published `DeploymentChanged` carries (the table and more); any change of it
        is published with a new revision, so `rollout_from_table` can rebuild it."""
        return (
            self.stage,
            self.champion,
            self.last_known_good,
            self.challenger,
            self.mirrored,
            self.step_index,
            self.weight,
            self.pending_approval,
            self.versions,
        )

    @property
    def shadows(self) -> list[RouteTarget]:
        """Versions that get a mirrored copy of traffic."""
        return [self.challenger] if self.mirrored and self.challenger is not None else []

    def to_json(self) -> dict[str, Any]:
        """The whole state as JSON-compatible values, for a durable store."""
        data: dict[str, Any] = _rollout_adapter().dump_python(self, mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRollout:
        """The state `to_json` produced, validated field by field."""
        if isinstance(data.get("champion_live"), list):
            # Stored before live metrics were tallied per step ([name, value]): recount from here.
            data = {**data, "champion_live": None}
        return _rollout_adapter().validate_python(data)


@cache
def _rollout_adapter() -> TypeAdapter[ModelRollout]:
    # Built on first use: the dataclass and its field types are all defined by then.
    return TypeAdapter(ModelRollout)


@dataclass(frozen=True)
class Transition:
    """The state after an input and the events to publish for it, in order."""

    state: ModelRollout
    events: tuple[Event, ...] = ()


#: The fields that say "no challenger takes traffic": withdrawn, promoted, rolled back or retired.
NO_CHALLENGER: dict[str, Any] = {
    "challenger": None,
    "weight": 0.0,
    "step_index": 0,
    "step_requests": 0,
    "mirrored": False,
    "pending_approval": None,
    "challenger_live": None,
}


class _Step:
    """Accumulates the new state and the events of one transition."""

    def __init__(self, before: ModelRollout, cause: Event, policy: RolloutRules, now: datetime) -> None:
        self.before = before
        self.state = before
        self.cause = cause
        self.policy = policy
        self.now = now
        self.events: list[Event] = []

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def decide(self, reason: str, version: str | None) -> None:
        decision = Decision(self.now, self.cause.event_id, self.state.stage, version, reason)
        self.set(history=(*self.state.history, decision)[-HISTORY_LIMIT:])

    def emit(self, event_class: type[Event], **fields: Any) -> None:
        self.events.append(self._event(event_class, f"{event_class.__name__}:{len(self.events)}", **fields))

    def _event(self, event_class: type[Event], name: str, **fields: Any) -> Event:
        # Ids derived from the input's id: a redelivery republishes identical, deduplicable events.
        return event_class(
            event_id=uuid5(self.cause.event_id, name),
            occurred_at=self.now,
            producer=PRODUCER,
            **self.cause.caused(),
            **fields,
        )

    def done(self, reason: str) -> Transition:
        """Publish the table if the durable state changed, remember the input, return the transition."""
        self.set(
            versions=kept_versions(self.state, self.policy.kept_versions), risk_class=self.policy.risk_class
        )
        entered = (self.state.stage, self.state.challenger) != (self.before.stage, self.before.challenger)
        if entered or self.state.stage_since is None:
            self.set(stage_since=self.now)
        if self.state.durable != self.before.durable:
            self.set(revision=self.state.revision + 1)
            table = self._event(
                DeploymentChanged, "DeploymentChanged", **table_fields(self.state), reason=reason
            )
            # Serving acts on the table; publish it before the facts that explain it.
            self.events.insert(0, table)
        self.set(recent_inputs=(*self.state.recent_inputs, self.cause.event_id)[-RECENT_INPUTS:])
        return Transition(self.state, tuple(self.events))


def _version_number(target: RouteTarget) -> tuple[int, str]:
    # MLflow numbers versions 1, 2, ...; anything else sorts after them, by name.
    return (int(target.version), "") if target.version.isdigit() else (1 << 62, target.version)


def kept_versions(state: ModelRollout, keep: int) -> tuple[RouteTarget, ...]:
    """The passing versions a routing table keeps, oldest first: the champion, the last known good
    and the version in rollout always, then the newest others up to `keep` in all.

    Bounded so a model's table stays far below Kafka's message limit however many versions it has
    had; a version dropped here can no longer be rolled back to by name.
    """
    pinned = _pinned(state)
    newest_first = sorted(state.versions, key=_version_number, reverse=True)
    room = max(keep - len(pinned), 0)
    others = [t for t in newest_first if t.version not in pinned][:room]
    kept = {t.version for t in others} | pinned
    return tuple(t for t in sorted(state.versions, key=_version_number) if t.version in kept)


def _pinned(state: ModelRollout) -> set[str]:
    return {t.version for t in (state.champion, state.last_known_good, state.challenger) if t is not None}


def evicted(state: ModelRollout, version: str, keep: int) -> bool:
    """Whether `version` is older than every unpinned version a full table keeps: dropped before,
    so a late or replayed registration of it must not come back as a new candidate."""
    if len(state.versions) < keep or not version.isdigit():
        return False
    pinned = _pinned(state)
    numbered = [int(t.version) for t in state.versions if t.version.isdigit() and t.version not in pinned]
    return bool(numbered) and int(version) < min(numbered)


def table_fields(state: ModelRollout) -> dict[str, Any]:
    """The `DeploymentChanged` fields of a state: serving's routing table and the durable rest."""
    return {
        "model": state.model,
        "revision": state.revision,
        "stage": state.stage,
        "champion": state.champion,
        "challenger": state.challenger if state.stage == "canary" else None,
        "challenger_weight": state.weight,
        "shadows": state.shadows,
        "candidate": state.challenger,
        "canary_step_index": state.step_index,
        "pending_approval": state.pending_approval,
        "last_known_good": state.last_known_good,
        "passing_versions": list(state.versions),
        "risk_class": state.risk_class,
        "stage_since": state.stage_since,
    }


def rollout_from_table(table: DeploymentChanged) -> ModelRollout:
    """The durable state of a model rebuilt from its latest `DeploymentChanged`.

    Per-step counters start afresh (see the module docstring). The input that caused the table
    counts as applied, so its redelivery after the rebuild does not apply it a second time.
    Tables published before the durable fields existed lack them: their champion, canary and
    shadow stand in for the version in rollout and the passing versions, and no last known good
    is known (a rollback then has to name its version).
    """
    candidate = table.candidate or table.challenger or next(iter(table.shadows), None)
    versions = list(table.passing_versions)
    for target in (table.last_known_good, table.champion, candidate):
        if target is not None and all(known.version != target.version for known in versions):
            versions.append(target)
    pending = table.pending_approval
    if pending is None and table.stage == "awaiting_approval" and candidate is not None:
        pending = candidate.version
    return ModelRollout(
        model=table.model,
        stage=table.stage,
        champion=table.champion,
        last_known_good=table.last_known_good,
        challenger=candidate,
        mirrored=bool(table.shadows),
        step_index=table.canary_step_index,
        weight=table.challenger_weight,
        revision=table.revision,
        pending_approval=pending,
        versions=tuple(versions),
        recent_inputs=() if table.causation_id is None else (table.causation_id,),
        risk_class=table.risk_class,
        # A table from before `stage_since`: its own time is the latest the stage can have begun.
        stage_since=table.stage_since or table.occurred_at,
    )


def _seen(state: ModelRollout, event: Event) -> bool:
    return event.event_id in state.recent_inputs


# --- transitions ----------------------------------------------------------------------------


def on_model_registered(
    state: ModelRollout, event: ModelRegistered, policy: RolloutRules, *, now: datetime
) -> Transition:
    """Start rolling out a version that passed evaluation; a failing version is never rolled out.

    The first passing version of a model without a champion becomes champion directly when the
    policy needs no approval: there is no traffic being served well that a canary would protect,
    and no champion to compare it with. When the policy requires approval (high, critical), even
    the first version waits for a signed approval before it takes live traffic; with nothing
    serving there is no traffic to shadow, so it waits at once and becomes champion when approved.
    A newer passing version supersedes a challenger still in rollout, and starts from the top.
    A retired model that gets a passing version again (its spec was re-applied) starts over.
    """
    if _seen(state, event) or not event.passed_evaluation or state.version(event.version) is not None:
        return Transition(state)
    if evicted(state, event.version, policy.kept_versions):
        return Transition(state)
    target = RouteTarget(
        version=event.version,
        model_uri=event.model_uri,
        digest=event.digest,
        signature=event.signature,
        signing_key_id=event.signing_key_id,
        dataset_version=event.lineage.get("dataset_version") or None,
    )
    step = _Step(state, event, policy, now)
    step.set(versions=(*state.versions, target))
    if state.champion is None and not policy.requires_approval:
        step.set(
            stage="promoted",
            champion=target,
            challenger=None,
            mirrored=False,
            weight=0.0,
            step_index=0,
            pending_approval=None,
            champion_live=None,
        )
        reason = f"version {target.version} is the first passing version of {state.model}: champion at once"
        step.decide(reason, target.version)
        step.emit(
            ModelPromoted,
            model=state.model,
            version=target.version,
            previous_version=None,
            decided_by=PRODUCER,
            reason=reason,
        )
        return step.done(reason)
    if state.challenger is not None:
        step.decide(
            f"version {state.challenger.version} superseded by {target.version}", state.challenger.version
        )
    step.set(
        challenger=target,
        step_requests=0,
        step_index=0,
        last_window_end=None,
        pending_approval=None,
        weight=0.0,
        mirrored=False,
        champion_live=None,
        challenger_live=None,
    )
    reason = f"version {target.version} passed evaluation"
    if state.champion is None:
        first = (
            f"first passing version of {state.model}: no champion serves traffic to shadow or compare with"
        )
        return _past_shadow(step, f"{reason}; {first}", evidence=first)
    if policy.shadow:
        step.set(stage="shadow", mirrored=True)
        reason += f"; shadow until {policy.min_requests_per_step} mirrored requests meet the SLOs"
        step.decide(reason, target.version)
        return step.done(reason)
    return _past_shadow(step, reason, evidence="no shadow stage under the policy")


def _past_shadow(step: _Step, reason: str, *, evidence: str) -> Transition:
    """From registration or a passed shadow: wait for approval if the policy requires it, else canary."""
    challenger = step.state.challenger
    assert challenger is not None
    if not step.policy.requires_approval:
        return _enter_canary_step(step, 0, reason)
    step.set(stage="awaiting_approval", pending_approval=challenger.version, step_requests=0)
    approvers = list(step.policy.approvers)
    reason = (
        f"{reason}; {step.policy.risk_class} risk: waiting for a signed approval by "
        f"{', '.join(approvers) if approvers else 'an approver (none listed in the policy)'}"
    )
    step.decide(reason, challenger.version)
    step.emit(
        ApprovalRequested,
        model=step.state.model,
        version=challenger.version,
        risk_class=step.policy.risk_class,
        approvers=approvers,
        evidence=evidence,
        digest=challenger.digest,
    )
    return step.done(reason)


def _enter_canary_step(step: _Step, index: int, reason: str) -> Transition:
    challenger = step.state.challenger
    assert challenger is not None
    steps = step.policy.canary_steps
    step.set(
        stage="canary",
        step_index=index,
        weight=steps[index] / 100,
        step_requests=0,
        mirrored=False,
        pending_approval=None,
        # Both versions are scored afresh on the traffic of this step.
        champion_live=None,
        challenger_live=None,
    )
    reason = (
        f"{reason}; canary step {index + 1}/{len(steps)}: {steps[index]}% of traffic to {challenger.version}"
    )
    step.decide(reason, challenger.version)
    return step.done(reason)


def _promote(step: _Step, reason: str) -> Transition:
    challenger = step.state.challenger
    assert challenger is not None
    previous = step.state.champion
    step.set(
        stage="promoted",
        champion=challenger,
        last_known_good=previous,
        **NO_CHALLENGER,
        champion_live=None,
    )
    reason = f"{reason}; {challenger.version} promoted to champion" + (
        f", {previous.version} kept as last known good" if previous else ""
    )
    step.decide(reason, challenger.version)
    step.emit(
        ModelPromoted,
        model=step.state.model,
        version=challenger.version,
        previous_version=previous.version if previous else None,
        decided_by=PRODUCER,
        reason=reason,
    )
    return step.done(reason)


def _withdraw_challenger(step: _Step, why: str, *, decided_by: str) -> Transition:
    """Take the challenger out of traffic; the champion (the last known good) answers everything."""
    challenger = step.state.challenger
    assert challenger is not None
    champion = step.state.champion
    step.set(
        stage="rolled_back",
        **NO_CHALLENGER,
    )
    to = champion.version if champion else None
    reason = f"rolled back {challenger.version} to {to or 'nothing'}: {why}"
    step.decide(reason, challenger.version)
    step.emit(
        ModelRolledBack,
        model=step.state.model,
        from_version=challenger.version,
        to_version=to,
        decided_by=decided_by,
        reason=reason,
    )
    return step.done(reason)


def _replace_champion(step: _Step, target: RouteTarget, why: str, *, decided_by: str) -> Transition:
    """Serve `target` instead of the champion; any challenger in rollout is withdrawn with it."""
    champion = step.state.champion
    assert champion is not None
    last_known_good = step.state.last_known_good
    step.set(
        stage="rolled_back",
        champion=target,
        # The target is now serving; it cannot also be the fallback from itself.
        last_known_good=None if last_known_good == target else last_known_good,
        **NO_CHALLENGER,
        champion_live=None,
    )
    reason = f"rolled back {champion.version} to {target.version}: {why}"
    step.decide(reason, champion.version)
    step.emit(
        ModelRolledBack,
        model=step.state.model,
        from_version=champion.version,
        to_version=target.version,
        decided_by=decided_by,
        reason=reason,
    )
    return step.done(reason)


def _health_problem(
    report: ModelHealthReported,
    policy: RolloutRules,
    champion_live: LiveTally | None,
    challenger_live: LiveTally | None,
) -> str | None:
    """Why the challenger fails: its window's SLOs, or its live metric over the step, with the
    numbers; None if it meets every bound. Live metrics are compared once both versions have
    `min_live_labels` labels in the step."""
    if policy.max_error_rate is not None and report.requests > 0:
        rate = report.errors / report.requests
        if rate > policy.max_error_rate:
            return (
                f"error rate {percent(rate)} ({report.errors}/{report.requests}) exceeds the SLO "
                f"{percent(policy.max_error_rate)}"
            )
    p99 = report.latency_p99_ms
    if policy.max_latency_p99_ms is not None and p99 is not None and p99 > policy.max_latency_p99_ms:
        return f"p99 latency {milliseconds(p99)} exceeds the SLO {milliseconds(policy.max_latency_p99_ms)}"
    return _live_problem(champion_live, challenger_live, policy)


def _live_problem(
    champion: LiveTally | None, challenger: LiveTally | None, policy: RolloutRules
) -> str | None:
    """Why the challenger's live metric over the step is not non-inferior to the champion's."""
    if champion is None or challenger is None or challenger.metric != champion.metric:
        return None
    if min(champion.labels, challenger.labels) < policy.min_live_labels:
        return None
    # Live metrics are "higher is better" (accuracy, negated MAE); the monitor reports them that way.
    # The margin is absolute for accuracy, relative to the champion for unbounded metrics (an error
    # of 30 units and one of 0.3 deserve the same tolerance).
    margin = policy.live_margin if champion.metric == "accuracy" else policy.live_margin * abs(champion.value)
    shortfall = champion.value - margin - challenger.value
    if shortfall <= 0:
        return None
    # A few dozen labels are noisy: roll back only when the challenger is worse beyond the margin
    # with the policy's confidence (a one-sided z-test on the two means), else let the step gather
    # more labels. Without the spread of the scores, the point comparison decides.
    beyond = ""
    champion_variance, challenger_variance = champion.variance, challenger.variance
    if champion_variance is not None and challenger_variance is not None:
        z = NormalDist().inv_cdf(policy.live_confidence)
        error = math.sqrt(champion_variance / champion.labels + challenger_variance / challenger.labels)
        if shortfall <= z * error:
            return None
        bound = f"{z:.2f} x standard error {error:.3g}"
        beyond = f", beyond the {policy.live_confidence:.0%} confidence bound ({bound})"
    return (
        f"live {challenger.metric} {challenger.value:.4f} on {challenger.labels} labels is below the "
        f"champion's {champion.value:.4f} (on {champion.labels}) minus the margin {margin:.4g}{beyond}"
    )


def on_health_reported(
    state: ModelRollout, event: ModelHealthReported, policy: RolloutRules, *, now: datetime
) -> Transition:
    """Advance, hold or roll back the challenger on a health window; note the champion's live metric.

    A shadow stage or canary step advances once the challenger has served at least
    `min_requests_per_step` requests in it and its latest window meets the error-rate and latency
    SLOs and is non-inferior to the champion's live metric (when both have labels). A window that
    fails any of these rolls the challenger back at once. The last canary step passing promotes it.
    """
    if _seen(state, event):
        return Transition(state)
    step = _Step(state, event, policy, now)
    champion, challenger = state.champion, state.challenger
    if champion is not None and event.version == champion.version and event.route == "champion":
        tally = LiveTally.add(state.champion_live, event)
        if tally == state.champion_live:
            return Transition(state)
        step.set(champion_live=tally)
        return step.done("")
    expected_route = {"shadow": "shadow", "canary": "challenger"}.get(state.stage)
    if challenger is None or event.version != challenger.version or event.route != expected_route:
        return Transition(state)
    if state.last_window_end is not None and event.window_end <= state.last_window_end:
        return Transition(state)
    challenger_live = LiveTally.add(state.challenger_live, event)
    step.set(last_window_end=event.window_end, challenger_live=challenger_live)
    problem = _health_problem(event, policy, state.champion_live, challenger_live)
    where = "shadow" if state.stage == "shadow" else f"canary at {percent(state.weight)}"
    if problem is not None:
        return _withdraw_challenger(step, f"{problem} ({where})", decided_by=PRODUCER)
    requests = state.step_requests + event.requests
    step.set(step_requests=requests)
    if requests < policy.min_requests_per_step:
        return step.done("")
    passed = (
        f"{where} passed: {requests} requests (minimum {policy.min_requests_per_step}), "
        f"last window {event.errors} errors, p99 {milliseconds(event.latency_p99_ms)}"
        + (
            f", live {challenger_live.metric} {challenger_live.value:.4f} on {challenger_live.labels} labels"
            if challenger_live is not None
            else ""
        )
    )
    if state.stage == "shadow":
        return _past_shadow(step, passed, evidence=passed)
    if state.step_index + 1 < len(policy.canary_steps):
        return _enter_canary_step(step, state.step_index + 1, passed)
    return _promote(step, passed)


def on_slo_breached(
    state: ModelRollout, event: SloBreached, policy: RolloutRules, *, now: datetime
) -> Transition:
    """Roll back the version that breached.

    A challenger is withdrawn (the champion answers everything); a champion is replaced by the
    last known good version, or, with none left, the breach is only recorded.
    """
    if _seen(state, event):
        return Transition(state)
    step = _Step(state, event, policy, now)
    why = (
        f"SLO {event.slo} breached: observed {event.observed:g} vs objective {event.objective:g} "
        f"({event.window_start.isoformat()} to {event.window_end.isoformat()})"
    )
    if state.challenger is not None and event.version == state.challenger.version:
        return _withdraw_challenger(step, why, decided_by=PRODUCER)
    if state.champion is not None and event.version == state.champion.version:
        if state.last_known_good is None:
            step.decide(f"{why}; no last known good version of {state.model} to roll back to", event.version)
            return step.done("")
        return _replace_champion(step, state.last_known_good, why, decided_by=PRODUCER)
    return Transition(state)


def on_approval_granted(
    state: ModelRollout,
    event: ApprovalGranted,
    policy: RolloutRules,
    keys: ApproverKeys,
    *,
    now: datetime,
    topic_prefix: str,
    nonce_seen: bool,
) -> Transition:
    """Move a waiting version to its first canary step if the approval is valid; else reject it.

    A model's first version (no champion yet) becomes champion on a valid approval.

    An invalid approval (unlisted approver, no key, bad signature, a version that is not waiting,
    or one not bound to the waiting artifact's digest, to this fleet's `topic_prefix`, to a time
    still ahead, or to a nonce not used before: `nonce_seen`) is published as `ApprovalRejected`
    by the deployer with the reason, and the version keeps waiting.
    """
    if _seen(state, event):
        return Transition(state)
    step = _Step(state, event, policy, now)
    waiting = state.challenger
    if state.stage != "awaiting_approval" or state.pending_approval != event.version or waiting is None:
        problem: str | None = (
            f"version {event.version} of {state.model} is not awaiting approval "
            f"(waiting: {state.pending_approval or 'none'})"
        )
    else:
        expected = Expected(digest=waiting.digest, topic_prefix=topic_prefix, now=now, nonce_seen=nonce_seen)
        problem = verify_approval(event, policy.approvers, keys, expected)
    if problem is not None:
        step.decide(f"approval by {event.approver!r} rejected: {problem}", event.version)
        step.emit(
            ApprovalRejected,
            model=state.model,
            version=event.version,
            rejected_by=PRODUCER,
            reason=problem,
        )
        return step.done("")
    reason = f"approved by {event.approver}" + (f" ({event.comment})" if event.comment else "")
    if state.champion is None:
        # Nothing serves the model yet: a canary would leave the rest of the traffic unanswered.
        return _promote(step, reason)
    return _enter_canary_step(step, 0, reason)


def on_approval_rejected(
    state: ModelRollout, event: ApprovalRejected, policy: RolloutRules, *, now: datetime
) -> Transition:
    """A person refused the waiting version: it is withdrawn and never takes live traffic.

    Rejections the deployer itself published (invalid approvals) leave the version waiting.
    """
    if _seen(state, event) or event.rejected_by == PRODUCER or state.pending_approval != event.version:
        return Transition(state)
    step = _Step(state, event, policy, now)
    challenger = state.challenger
    assert challenger is not None
    step.set(stage="rolled_back", **NO_CHALLENGER)
    reason = f"version {challenger.version} rejected by {event.rejected_by}: {event.reason}"
    step.decide(reason, challenger.version)
    return step.done(reason)


def on_rollback_requested(
    state: ModelRollout, event: RollbackRequested, policy: RolloutRules, *, now: datetime
) -> Transition:
    """Carry out a person's rollback: to a named passing version, or to the last known good one.

    Without a version, a challenger in rollout is withdrawn (the champion is the last known good
    for it); with none in rollout, the champion is replaced by the last known good version.
    Raises `RolloutRefused` when there is nothing to roll back to or the version is unknown.
    """
    if _seen(state, event):
        return Transition(state)
    if state.stage == "retired":
        raise RolloutRefused(f"{state.model} is retired; there is nothing to roll back")
    step = _Step(state, event, policy, now)
    why = f"requested by {event.producer}: {event.reason}"
    if event.to_version is None:
        if state.challenger is not None and state.champion is not None:
            return _withdraw_challenger(step, why, decided_by=event.producer)
        if state.champion is None or state.last_known_good is None:
            raise RolloutRefused(
                f"{state.model} has no last known good version to roll back to; name one with --to "
                f"(known: {', '.join(t.version for t in state.versions) or 'none'})"
            )
        return _replace_champion(step, state.last_known_good, why, decided_by=event.producer)
    target = state.version(event.to_version)
    if target is None:
        raise RolloutRefused(
            f"{state.model} has no passing version {event.to_version!r} to roll back to "
            f"(known: {', '.join(t.version for t in state.versions) or 'none'})"
        )
    if state.champion == target:
        if state.challenger is not None:
            return _withdraw_challenger(step, why, decided_by=event.producer)
        return Transition(state)
    if state.champion is None:
        raise RolloutRefused(f"{state.model} has no champion; nothing serves that could be rolled back")
    return _replace_champion(step, target, why, decided_by=event.producer)


def on_model_retired(
    state: ModelRollout, event: ModelSpecRetired, policy: RolloutRules, *, now: datetime
) -> Transition:
    """The model leaves the fleet: its routing table is emptied and nothing serves it any more."""
    if _seen(state, event) or state.stage == "retired":
        return Transition(state)
    step = _Step(state, event, policy, now)
    step.set(
        stage="retired",
        champion=None,
        last_known_good=None,
        **NO_CHALLENGER,
        champion_live=None,
    )
    reason = f"retired: {event.reason}"
    step.decide(reason, None)
    return step.done(reason)
