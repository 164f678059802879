"""The rollout state machine: shadow, approval, canary steps, promotion, rollback and retirement."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.policies import InvalidPolicy, Overrides, resolve_policy
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
    RiskPolicy,
    RollbackRequested,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.specs import MonitoringPolicy, RolloutPolicy
from modelfleet_deployer.approvals import ApproverKeys
from modelfleet_deployer.rollout import (
    ModelRollout,
    RolloutRefused,
    RolloutRules,
    Transition,
    on_approval_granted,
    on_approval_rejected,
    on_health_reported,
    on_model_registered,
    on_model_retired,
    on_rollback_requested,
    on_slo_breached,
    rollout_from_table,
    rollout_rules,
)

from .deployer_builders import TOPIC_PREFIX, signed_approval

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Ed25519PrivateKey.generate()
MALLORY = Ed25519PrivateKey.generate()
MODEL = "churn"
ALICE_KEYS = ApproverKeys.from_lines(
    [f"alice {base64.b64encode(ALICE.public_key().public_bytes_raw()).decode()}"]
)


def risk_policy(name: str, approvers: list[str] | None = None) -> RiskPolicy:
    policy = RiskPolicy.model_validate(yaml.safe_load((POLICY_DIR / f"{name}.yaml").read_text()))
    if approvers is None:
        return policy
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"approvers": approvers})})


def effective_policy(
    risk: RiskPolicy, rollout: RolloutPolicy, monitoring: MonitoringPolicy | None = None
) -> RolloutRules:
    """The rollout rules the deployer derives for a spec's overrides, as its handlers do."""
    overrides = Overrides(rollout=rollout, monitoring=monitoring or MonitoringPolicy())
    return rollout_rules(resolve_policy(risk, overrides, loosened="floor"))


def low_risk(**overrides: object) -> RolloutRules:
    """The low-risk policy with canary steps 10 → 50 → 100 and 100 requests per step."""
    rollout = RolloutPolicy.model_validate(
        {"canary_steps": [10, 50, 100], "min_requests_per_step": 100} | overrides
    )
    return effective_policy(risk_policy("low"), rollout)


def high_risk() -> RolloutRules:
    """The high-risk policy (shadow, approval) listing alice, with short steps for the tests."""
    rollout = RolloutPolicy(canary_steps=[10, 100], min_requests_per_step=100)
    return effective_policy(risk_policy("high", approvers=["alice"]), rollout)


@dataclass
class Deployer:
    """Feeds inputs to the state machine like the handlers will, keeping every published event."""

    policy: RolloutRules
    keys: ApproverKeys = field(default_factory=lambda: ApproverKeys.from_lines([]))
    state: ModelRollout = field(default_factory=lambda: ModelRollout(MODEL))
    published: list[Event] = field(default_factory=list)
    clock: datetime = START

    def apply(self, event: Event) -> Transition:
        self.clock += timedelta(minutes=1)
        now = self.clock
        if isinstance(event, ModelRegistered):
            transition = on_model_registered(self.state, event, self.policy, now=now)
        elif isinstance(event, ModelHealthReported):
            transition = on_health_reported(self.state, event, self.policy, now=now)
        elif isinstance(event, SloBreached):
            transition = on_slo_breached(self.state, event, self.policy, now=now)
        elif isinstance(event, ApprovalGranted):
            transition = on_approval_granted(
                self.state,
                event,
                self.policy,
                self.keys,
                now=now,
                topic_prefix=TOPIC_PREFIX,
                nonce_seen=False,
            )
        elif isinstance(event, ApprovalRejected):
            transition = on_approval_rejected(self.state, event, self.policy, now=now)
        elif isinstance(event, RollbackRequested):
            transition = on_rollback_requested(self.state, event, self.policy, now=now)
        elif isinstance(event, ModelSpecRetired):
            transition = on_model_retired(self.state, event, self.policy, now=now)
        else:
            raise AssertionError(f"no transition for {event.event_type}")
        self.state = transition.state
        self.published.extend(transition.events)
        return transition

    def of(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.published if isinstance(event, kind)]

    def tables(self) -> list[DeploymentChanged]:
        return [event for event in self.published if isinstance(event, DeploymentChanged)]

    def serving(self) -> tuple[str | None, str | None, float]:
        """(champion, challenger, weight) of the last published table."""
        table = self.tables()[-1]
        champion = table.champion.version if table.champion else None
        challenger = table.challenger.version if table.challenger else None
        return champion, challenger, table.challenger_weight


