"""Signed approvals: what `modelfleet approve` publishes (and `modelfleet demo` as its approver)."""

from __future__ import annotations

from typing import Any

from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import ApprovalGranted


def signed_approval(
    model: str,
    version: str,
    signer: ArtifactSigner,
    *,
    approver: str,
    producer: str,
    comment: str = "",
    **cause: Any,
) -> ApprovalGranted:
    """`ApprovalGranted` for MODEL VERSION, signed over `model:version` as the deployer verifies it;
    `cause` is the request's `caused()` when answering one."""
    return ApprovalGranted(
        producer=producer,
        model=model,
        version=version,
        approver=approver,
        signature=signer.sign(f"{model}:{version}"),
        comment=comment,
        **cause,
    )
