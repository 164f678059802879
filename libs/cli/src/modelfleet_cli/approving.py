"""Signed approvals: what `modelfleet approve` publishes (and `modelfleet-dev demo` as its approver).

An approval signs `approval_message`: the model, the version, the digest of the artifact waiting
for approval, the fleet's topic prefix, an expiry and a random nonce, so it releases exactly that
artifact, in that fleet, before it expires, once.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import ApprovalGranted, ApprovalRequested
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import approval_message

#: How long an approval stays valid unless the approver says otherwise.
DEFAULT_EXPIRY = timedelta(hours=24)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h` or `7d` as a positive duration; raises `ValueError` saying what is expected."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: write a positive number and s, m, h or d (e.g. 24h)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def signed_approval(
    model: str,
    version: str,
    digest: str,
    signer: ArtifactSigner,
    *,
    approver: str,
    producer: str,
    topic_prefix: str,
    expires_in: timedelta = DEFAULT_EXPIRY,
    now: datetime | None = None,
    comment: str = "",
    **cause: Any,
) -> ApprovalGranted:
    """`ApprovalGranted` for the artifact `digest` of MODEL VERSION in the fleet of `topic_prefix`,
    valid for `expires_in` from `now`, with a fresh nonce, signed as the deployer verifies it;
    `cause` is the request's `caused()` when answering one."""
    expires_at = (now or datetime.now(UTC)) + expires_in
    nonce = secrets.token_hex(16)
    message = approval_message(model, version, digest, topic_prefix, expires_at, nonce)
    return ApprovalGranted(
        producer=producer,
        model=model,
        version=version,
        approver=approver,
        signature=base64.b64encode(signer.private_key.sign(message)).decode(),
        comment=comment,
        digest=digest,
        topic_prefix=topic_prefix,
        expires_at=expires_at,
        nonce=nonce,
        **cause,
    )


def requested_digest(events: list[Event], model: str, version: str) -> str | None:
    """The artifact digest the latest approval request for MODEL VERSION names, if any."""
    requests = [
        event
        for event in events
        if isinstance(event, ApprovalRequested) and (event.model, event.version) == (model, version)
    ]
    return next((request.digest for request in reversed(requests) if request.digest), None)
