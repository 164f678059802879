"""Approvals count only when signed over `model:version` by an approver the policy lists."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.signing import IntegrityError, encode_public_key
from modelfleet_contracts import ApprovalGranted
from modelfleet_deployer.approvals import ApproverKeys, approval_message, verify_approval

ALICE = Ed25519PrivateKey.generate()
MALLORY = Ed25519PrivateKey.generate()


def keys_file_lines() -> list[str]:
    return ["# approvers of the fleet", "", f"alice {encode_public_key(ALICE.public_key())}  # risk officer"]


def signed(
    approver: str, key: Ed25519PrivateKey, model: str = "churn", version: str = "2"
) -> ApprovalGranted:
    signature = base64.b64encode(key.sign(approval_message(model, version))).decode()
    return ApprovalGranted(
        producer=f"cli:{approver}", model=model, version=version, approver=approver, signature=signature
    )


def test_an_approval_signed_by_a_listed_approver_is_valid() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    assert verify_approval(signed("alice", ALICE), ["alice"], keys) is None


def test_an_approver_not_listed_in_the_policy_is_rejected_even_with_a_good_signature() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    reason = verify_approval(signed("alice", ALICE), ["bob"], keys)
    assert reason == "'alice' is not an approver of churn under its policy (approvers: bob)"


def test_a_listed_approver_without_a_key_on_file_is_rejected() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    reason = verify_approval(signed("bob", MALLORY), ["alice", "bob"], keys)
    assert reason is not None
    assert "no public key is on file for approver 'bob'" in reason


def test_a_signature_by_another_key_is_rejected() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    reason = verify_approval(signed("alice", MALLORY), ["alice"], keys)
    assert reason is not None
    assert reason.startswith("signature of 'alice' does not verify for churn:2")


def test_a_signature_for_another_version_does_not_approve_this_one() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    approval_of_v1 = signed("alice", ALICE, version="1")
    replayed = approval_of_v1.model_copy(update={"version": "2"})
    assert verify_approval(replayed, ["alice"], keys) is not None


def test_a_signature_that_is_not_base64_is_rejected() -> None:
    keys = ApproverKeys.from_lines(keys_file_lines())
    garbled = signed("alice", ALICE).model_copy(update={"signature": "not base64!"})
    reason = verify_approval(garbled, ["alice"], keys)
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