def registered(version: str, *, passed: bool = True) -> ModelRegistered:
    return ModelRegistered(
        producer="registry",
        model=MODEL,
        version=version,
        run_id=f"run-{version}",
        model_uri=f"models:/{MODEL}/{version}",
        digest=f"{version:0>64}",
        signature="c2lnbmF0dXJl",
        signing_key_id="0123456789abcdef",
        passed_evaluation=passed,
    )


_windows = iter(range(1, 10_000))


def health(
    version: str,
    requests: int,
    *,
    route: str = "challenger",
    errors: int = 0,
    p99: float = 40.0,
    accuracy: float | None = None,
    labelled: int = 0,
    neg_mae: tuple[float, float] | None = None,
) -> ModelHealthReported:
    """A health window of its own (each call is a later window); `neg_mae` is (mean, std)."""
    start = START + timedelta(hours=next(_windows))
    return ModelHealthReported.model_validate(
        {
            "producer": "monitor",
            "model": MODEL,
            "version": version,
            "window_start": start,
            "window_end": start + timedelta(minutes=5),
            "route": route,
            "requests": requests,
            "errors": errors,
            "latency_p99_ms": p99,
            "labelled": labelled,
            "live_metric": "neg_mae" if neg_mae else None if accuracy is None else "accuracy",
            "live_metric_value": neg_mae[0] if neg_mae else accuracy,
            "live_metric_std": neg_mae[1] if neg_mae else None,
        }
    )


def breach(
    version: str, slo: str = "error_rate", objective: float = 0.05, observed: float = 0.12
) -> SloBreached:
    return SloBreached(
        producer="monitor",
        model=MODEL,
        version=version,
        window_start=START,
        window_end=START + timedelta(minutes=5),
        slo=slo,
        objective=objective,
        observed=observed,
    )


def approval(approver: str, key: Ed25519PrivateKey, version: str = "2") -> ApprovalGranted:
    return signed_approval(
        key,
        MODEL,
        version,
        approver=approver,
        digest=f"{version:0>64}",
        topic_prefix=TOPIC_PREFIX,
        expires_at=START + timedelta(days=1),
        nonce=f"nonce-{approver}-{version}",
    )


def rollback(to_version: str | None = None) -> RollbackRequested:
    return RollbackRequested(producer="cli:oncall", model=MODEL, to_version=to_version, reason="pager at 3am")


def with_champion(policy: RolloutRules) -> Deployer:
    """Version 1 serves as champion (approved by alice when the policy requires approval)."""
    deployer = Deployer(policy, ALICE_KEYS)
    deployer.apply(registered("1"))
    if policy.requires_approval:
        deployer.apply(approval("alice", ALICE, version="1"))
    assert deployer.state.champion is not None
    assert deployer.state.champion.version == "1"
    return deployer


def in_canary(policy: RolloutRules | None = None) -> Deployer:
    deployer = with_champion(policy or low_risk())
    deployer.apply(registered("2"))
    assert deployer.state.stage == "canary"
    return deployer


# --- promotion --------------------------------------------------------------------------------


def test_the_first_passing_version_becomes_champion_at_once() -> None:
    deployer = Deployer(low_risk())
    deployer.apply(registered("1"))
    assert deployer.state.stage == "promoted"
    assert deployer.serving() == ("1", None, 0.0)
    (promoted,) = deployer.of(ModelPromoted)
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.version, promoted.previous_version, promoted.decided_by) == ("1", None, "deployer")


def test_the_routing_table_tells_serving_which_dataset_version_a_version_was_trained_on() -> None:
    deployer = Deployer(low_risk())
    event = registered("1")
    deployer.apply(event.model_copy(update={"lineage": {"dataset_version": "ds-4f2a"}}))
    champion = deployer.tables()[-1].champion
    assert champion is not None
    assert champion.dataset_version == "ds-4f2a"


def test_a_high_risk_models_first_version_waits_for_approval_before_taking_any_traffic() -> None:
    deployer = Deployer(high_risk(), ALICE_KEYS)
    deployer.apply(registered("1"))
    assert deployer.state.stage == "awaiting_approval"
    assert deployer.state.pending_approval == "1"
    assert deployer.of(ModelPromoted) == []
    table = deployer.tables()[-1]
    assert (table.stage, table.champion, table.challenger, table.shadows) == (
        "awaiting_approval",
        None,
        None,
        [],
    )
    (requested,) = deployer.of(ApprovalRequested)
    assert isinstance(requested, ApprovalRequested)
    assert (requested.version, requested.risk_class, requested.approvers) == ("1", "high", ["alice"])
    assert "first passing version of churn" in requested.evidence


