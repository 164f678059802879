"""Artifact integrity: a sha256 digest of a model's files, and the registry's Ed25519 signature of
what was decided about them.

The registry signs a `VersionBinding` — these files (digest) are version V of model M in the fleet
of topic prefix P — and only for versions whose evaluation passed; a failed candidate carries no
signature. Anyone about to load an artifact (the evaluator for a champion, serving, `modelfleet
verify`) builds the binding from what *it* was asked to load (its model name, the version, the
digest, its own topic prefix), recomputes the digest of the files and checks the signature against
keys it trusts out of band (a file of public keys), never against keys found next to the artifact.
So a signature of model A's version cannot make model B, another version or another fleet load it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_CHUNK = 1 << 20


#: Names the format of the signed statement; a new format gets a new name, never new meanings.
BINDING_STATEMENT = "modelfleet.version-binding/v1"


class IntegrityError(Exception):
    """An artifact does not match its digest or signature: it must not be loaded."""

    #: Which check failed, from a small fixed set: usable as a metric label.
    reason = "integrity"


class UntrustedKey(IntegrityError):
    """The signature was made with a key that is not in the trusted set."""

    reason = "untrusted_key"


class Unsigned(IntegrityError):
    """The version carries no registry signature (it failed its evaluation, or was never registered)."""

    reason = "unsigned"


class DigestMismatch(IntegrityError):
    """The files differ from the digest the registry signed."""

    reason = "digest"


class BindingMismatch(IntegrityError):
    """The signature is not a trusted key's signature of this (model, version, digest, topic prefix)."""

    reason = "binding"


@dataclass(frozen=True)
class VersionBinding:
    """What a registry signature vouches for: the files of `digest` are version `version` of model
    `model` in the fleet of `topic_prefix`, and that version passed its evaluation."""

    model: str
    version: str
    digest: str
    topic_prefix: str

    def statement(self) -> bytes:
        """The canonical bytes the registry signs and every verifier checks: compact JSON with sorted
        keys (ASCII only), so signer and verifiers agree byte for byte on any platform."""
        fields = {
            "statement": BINDING_STATEMENT,
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "topic_prefix": self.topic_prefix,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def __str__(self) -> str:
        return (
            f"model {self.model!r} version {self.version!r} digest {self.digest[:12]}… "
            f"in fleet {self.topic_prefix!r}"
        )


def file_digest(path: Path) -> str:
    """sha256 hex of one file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_digest(root: Path) -> str:
    """sha256 over every file's relative path and sha256, in path order.

    Renaming, adding, removing or changing any file changes it; file times and the directory's
    own location do not. A single file is digested as a directory holding only that file.
    """
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise IntegrityError(f"{root} holds no files to digest")
    manifest = hashlib.sha256()
    for path in files:
        relative = path.name if path == root else path.relative_to(root).as_posix()
        manifest.update(f"{relative}\t{file_digest(path)}\n".encode())
    return manifest.hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short, stable id of a public key: the first 16 hex digits of sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_public_key(public_key: Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key: one line of a trusted-keys file."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class ArtifactSigner:
    """Signs version bindings with one Ed25519 private key (the registry's)."""

    private_key: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> ArtifactSigner:
        """The key in `path` (PEM, PKCS#8); a new one written there with mode 0600 if it is missing.

        The public key is written next to it as `<path>.pub` (base64, one line) so it can be
        added to the trusted-keys file of every verifier.
        """
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise IntegrityError(f"{path} does not hold an Ed25519 private key")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pem)
        signer = cls(key)
        path.with_name(path.name + ".pub").write_text(signer.public_key_b64 + "\n")
        return signer

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    @property
    def public_key_b64(self) -> str:
        return encode_public_key(self.private_key.public_key())

    def sign(self, binding: VersionBinding) -> str:
        """Base64 Ed25519 signature of the binding's statement."""
        return base64.b64encode(self.private_key.sign(binding.statement())).decode()


class TrustedKeys:
    """The public keys a verifier accepts, by key id."""

    def __init__(self, public_keys: list[Ed25519PublicKey]) -> None:
        self._by_id = {key_id(key): key for key in public_keys}

    @classmethod
    def from_lines(cls, lines: list[str]) -> TrustedKeys:
        """Keys from base64 lines; blank lines and `#` comments are ignored."""
        keys = []
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True)))
            except ValueError as error:
                raise IntegrityError(f"trusted key on line {number} is not a base64 Ed25519 key") from error
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> TrustedKeys:
        return cls.from_lines(Path(path).read_text().splitlines())

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._by_id)

    def verify(self, binding: VersionBinding, signature: str, signing_key_id: str) -> None:
        """Raise `IntegrityError` unless `signature` is a trusted key's signature of `binding`.

        `Unsigned` when there is no signature, `UntrustedKey` for a key not in the set,
        `BindingMismatch` when the signature covers anything else (another model, version, digest
        or fleet) — Ed25519 cannot tell which, so the message names what was expected.
        """
        if not signature or not signing_key_id:
            raise Unsigned(
                f"{binding} carries no registry signature: only versions that passed their "
                "evaluation are signed"
            )
        public_key = self._by_id.get(signing_key_id)
        if public_key is None:
            raise UntrustedKey(f"signing key {signing_key_id!r} is not trusted (trusted: {self.key_ids})")
        try:
            public_key.verify(base64.b64decode(signature, validate=True), binding.statement())
        except (InvalidSignature, ValueError) as error:
            raise BindingMismatch(
                f"signature does not bind {binding}: it was made for another model, version, "
                "artifact or fleet"
            ) from error


def verify_artifact(
    path: Path, *, binding: VersionBinding, signature: str, signing_key_id: str, trusted: TrustedKeys
) -> None:
    """Check the signed binding, then the files at `path` against its digest; raise `IntegrityError`
    on any mismatch (the signature first: it costs nothing, hashing reads every file)."""
    trusted.verify(binding, signature, signing_key_id)
    actual = directory_digest(path)
    if actual != binding.digest:
        raise DigestMismatch(f"artifact digest {actual[:12]}… differs from the signed {binding.digest[:12]}…")
