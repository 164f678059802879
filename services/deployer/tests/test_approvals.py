"""Approvals count only when signed by an approver the policy lists, over the waiting artifact's
digest, this fleet's topic prefix, an expiry still ahead and a nonce never used before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.signing import IntegrityError, encode_public_key
from modelfleet_contracts import ApprovalGranted
from modelfleet_deployer.approvals import ApproverKeys, Expected, verify_approval

from .deployer_builders import signed_approval

ALICE = Ed25519PrivateKey.generate()
MALLORY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIGEST = "d" * 64
PREFIX = "fleet-a."
EXPECTED = Expected(digest=DIGEST, topic_prefix=PREFIX, now=NOW)


def keys_file_lines() -> list[str]:
    return ["# approvers of the fleet", "", f"alice {encode_public_key(ALICE.public_key())}  # risk officer"]


KEYS = ApproverKeys.from_lines(keys_file_lines())


def signed(
    approver: str = "alice",
    key: Ed25519PrivateKey = ALICE,
    *,
    version: str = "2",
    digest: str = DIGEST,
    topic_prefix: str = PREFIX,
    expires_at: datetime = NOW + timedelta(hours=24),
) -> ApprovalGranted:
    return signed_approval(
        key,
        "churn",
        version,
        approver=approver,
        digest=digest,
        topic_prefix=topic_prefix,
        expires_at=expires_at,
        nonce="n-1",
    )


def test_an_approval_signed_by_a_listed_approver_for_this_artifact_and_fleet_is_valid() -> None:
    assert verify_approval(signed(), ["alice"], KEYS, EXPECTED) is None


def test_an_expired_approval_is_rejected() -> None:
    reason = verify_approval(signed(expires_at=NOW - timedelta(seconds=1)), ["alice"], KEYS, EXPECTED)
    assert reason == "approval expired at 2026-03-01T11:59:59+00:00: re-sign with modelfleet approve"


def test_a_replayed_approval_is_rejected() -> None:
    expected = Expected(digest=DIGEST, topic_prefix=PREFIX, now=NOW, nonce_seen=True)
    reason = verify_approval(signed(), ["alice"], KEYS, expected)
    assert reason == "approval nonce n-1 was used before: a signed approval releases once (replay)"


def test_an_approval_of_another_artifact_is_rejected() -> None:
    reason = verify_approval(signed(digest="e" * 64), ["alice"], KEYS, EXPECTED)
    assert reason == (
        "approval signs digest eeeeeeeeeeee…, not the digest dddddddddddd… of version 2 waiting for approval"
    )


def test_an_approval_for_another_fleet_is_rejected() -> None:
    reason = verify_approval(signed(topic_prefix="fleet-b."), ["alice"], KEYS, EXPECTED)
    assert reason == "approval is for the fleet with topic prefix 'fleet-b.', not this one ('fleet-a.')"


def test_a_bound_field_changed_after_signing_breaks_the_signature() -> None:
    moved = signed().model_copy(update={"topic_prefix": "fleet-b.", "expires_at": NOW + timedelta(days=365)})
    reason = verify_approval(moved, ["alice"], KEYS, EXPECTED)
    assert reason is not None
    assert reason.startswith("signature of 'alice' does not verify for churn:2")


def test_an_approval_signed_the_old_way_over_model_and_version_only_is_told_to_re_sign() -> None:
    old = signed().model_copy(
        update={"digest": None, "topic_prefix": None, "expires_at": None, "nonce": None}
    )
    reason = verify_approval(old, ["alice"], KEYS, EXPECTED)
    assert reason == "approval lacks digest/topic prefix/expiry/nonce: re-sign with modelfleet approve"


def test_an_approver_not_listed_in_the_policy_is_rejected_even_with_a_good_signature() -> None:
    reason = verify_approval(signed(), ["bob"], KEYS, EXPECTED)
    assert reason == "'alice' is not an approver of churn under its policy (approvers: bob)"


def test_a_listed_approver_without_a_key_on_file_is_rejected() -> None:
    reason = verify_approval(signed("bob", MALLORY), ["alice", "bob"], KEYS, EXPECTED)
    assert reason is not None
    assert "no public key is on file for approver 'bob'" in reason


def test_a_signature_by_another_key_is_rejected() -> None:
    reason = verify_approval(signed("alice", MALLORY), ["alice"], KEYS, EXPECTED)
    assert reason is not None
    assert reason.startswith("signature of 'alice' does not verify for churn:2")


def test_a_signature_for_another_version_does_not_approve_this_one() -> None:
    replayed = signed(version="1").model_copy(update={"version": "2"})
    assert verify_approval(replayed, ["alice"], KEYS, EXPECTED) is not None


def test_a_signature_that_is_not_base64_is_rejected() -> None:
    garbled = signed().model_copy(update={"signature": "not base64!"})
    reason = verify_approval(garbled, ["alice"], KEYS, EXPECTED)
    assert reason is not None
    assert "does not verify" in reason


def test_keys_load_from_a_file_by_approver_name(tmp_path: Path) -> None:
    path = tmp_path / "approvers"
    path.write_text("\n".join(keys_file_lines()) + "\n")
    assert ApproverKeys.from_file(path).names == ["alice"]


def test_a_line_without_a_name_is_refused_with_its_number() -> None:
    with pytest.raises(IntegrityError, match="line 2 must be `name base64key`"):
        ApproverKeys.from_lines(["", encode_public_key(ALICE.public_key())])


def test_a_key_that_is_not_ed25519_is_refused_with_its_line() -> None:
    with pytest.raises(IntegrityError, match="approver key on line 1 is not a base64 Ed25519 key"):
        ApproverKeys.from_lines(["alice bm90IGEga2V5"])


def test_a_second_key_for_the_same_approver_is_refused() -> None:
    line = f"alice {encode_public_key(ALICE.public_key())}"
    with pytest.raises(IntegrityError, match="approver 'alice' has a second key on line 2"):
        ApproverKeys.from_lines([line, line])
