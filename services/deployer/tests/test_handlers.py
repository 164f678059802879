"""The deployer's handlers: state in a key-value store, events published once, across restarts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import SqlIdempotencyStore
from modelfleet_common.state import StateEngine
from modelfleet_contracts import (
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    ModelPromoted,
    ModelSpecRetired,
    RollbackRequested,
)
from modelfleet_deployer.approvals import ApproverKeys
from modelfleet_deployer.handlers import (
    APPROVAL_NONCES,
    ROLLOUTS,
    SPECS,
    DeployerDeps,
    check_approval,
    load_rollout,
    remember_model_spec,
    roll_back_on_request,
    roll_out_version,
)
from modelfleet_deployer.rollout import RolloutRefused

from .deployer_builders import (
    MODEL,
    NOW,
    OFFICER_KEYS,
    POLICIES,
    TOPIC_PREFIX,
    Publisher,
    approval,
    in_memory_deps,
    published,
    registered,
    spec,
)


@pytest.fixture
def sqlite_deps(tmp_path: Path) -> Iterator[Any]:
    """Builds deps on the same files each call, like the service after a restart."""
    opened: list[StateEngine] = []

    def build() -> DeployerDeps:
        engine = StateEngine.sqlite(tmp_path / "deployer-state.sqlite")
        state = engine.key_values()
        handled = SqlIdempotencyStore(engine, ttl_seconds=86400)
        opened.append(engine)
        return DeployerDeps(
            POLICIES, OFFICER_KEYS, state, handled, Publisher(), topic_prefix=TOPIC_PREFIX, clock=lambda: NOW
        )

    yield build
    for store in opened:
        store.close()


async def test_a_low_risk_models_first_version_is_published_as_champion_with_its_cause() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("low"), deps)
    event = registered("1")
    await roll_out_version(event, deps)
    table, promoted = published(deps).events
    assert isinstance(table, DeploymentChanged)
    assert isinstance(promoted, ModelPromoted)
    assert table.champion is not None
    assert (table.champion.version, promoted.version) == ("1", "1")
    assert promoted.causation_id == event.event_id
    assert promoted.correlation_id == event.correlation_id
    assert load_rollout(deps.state, MODEL).stage == "promoted"


async def test_a_high_risk_models_first_version_waits_and_an_authorized_approval_promotes_it() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    (requested,) = published(deps).of(ApprovalRequested)
    assert requested.approvers == ["risk-officer", "head-of-ml"]
    assert published(deps).of(ModelPromoted) == []

    await check_approval(approval("1"), deps)
    (promoted,) = published(deps).of(ModelPromoted)
    assert promoted.version == "1"
    assert "approved by risk-officer" in promoted.reason


async def test_an_approval_by_someone_not_in_the_policy_is_published_as_rejected() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("critical"), deps)
    await roll_out_version(registered("1"), deps)
    mallory = Ed25519PrivateKey.generate()
    await check_approval(approval("1", approver="mallory", key=mallory), deps)
    (rejected,) = published(deps).of(ApprovalRejected)
    assert "'mallory' is not an approver of churn-se" in rejected.reason
    assert load_rollout(deps.state, MODEL).stage == "awaiting_approval"


async def test_without_approver_keys_every_approval_is_rejected_naming_the_setting() -> None:
    deps = in_memory_deps(keys=ApproverKeys({}))
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    await check_approval(approval("1"), deps)
    (rejected,) = published(deps).of(ApprovalRejected)
    assert "no public key is on file for approver 'risk-officer' (set FLEET_APPROVER_KEYS_FILE)" in (
        rejected.reason
    )
    assert published(deps).of(ModelPromoted) == []


async def test_a_registration_without_a_known_spec_follows_the_risk_class_in_its_lineage() -> None:
    deps = in_memory_deps()
    await roll_out_version(registered("1", lineage={"risk_class": "low"}), deps)
    assert load_rollout(deps.state, MODEL).stage == "promoted"
    assert deps.state.get(SPECS, MODEL)["source"] == "lineage"


async def test_a_registration_without_spec_or_lineage_is_treated_as_high_risk_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deps = in_memory_deps()
    with caplog.at_level(logging.WARNING, logger="modelfleet.deployer"):
        await roll_out_version(registered("1"), deps)
    assert load_rollout(deps.state, MODEL).stage == "awaiting_approval"
    assert "treating it as high risk" in caplog.text


async def test_a_spec_arriving_later_replaces_the_assumed_risk_class() -> None:
    deps = in_memory_deps()
    await roll_out_version(registered("1"), deps)
    await remember_model_spec(spec("low", canary_steps=[20, 100]), deps)
    remembered = deps.state.get(SPECS, MODEL)
    assert (remembered["risk_class"], remembered["source"]) == ("low", "spec")
    assert remembered["rollout"]["canary_steps"] == [20, 100]


async def test_a_spec_with_canary_steps_that_do_not_increase_is_refused_and_the_old_one_kept() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("low"), deps)
    with pytest.raises(PermanentError, match=r"churn-se: .*canary_steps must strictly increase"):
        await remember_model_spec(spec("medium", canary_steps=[50, 10]), deps)
    assert deps.state.get(SPECS, MODEL)["risk_class"] == "low"


async def test_state_survives_a_restart_and_a_redelivered_event_publishes_nothing(sqlite_deps: Any) -> None:
    before_restart = sqlite_deps()
    await remember_model_spec(spec("medium"), before_restart)
    await roll_out_version(registered("1"), before_restart)
    second = registered("2")

    after_restart = sqlite_deps()
    await roll_out_version(second, after_restart)
    state = load_rollout(after_restart.state, MODEL)
    assert state.champion is not None
    assert (state.champion.version, state.stage, state.weight) == ("1", "canary", 0.1)
    assert len(published(after_restart).events) == 1

    again = sqlite_deps()
    await roll_out_version(second, again)
    assert published(again).events == []
    assert load_rollout(again.state, MODEL) == state


async def test_events_that_failed_to_publish_are_published_with_the_same_ids_on_redelivery() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("low"), deps)
    publisher = published(deps)
    publisher.failing = True
    event = registered("1")
    with pytest.raises(ConnectionError, match="broker unreachable"):
        await roll_out_version(event, deps)
    assert deps.state.get(ROLLOUTS, MODEL) is None

    publisher.failing = False
    await roll_out_version(event, deps)
    first_ids = [e.event_id for e in publisher.events]
    replay = in_memory_deps()
    await remember_model_spec(spec("low"), replay)
    await roll_out_version(event, replay)
    assert [e.event_id for e in published(replay).events] == first_ids


async def test_retirement_empties_the_routing_table_and_forgets_the_spec() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("low"), deps)
    await roll_out_version(registered("1"), deps)
    await remember_model_spec(ModelSpecRetired(producer="cli", model=MODEL, reason="market closed"), deps)
    table = published(deps).of(DeploymentChanged)[-1]
    assert (table.stage, table.champion) == ("retired", None)
    assert deps.state.get(SPECS, MODEL) is None


async def test_a_rollback_with_nothing_to_roll_back_to_is_refused_with_the_reason() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("low"), deps)
    await roll_out_version(registered("1"), deps)
    request = RollbackRequested(producer="cli:oncall", model=MODEL, reason="pager")
    with pytest.raises(RolloutRefused, match="no last known good version"):
        await roll_back_on_request(request, deps)


async def test_a_critical_spec_published_without_its_required_approval_still_waits_for_one_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deps = in_memory_deps()
    with caplog.at_level(logging.WARNING, logger="modelfleet.deployer"):
        await remember_model_spec(spec("critical", requires_approval=False), deps)
    assert "rollout.requires_approval: false loosens the floor true" in caplog.text
    await roll_out_version(registered("1"), deps)
    assert load_rollout(deps.state, MODEL).stage == "awaiting_approval"
    assert published(deps).of(ModelPromoted) == []
    (requested,) = published(deps).of(ApprovalRequested)
    assert requested.risk_class == "critical"


async def test_a_valid_approval_releases_the_version_and_leaves_its_nonce_in_the_state_store() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    signed = approval("1", nonce="once")

    await check_approval(signed, deps)

    assert load_rollout(deps.state, MODEL).stage == "promoted"
    assert deps.state.get(APPROVAL_NONCES, "once")["event_id"] == str(signed.event_id)
    assert published(deps).of(ApprovalRejected) == []


async def test_the_same_signed_approval_of_a_waiting_version_releases_once() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    signed = approval("1", nonce="n-1")
    deps.state.put(APPROVAL_NONCES, "n-1", {"event_id": "another approval", "model": MODEL, "version": "1"})

    await check_approval(signed, deps)

    (rejected,) = published(deps).of(ApprovalRejected)
    assert rejected.reason == "approval nonce n-1 was used before: a signed approval releases once (replay)"
    assert load_rollout(deps.state, MODEL).stage == "awaiting_approval"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"topic_prefix": "fleet-b."},
            "approval is for the fleet with topic prefix 'fleet-b.', not this one",
        ),
        (
            {"digest": "b" * 64},
            "approval signs digest bbbbbbbbbbbb…, not the digest aaaaaaaaaaaa… of version 1",
        ),
        ({"expires_at": NOW - timedelta(minutes=1)}, "approval expired at 2026-03-01T11:59:00+00:00"),
    ],
)
async def test_an_approval_bound_to_another_fleet_artifact_or_time_is_rejected_with_the_reason(
    changes: dict[str, Any], reason: str
) -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("critical"), deps)
    await roll_out_version(registered("1"), deps)

    await check_approval(approval("1", **changes), deps)

    (rejected,) = published(deps).of(ApprovalRejected)
    assert rejected.reason.startswith(reason)
    assert (rejected.rejected_by, rejected.version) == ("deployer", "1")
    assert load_rollout(deps.state, MODEL).stage == "awaiting_approval"
    assert published(deps).of(ModelPromoted) == []


async def test_the_approval_request_names_the_digest_an_approval_must_sign() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    (requested,) = published(deps).of(ApprovalRequested)
    assert requested.digest == "a" * 64


async def test_an_approval_redelivered_after_a_crash_is_not_taken_for_a_replay_of_itself() -> None:
    deps = in_memory_deps()
    await remember_model_spec(spec("high"), deps)
    await roll_out_version(registered("1"), deps)
    signed = approval("1", nonce="n-2")
    # The crash came after the nonce was stored and before the events were published.
    deps.state.put(APPROVAL_NONCES, "n-2", {"event_id": str(signed.event_id), "model": MODEL, "version": "1"})

    await check_approval(signed, deps)

    assert load_rollout(deps.state, MODEL).stage == "promoted"
    assert published(deps).of(ApprovalRejected) == []