def test_an_authorized_approval_makes_a_high_risk_models_first_version_champion() -> None:
    deployer = Deployer(high_risk(), ALICE_KEYS)
    deployer.apply(registered("1"))
    deployer.apply(approval("alice", ALICE, version="1"))
    assert deployer.state.stage == "promoted"
    assert deployer.serving() == ("1", None, 0.0)
    (promoted,) = deployer.of(ModelPromoted)
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.version, promoted.previous_version) == ("1", None)
    assert "approved by alice" in promoted.reason


def test_an_unauthorized_approval_leaves_a_high_risk_models_first_version_out_of_traffic() -> None:
    deployer = Deployer(high_risk(), ALICE_KEYS)
    deployer.apply(registered("1"))
    deployer.apply(approval("mallory", MALLORY, version="1"))
    assert deployer.state.stage == "awaiting_approval"
    assert deployer.state.champion is None
    assert deployer.of(ModelPromoted) == []
    assert len(deployer.of(ApprovalRejected)) == 1


def test_a_medium_risk_models_first_version_becomes_champion_without_approval() -> None:
    deployer = Deployer(effective_policy(risk_policy("medium"), RolloutPolicy()))
    deployer.apply(registered("1"))
    assert deployer.state.stage == "promoted"
    assert deployer.of(ApprovalRequested) == []


def test_a_version_that_failed_evaluation_is_never_rolled_out() -> None:
    deployer = with_champion(low_risk())
    before = deployer.state
    transition = deployer.apply(registered("2", passed=False))
    assert transition.state == before
    assert transition.events == ()


def test_a_low_risk_model_goes_from_candidate_through_canary_10_50_100_to_promoted_with_no_human() -> None:
    deployer = in_canary()
    assert deployer.serving() == ("1", "2", 0.1)
    deployer.apply(health("2", 100))
    assert deployer.serving() == ("1", "2", 0.5)
    deployer.apply(health("2", 100))
    assert deployer.serving() == ("1", "2", 1.0)
    deployer.apply(health("2", 100))
    assert deployer.serving() == ("2", None, 0.0)
    assert [table.stage for table in deployer.tables()] == [
        "promoted",
        "canary",
        "canary",
        "canary",
        "promoted",
    ]
    promoted = deployer.of(ModelPromoted)[-1]
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.version, promoted.previous_version) == ("2", "1")
    assert "100 requests (minimum 100)" in promoted.reason
    assert deployer.state.last_known_good is not None
    assert deployer.state.last_known_good.version == "1"


def test_a_canary_step_does_not_advance_below_the_minimum_request_count() -> None:
    deployer = in_canary()
    transition = deployer.apply(health("2", 60))
    assert transition.events == ()
    assert deployer.state.weight == 0.1
    deployer.apply(health("2", 39))
    assert deployer.state.weight == 0.1
    deployer.apply(health("2", 1))
    assert deployer.state.weight == 0.5


def test_the_request_count_starts_again_in_every_step() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 250))
    assert deployer.state.weight == 0.5
    deployer.apply(health("2", 50))
    assert deployer.state.weight == 0.5


def test_health_of_the_champion_or_of_another_version_does_not_advance_the_canary() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 500, route="champion"))
    deployer.apply(health("3", 500))
    deployer.apply(health("2", 500, route="shadow"))
    assert deployer.state.weight == 0.1


def test_a_newer_passing_version_replaces_the_challenger_and_starts_from_the_first_step() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 100))
    deployer.apply(registered("3"))
    assert deployer.serving() == ("1", "3", 0.1)
    assert "version 2 superseded by 3" in [decision.reason for decision in deployer.state.history]


# --- automatic rollback -----------------------------------------------------------------------


def test_an_slo_breach_during_canary_rolls_back_to_the_last_known_good_with_the_numbers() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 100))
    deployer.apply(breach("2", slo="error_rate", objective=0.05, observed=0.12))
    assert deployer.state.stage == "rolled_back"
    assert deployer.serving() == ("1", None, 0.0)
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert (rolled_back.from_version, rolled_back.to_version, rolled_back.decided_by) == (
        "2",
        "1",
        "deployer",
    )
    assert "SLO error_rate breached: observed 0.12 vs objective 0.05" in rolled_back.reason


def test_an_error_rate_above_the_slo_in_a_health_window_rolls_back_with_the_numbers() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 200, errors=20))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert "error rate 10% (20/200) exceeds the SLO 5% (canary at 10%)" in rolled_back.reason
    assert deployer.serving() == ("1", None, 0.0)


def test_a_p99_latency_above_the_slo_rolls_back_even_before_the_minimum_request_count() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 5, p99=1500))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert "p99 latency 1500 ms exceeds the SLO 1000 ms" in rolled_back.reason


