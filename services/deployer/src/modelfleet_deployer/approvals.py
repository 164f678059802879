"""Who may approve a high-risk version, and whether an approval really comes from them.

An approver signs `f"{model}:{version}"` with their Ed25519 private key (`modelfleet approve`).
The deployer checks it against public keys it holds out of band — a file of `name base64key`
lines named by `FLEET_APPROVER_KEYS_FILE`, the per-name counterpart of `TrustedKeys` — never
against a key carried by the approval itself, and only for approvers the model's policy lists.
Loading the file is the only I/O here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelfleet_common.signing import IntegrityError, key_id
from modelfleet_contracts import ApprovalGranted

#: Environment variable (read by the deployer's settings) naming the approver keys file.
APPROVER_KEYS_ENV = "FLEET_APPROVER_KEYS_FILE"


def approval_message(model: str, version: str) -> bytes:
    """The bytes an approver signs: `model:version`, so a signature approves exactly one version."""
    return f"{model}:{version}".encode()


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


def verify_approval(approval: ApprovalGranted, approvers: Iterable[str], keys: ApproverKeys) -> str | None:
    """None if the approval is valid; otherwise the specific reason it must be rejected.

    Valid means: the approver is listed in the model's policy, a key is on file for them, and
    the signature is theirs over `model:version` of this very approval.
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
    try:
        signature = base64.b64decode(approval.signature, validate=True)
        public_key.verify(signature, approval_message(approval.model, approval.version))
    except (InvalidSignature, ValueError):
        return (
            f"signature of {approval.approver!r} does not verify for "
            f"{approval.model}:{approval.version} with key {keys.key_id_of(approval.approver)}"
        )
    return None
