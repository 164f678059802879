"""Who may approve a high-risk version, and whether an approval really comes from them.

An approver signs `approval_message` (model, version, artifact digest, topic prefix, expiry and a
nonce) with their Ed25519 private key (`modelfleet approve`), so an approval releases exactly one
artifact, in one fleet, before it expires, once. The deployer checks it against public keys it
holds out of band — a file of `name base64key`
lines named by `FLEET_APPROVER_KEYS_FILE`, the per-name counterpart of `TrustedKeys` — never
against a key carried by the approval itself, and only for approvers the model's policy lists.
Loading the file is the only I/O here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelfleet_common.signing import IntegrityError, key_id
from modelfleet_contracts import ApprovalGranted
from modelfleet_contracts.rollout import approval_message

#: Environment variable (read by the deployer's settings) naming the approver keys file.
APPROVER_KEYS_ENV = "FLEET_APPROVER_KEYS_FILE"


class ApproverKeys:
    """Public keys of approvers, by approver name."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._by_name = dict(keys)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> ApproverKeys:
        """Keys from `name base64key` lines; blank lines and `#` comments are ignored.

        Raises `IntegrityError` naming the line when a line is malformed, a key is not a base64
        Ed25519 key, or a name appears twice (which key would count would be ambiguous).
        """
        keys: dict[str, Ed25519PublicKey] = {}
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) != 2:
                raise IntegrityError(f"approver key line {number} must be `name base64key`, got {text!r}")
            name, encoded = parts
            if name in keys:
                raise IntegrityError(f"approver {name!r} has a second key on line {number}")
            try:
                public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded, validate=True))
            except ValueError as error:
                raise IntegrityError(f"approver key on line {number} is not a base64 Ed25519 key") from error
            keys[name] = public_key
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> ApproverKeys:
        """Keys from the file at `path` (see `from_lines`)."""
        return cls.from_lines(Path(path).read_text().splitlines())

    @property
    def names(self) -> list[str]:
        """Approvers with a key, sorted."""
        return sorted(self._by_name)

    def key_id_of(self, approver: str) -> str | None:
        """Id of the approver's key, for logs; None if the approver has no key."""
        public_key = self._by_name.get(approver)
        return None if public_key is None else key_id(public_key)

    def public_key(self, approver: str) -> Ed25519PublicKey | None:
        """The approver's public key, or None if none is on file."""
        return self._by_name.get(approver)


@dataclass(frozen=True)
class Expected:
    """What a valid approval must be bound to: the waiting version's artifact, this fleet, now."""

    digest: str
    topic_prefix: str
    now: datetime
    #: Whether the approval's nonce was already used by another approval.
    nonce_seen: bool = False


def verify_approval(
    approval: ApprovalGranted, approvers: Iterable[str], keys: ApproverKeys, expected: Expected
) -> str | None:
    """None if the approval is valid; otherwise the specific reason it must be rejected.

    Valid means: the approver is listed in the model's policy, a key is on file for them, the
    approval names a digest, topic prefix, expiry and nonce and the signature is theirs over those
    and the model and version; the digest is the waiting version's, the prefix this fleet's, the
    expiry in the future and the nonce never used before.
    """
    allowed = sorted(set(approvers))
    if approval.approver not in allowed:
        listed = ", ".join(allowed) if allowed else "nobody"
        return (
            f"{approval.approver!r} is not an approver of {approval.model} under its policy "
            f"(approvers: {listed})"
        )
    public_key = keys.public_key(approval.approver)
    if public_key is None:
        return f"no public key is on file for approver {approval.approver!r} (set {APPROVER_KEYS_ENV})"
    digest, prefix, expires_at, nonce = (
        approval.digest,
        approval.topic_prefix,
        approval.expires_at,
        approval.nonce,
    )
    if digest is None or prefix is None or expires_at is None or nonce is None:
        named = {"digest": digest, "topic prefix": prefix, "expiry": expires_at, "nonce": nonce}
        missing = "/".join(name for name, value in named.items() if value is None)
        return f"approval lacks {missing}: re-sign with modelfleet approve"
    message = approval_message(approval.model, approval.version, digest, prefix, expires_at, nonce)
    try:
        public_key.verify(base64.b64decode(approval.signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return (
            f"signature of {approval.approver!r} does not verify for {approval.model}:{approval.version} "
            f"and what it names with key {keys.key_id_of(approval.approver)}"
        )
    if prefix != expected.topic_prefix:
        return (
            f"approval is for the fleet with topic prefix {prefix!r}, "
            f"not this one ({expected.topic_prefix!r})"
        )
    if digest != expected.digest:
        return (
            f"approval signs digest {digest[:12]}…, not the digest {expected.digest[:12]}… of "
            f"version {approval.version} waiting for approval"
        )
    if expires_at <= expected.now:
        return f"approval expired at {expires_at.isoformat()}: re-sign with modelfleet approve"
    if expected.nonce_seen:
        return f"approval nonce {nonce} was used before: a signed approval releases once (replay)"
    return None