def test_worse_live_accuracy_than_the_champion_rolls_back() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", accuracy=0.91, labelled=400))
    deployer.apply(health("2", 100, accuracy=0.70, labelled=100))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert (
        "live accuracy 0.7000 on 100 labels is below the champion's 0.9100 (on 400) minus the margin 0.05, "
        "beyond the 90% confidence bound" in rolled_back.reason
    )
    assert deployer.serving() == ("1", None, 0.0)


def test_a_shortfall_within_the_noise_of_a_few_dozen_labels_does_not_roll_back() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", accuracy=0.97, labelled=32))
    deployer.apply(health("2", 100, accuracy=0.84, labelled=31))
    assert deployer.of(ModelRolledBack) == []


def test_a_regressor_is_held_to_a_margin_relative_to_the_champions_error_and_to_its_noise() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", neg_mae=(-26.4, 20.0), labelled=40))
    # A third more error than the champion, but on 20 labels with errors spread by 30: noise.
    deployer.apply(health("2", 30, neg_mae=(-35.0, 30.0), labelled=20))
    assert deployer.of(ModelRolledBack) == []
    deployer.apply(health("2", 30, neg_mae=(-40.6, 12.0), labelled=200))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert "live neg_mae -40.0909 on 220 labels" in rolled_back.reason
    assert "minus the margin 1.32, beyond the 90% confidence bound" in rolled_back.reason


def test_live_accuracy_within_the_margin_of_the_champion_is_non_inferior_and_advances() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", accuracy=0.91, labelled=400))
    deployer.apply(health("2", 100, accuracy=0.88, labelled=50))
    assert deployer.of(ModelRolledBack) == []
    assert deployer.state.weight == 0.5


def test_a_window_with_too_few_labels_is_not_compared_on_live_accuracy() -> None:
    deployer = in_canary()  # low risk: min_live_labels 20
    deployer.apply(health("1", 900, route="champion", accuracy=0.91, labelled=400))
    deployer.apply(health("2", 30, accuracy=0.0, labelled=3))
    assert deployer.of(ModelRolledBack) == []
    deployer.apply(health("2", 30, accuracy=0.5, labelled=20))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    # Labels add up over the step: (0.0 x 3 + 0.5 x 20) / 23.
    assert "live accuracy 0.4348 on 23 labels" in rolled_back.reason


def test_live_accuracy_is_compared_on_the_labels_of_the_whole_step_not_one_window() -> None:
    deployer = in_canary()
    for _ in range(4):  # each window alone is below the 20 labels low risk asks for
        deployer.apply(health("1", 100, route="champion", accuracy=0.9, labelled=10))
        deployer.apply(health("2", 10, accuracy=0.6, labelled=10))
    (rolled_back,) = deployer.of(ModelRolledBack)
    assert isinstance(rolled_back, ModelRolledBack)
    assert "live accuracy 0.6000 on 20 labels is below the champion's 0.9000 (on 20)" in rolled_back.reason


def test_a_new_canary_step_scores_both_versions_afresh() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", accuracy=0.91, labelled=400))
    deployer.apply(health("2", 100, accuracy=0.90, labelled=50))
    assert deployer.state.weight == 0.5
    assert (deployer.state.champion_live, deployer.state.challenger_live) == (None, None)


def test_the_champions_live_accuracy_on_too_few_labels_is_no_reference() -> None:
    deployer = in_canary()
    deployer.apply(health("1", 900, route="champion", accuracy=1.0, labelled=5))
    deployer.apply(health("2", 100, accuracy=0.80, labelled=50))
    assert deployer.of(ModelRolledBack) == []


def test_a_breach_of_the_promoted_champion_rolls_back_to_the_previous_champion() -> None:
    deployer = in_canary()
    for _ in range(3):
        deployer.apply(health("2", 100))
    deployer.apply(breach("2", slo="latency_p99_ms", objective=1000, observed=2400))
    assert deployer.serving() == ("1", None, 0.0)
    rolled_back = deployer.of(ModelRolledBack)[-1]
    assert isinstance(rolled_back, ModelRolledBack)
    assert (rolled_back.from_version, rolled_back.to_version) == ("2", "1")
    assert deployer.state.last_known_good is None


def test_a_breach_with_no_last_known_good_is_recorded_and_changes_no_routing() -> None:
    deployer = with_champion(low_risk())
    transition = deployer.apply(breach("1"))
    assert transition.events == ()
    assert deployer.serving() == ("1", None, 0.0)
    assert "no last known good version of churn to roll back to" in transition.state.history[-1].reason


def test_a_breach_of_a_version_no_longer_in_traffic_changes_nothing() -> None:
    deployer = in_canary()
    deployer.apply(breach("2"))
    before = deployer.state
    assert deployer.apply(breach("2")).state == before


# --- shadow and approval ----------------------------------------------------------------------


def test_a_policy_with_shadow_mirrors_traffic_to_the_challenger_before_any_canary() -> None:
    deployer = with_champion(low_risk(shadow=True))
    deployer.apply(registered("2"))
    table = deployer.tables()[-1]
    assert table.stage == "shadow"
    assert [target.version for target in table.shadows] == ["2"]
    assert (table.challenger, table.challenger_weight) == (None, 0.0)
    deployer.apply(health("2", 100, route="shadow"))
    assert deployer.serving() == ("1", "2", 0.1)
    assert deployer.tables()[-1].shadows == []


def test_a_high_risk_model_stops_at_awaiting_approval_and_asks_the_policy_approvers() -> None:
    deployer = with_champion(high_risk())
    deployer.apply(registered("2"))
    deployer.apply(health("2", 100, route="shadow"))
    assert deployer.state.stage == "awaiting_approval"
    assert deployer.state.pending_approval == "2"
    assert deployer.serving() == ("1", None, 0.0)
    requested = deployer.of(ApprovalRequested)[-1]
    assert isinstance(requested, ApprovalRequested)
    assert (requested.version, requested.risk_class, requested.approvers) == ("2", "high", ["alice"])
    assert "shadow passed: 100 requests" in requested.evidence


def awaiting_approval() -> Deployer:
    deployer = with_champion(high_risk())
    deployer.apply(registered("2"))
    deployer.apply(health("2", 100, route="shadow"))
    assert deployer.state.stage == "awaiting_approval"
    return deployer


def test_an_approval_by_an_approver_not_in_the_policy_is_rejected_and_the_version_keeps_waiting() -> None:
    deployer = awaiting_approval()
    deployer.apply(approval("mallory", MALLORY))
    (rejected,) = deployer.of(ApprovalRejected)
    assert isinstance(rejected, ApprovalRejected)
    assert rejected.rejected_by == "deployer"
    assert "'mallory' is not an approver of churn" in rejected.reason
    assert deployer.state.stage == "awaiting_approval"


def test_a_badly_signed_approval_is_rejected_and_the_version_keeps_waiting() -> None:
    deployer = awaiting_approval()
    deployer.apply(approval("alice", MALLORY))
    (rejected,) = deployer.of(ApprovalRejected)
    assert isinstance(rejected, ApprovalRejected)
    assert "signature of 'alice' does not verify for churn:2" in rejected.reason
    assert deployer.state.pending_approval == "2"
    assert deployer.serving() == ("1", None, 0.0)


def test_an_authorized_approval_moves_the_version_to_its_first_canary_step() -> None:
    deployer = awaiting_approval()
    deployer.apply(approval("alice", ALICE))
    assert deployer.of(ApprovalRejected) == []
    assert deployer.state.stage == "canary"
    assert deployer.serving() == ("1", "2", 0.1)
    assert "approved by alice" in deployer.tables()[-1].reason


def test_an_approval_for_a_version_that_is_not_waiting_is_rejected() -> None:
    deployer = awaiting_approval()
    deployer.apply(approval("alice", ALICE, version="7"))
    (rejected,) = deployer.of(ApprovalRejected)
    assert isinstance(rejected, ApprovalRejected)
    assert rejected.reason == "version 7 of churn is not awaiting approval (waiting: 2)"


def test_a_person_rejecting_the_waiting_version_withdraws_it() -> None:
    deployer = awaiting_approval()
    deployer.apply(
        ApprovalRejected(producer="cli:alice", model=MODEL, version="2", rejected_by="alice", reason="bias")
    )
    assert deployer.state.stage == "rolled_back"
    assert deployer.state.challenger is None
    assert deployer.tables()[-1].shadows == []


def test_the_deployers_own_rejection_of_an_invalid_approval_does_not_withdraw_the_version() -> None:
    deployer = awaiting_approval()
    own = ApprovalRejected(producer="deployer", model=MODEL, version="2", rejected_by="deployer", reason="x")
    assert deployer.apply(own).events == ()
    assert deployer.state.stage == "awaiting_approval"


# --- people's rollbacks and retirement --------------------------------------------------------


def promoted_three_times() -> Deployer:
    deployer = with_champion(low_risk(canary_steps=[100]))
    for version in ("2", "3"):
        deployer.apply(registered(version))
        deployer.apply(health(version, 100))
    assert deployer.serving() == ("3", None, 0.0)
    return deployer


def test_a_manual_rollback_to_a_named_version_serves_that_version() -> None:
    deployer = promoted_three_times()
    deployer.apply(rollback(to_version="1"))
    assert deployer.serving() == ("1", None, 0.0)
    rolled_back = deployer.of(ModelRolledBack)[-1]
    assert isinstance(rolled_back, ModelRolledBack)
    assert (rolled_back.from_version, rolled_back.to_version, rolled_back.decided_by) == (
        "3",
        "1",
        "cli:oncall",
    )
    assert "pager at 3am" in rolled_back.reason


def test_a_manual_rollback_without_a_version_goes_to_the_last_known_good() -> None:
    deployer = promoted_three_times()
    deployer.apply(rollback())
    assert deployer.serving() == ("2", None, 0.0)


def test_a_manual_rollback_during_a_canary_withdraws_the_challenger() -> None:
    deployer = in_canary()
    deployer.apply(rollback())
    assert deployer.serving() == ("1", None, 0.0)
    assert deployer.state.stage == "rolled_back"


def test_a_rollback_to_an_unknown_version_is_refused_with_the_known_ones() -> None:
    deployer = promoted_three_times()
    with pytest.raises(RolloutRefused, match=r"no passing version '9' to roll back to \(known: 1, 2, 3\)"):
        deployer.apply(rollback(to_version="9"))


def test_a_rollback_with_no_last_known_good_is_refused() -> None:
    deployer = with_champion(low_risk())
    with pytest.raises(RolloutRefused, match="no last known good version to roll back to"):
        deployer.apply(rollback())


def test_retirement_empties_the_routing_table() -> None:
    deployer = in_canary()
    deployer.apply(ModelSpecRetired(producer="cli:owner", model=MODEL, reason="product discontinued"))
    table = deployer.tables()[-1]
    assert (table.stage, table.champion, table.challenger, table.shadows) == ("retired", None, None, [])
    assert table.reason == "retired: product discontinued"


# --- idempotency, revisions, envelope ---------------------------------------------------------


def test_redelivered_inputs_change_nothing() -> None:
    deployer = awaiting_approval()
    inputs: list[Event] = [
        approval("mallory", MALLORY),
        approval("alice", ALICE),
        health("2", 100),
        breach("2"),
    ]
    for event in inputs:
        deployer.apply(event)
        state, published = deployer.state, len(deployer.published)
        transition = deployer.apply(event)
        assert (transition.state, transition.events, len(deployer.published)) == (state, (), published)


def test_the_same_health_window_reported_again_is_counted_once() -> None:
    deployer = in_canary()
    window = health("2", 60)
    deployer.apply(window)
    deployer.apply(window.model_copy(update={"event_id": registered("x").event_id}))
    assert deployer.state.step_requests == 60
    assert deployer.state.weight == 0.1


def test_a_redelivered_registration_is_not_rolled_out_twice() -> None:
    deployer = in_canary()
    deployer.apply(health("2", 100))
    deployer.apply(registered("2"))
    assert deployer.state.weight == 0.5


def test_table_revisions_strictly_increase_over_a_whole_life() -> None:
    deployer = awaiting_approval()
    deployer.apply(approval("alice", ALICE))
    deployer.apply(health("2", 100))
    deployer.apply(health("2", 100))
    deployer.apply(registered("3"))
    deployer.apply(health("3", 100))
    deployer.apply(rollback(to_version="1"))
    deployer.apply(ModelSpecRetired(producer="cli:owner", model=MODEL, reason="gone"))
    revisions = [table.revision for table in deployer.tables()]
    assert revisions == list(range(1, len(revisions) + 1))
    assert deployer.state.revision == revisions[-1]


def test_published_events_come_from_the_deployer_and_carry_the_cause() -> None:
    deployer = with_champion(low_risk())
    cause = registered("2")
    transition = deployer.apply(cause)
    assert transition.events
    for event in transition.events:
        assert (event.producer, event.correlation_id, event.causation_id) == (
            "deployer",
            cause.correlation_id,
            cause.event_id,
        )


def test_the_same_input_on_the_same_state_yields_the_same_event_ids() -> None:
    deployer = with_champion(low_risk())
    cause = registered("2")
    first = on_model_registered(deployer.state, cause, deployer.policy, now=START)
    second = on_model_registered(deployer.state, cause, deployer.policy, now=START)
    assert [event.event_id for event in first.events] == [event.event_id for event in second.events]


# --- policy -----------------------------------------------------------------------------------


def test_the_rollout_rules_take_slos_and_approvers_from_the_risk_class_unless_the_spec_sets_them() -> None:
    policy = effective_policy(
        risk_policy("high", approvers=["alice", "bob"]),
        RolloutPolicy(canary_steps=[20, 100], min_requests_per_step=2000),
        MonitoringPolicy(max_latency_p99_ms=80),
    )
    assert policy == RolloutRules(
        risk_class="high",
        shadow=True,
        canary_steps=(20, 100),
        min_requests_per_step=2000,
        requires_approval=True,
        approvers=("alice", "bob"),
        max_error_rate=0.01,
        max_latency_p99_ms=80,
        live_margin=0.02,
        min_live_labels=50,
    )


def test_a_spec_that_drops_a_required_approval_is_still_rolled_out_with_the_approval() -> None:
    policy = effective_policy(risk_policy("critical"), RolloutPolicy(requires_approval=False, shadow=False))
    assert policy.requires_approval is True
    assert policy.shadow is True
    assert policy.canary_steps == (1, 5, 25, 50, 100)


def test_canary_steps_that_do_not_increase_are_refused() -> None:
    with pytest.raises(
        InvalidPolicy,
        match=r"canary_steps must strictly increase within 1..100 .*, got \[50, 10\]",
    ):
        effective_policy(risk_policy("low"), RolloutPolicy(canary_steps=[50, 10]))


def test_empty_canary_steps_are_refused() -> None:
    with pytest.raises(InvalidPolicy, match=r"canary_steps must not be empty \(the spec"):
        effective_policy(risk_policy("low"), RolloutPolicy(canary_steps=[]))


# --- durability: the latest table is enough to rebuild the state ------------------------------


def rebuilt(deployer: Deployer) -> Deployer:
    """A deployer that lost its store and rebuilt the state from the last table it published."""
    last = deployer.tables()[-1]
    return Deployer(deployer.policy, deployer.keys, rollout_from_table(last), [last], deployer.clock)


def assert_rebuilds(deployer: Deployer) -> ModelRollout:
    state = rollout_from_table(deployer.tables()[-1])
    assert state.durable == deployer.state.durable
    assert (state.model, state.revision) == (deployer.state.model, deployer.state.revision)
    return state


def canary_step_2() -> Deployer:
    deployer = in_canary()
    deployer.apply(health("2", 100))
    assert (deployer.state.step_index, deployer.state.weight) == (1, 0.5)
    return deployer


def rolled_back() -> Deployer:
    deployer = in_canary()
    deployer.apply(breach("2"))
    assert deployer.state.stage == "rolled_back"
    return deployer


def retired() -> Deployer:
    deployer = promoted_three_times()
    deployer.apply(ModelSpecRetired(producer="cli:owner", model=MODEL, reason="gone"))
    return deployer


def in_shadow() -> Deployer:
    deployer = with_champion(low_risk(shadow=True))
    deployer.apply(registered("2"))
    assert deployer.state.stage == "shadow"
    return deployer


@pytest.mark.parametrize(
    "reach",
    [promoted_three_times, awaiting_approval, canary_step_2, rolled_back, retired, in_shadow],
    ids=lambda reach: reach.__name__,
)
def test_the_last_published_table_rebuilds_every_durable_field(reach: object) -> None:
    assert callable(reach)
    deployer = reach()
    assert isinstance(deployer, Deployer)
    assert_rebuilds(deployer)


def test_every_state_of_a_whole_life_is_rebuilt_from_the_last_table_published_by_then() -> None:
    deployer = with_champion(high_risk())
    inputs: list[Event] = [
        registered("2"),
        health("2", 100, route="shadow"),
        approval("mallory", MALLORY),
        approval("alice", ALICE),
        health("2", 40),
        health("2", 100),
        health("2", 100),
        registered("3"),
        registered("4"),
        health("4", 100, route="shadow"),
        ApprovalRejected(producer="cli:alice", model=MODEL, version="4", rejected_by="alice", reason="bias"),
        breach("2"),
        rollback(to_version="2"),
        ModelSpecRetired(producer="cli:owner", model=MODEL, reason="gone"),
    ]
    for event in inputs:
        deployer.apply(event)
        assert_rebuilds(deployer)


def test_a_change_of_the_version_in_rollout_is_published_even_when_the_routing_stays_the_same() -> None:
    deployer = Deployer(high_risk(), ALICE_KEYS)
    deployer.apply(registered("1"))
    before = deployer.tables()[-1]
    transition = deployer.apply(registered("2"))
    table = transition.events[0]
    assert isinstance(table, DeploymentChanged)
    routing = ("stage", "champion", "challenger", "challenger_weight", "shadows")
    assert [getattr(table, name) for name in routing] == [getattr(before, name) for name in routing]
    assert table.revision == before.revision + 1
    assert (table.candidate and table.candidate.version, table.pending_approval) == ("2", "2")
    assert [target.version for target in table.passing_versions] == ["1", "2"]


def test_a_rebuilt_deployer_rolls_back_to_the_same_last_known_good() -> None:
    deployer = promoted_three_times()
    again = rebuilt(deployer)
    request = rollback()
    deployer.apply(request)
    again.apply(request)
    assert again.serving() == deployer.serving() == ("2", None, 0.0)
    assert again.published[1:] == deployer.published[-len(again.published) + 1 :]


def test_a_rebuilt_deployer_still_knows_every_version_a_person_may_roll_back_to() -> None:
    again = rebuilt(promoted_three_times())
    again.apply(rollback(to_version="1"))
    assert again.serving() == ("1", None, 0.0)


def test_a_rebuilt_deployer_promotes_the_pending_version_on_its_approval() -> None:
    deployer = awaiting_approval()
    again = rebuilt(deployer)
    approved = approval("alice", ALICE)
    deployer.apply(approved)
    again.apply(approved)
    assert again.serving() == deployer.serving() == ("1", "2", 0.1)
    assert again.tables()[-1] == deployer.tables()[-1]


def test_a_rebuilt_canary_step_counts_its_requests_again_from_zero() -> None:
    deployer = canary_step_2()
    deployer.apply(health("2", 60))
    again = rebuilt(deployer)
    window = health("2", 40)
    deployer.apply(window)
    again.apply(window)
    assert deployer.serving() == ("1", "2", 1.0)
    assert again.serving() == ("1", "2", 0.5)
    again.apply(health("2", 60))
    assert again.serving() == ("1", "2", 1.0)


def test_the_input_behind_the_last_table_redelivered_after_a_rebuild_changes_nothing() -> None:
    deployer = in_canary()
    window = health("2", 100)
    deployer.apply(window)
    again = rebuilt(deployer)
    transition = again.apply(window)
    assert (transition.events, again.state.weight) == ((), 0.5)


def test_a_table_from_before_the_durable_fields_rebuilds_what_it_can() -> None:
    def target(version: str) -> RouteTarget:
        return RouteTarget(
            version=version,
            model_uri=f"models:/{MODEL}/{version}",
            digest=f"{version:0>64}",
            signature="c2lnbmF0dXJl",
            signing_key_id="0123456789abcdef",
        )

    legacy = DeploymentChanged.model_validate(
        {
            "producer": "deployer",
            "model": MODEL,
            "revision": 4,
            "stage": "awaiting_approval",
            "champion": target("1").model_dump(),
            "shadows": [target("2").model_dump()],
        }
    )
    state = rollout_from_table(legacy)
    assert state.challenger == target("2")
    assert (state.pending_approval, state.mirrored, state.last_known_good) == ("2", True, None)
    assert [known.version for known in state.versions] == ["1", "2"]


# --- bounded routing tables -------------------------------------------------------------------


def target(version: str) -> RouteTarget:
    event = registered(version)
    return RouteTarget(
        version=version,
        model_uri=event.model_uri,
        digest=event.digest,
        signature=event.signature,
        signing_key_id=event.signing_key_id,
    )


def with_history(versions: int, policy: RolloutRules) -> Deployer:
    """Version 1 is champion of a model that has had `versions` passing versions."""
    state = ModelRollout(
        MODEL,
        stage="promoted",
        champion=target("1"),
        versions=tuple(target(str(v)) for v in range(1, versions + 1)),
        revision=versions,
    )
    return Deployer(policy, state=state)


def test_a_routing_table_keeps_the_newest_passing_versions_and_always_its_champion() -> None:
    deployer = with_history(30, low_risk(kept_versions=5))
    deployer.apply(registered("31"))
    table = deployer.tables()[-1]
    assert [t.version for t in table.passing_versions] == ["1", "28", "29", "30", "31"]
    assert table.candidate is not None
    assert table.candidate.version == "31"


def test_a_late_registration_of_a_dropped_version_does_not_come_back_as_a_candidate() -> None:
    deployer = with_history(30, low_risk(kept_versions=5))
    deployer.apply(registered("31"))
    before = deployer.state
    transition = deployer.apply(registered("7"))
    assert transition.events == ()
    assert deployer.state.challenger == before.challenger
    assert [t.version for t in deployer.state.versions] == ["1", "28", "29", "30", "31"]


def test_a_model_with_3000_versions_publishes_a_small_routing_table() -> None:
    deployer = with_history(3000, low_risk())
    deployer.apply(registered("3001"))
    table = deployer.tables()[-1]
    assert len(table.passing_versions) == 20
    assert len(table.model_dump_json()) < 64 * 1024


def test_a_rollback_by_name_to_a_dropped_version_is_refused_naming_the_ones_kept() -> None:
    deployer = with_history(30, low_risk(kept_versions=5))
    deployer.apply(registered("31"))
    with pytest.raises(RolloutRefused, match="known: 1, 28, 29, 30, 31"):
        deployer.apply(rollback(to_version="3"))
