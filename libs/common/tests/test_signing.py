"""Digests change with any byte or name; signatures verify only for trusted keys and intact files."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_common.signing import (
    ArtifactSigner,
    IntegrityError,
    TrustedKeys,
    UntrustedKey,
    directory_digest,
    verify_artifact,
)


def _artifact(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "MLmodel").write_text("flavors: {}\n")
    (root / "model" / "model.skops").write_bytes(b"\x00weights")
    return root / "model"


def test_digest_ignores_location_but_not_content_or_names(tmp_path: Path) -> None:
    first = _artifact(tmp_path / "a")
    second = _artifact(tmp_path / "b")
    assert directory_digest(first) == directory_digest(second)
    (second / "model.skops").write_bytes(b"\x00weightz")
    assert directory_digest(first) != directory_digest(second)
    (first / "model.skops").rename(first / "renamed.skops")
    assert directory_digest(first) != directory_digest(_artifact(tmp_path / "c"))


def test_a_signed_artifact_verifies_and_a_modified_one_does_not(tmp_path: Path) -> None:
    signer = ArtifactSigner.load_or_create(tmp_path / "keys" / "registry.pem")
    trusted = TrustedKeys.from_file(tmp_path / "keys" / "registry.pem.pub")
    artifact = _artifact(tmp_path / "a")
    digest = directory_digest(artifact)
    signature = signer.sign(digest)

    verify_artifact(
        artifact, digest=digest, signature=signature, signing_key_id=signer.key_id, trusted=trusted
    )

    (artifact / "model.skops").write_bytes(b"\x00tampered")
    with pytest.raises(IntegrityError, match="differs from the signed"):
        verify_artifact(
            artifact, digest=digest, signature=signature, signing_key_id=signer.key_id, trusted=trusted
        )


def test_a_signature_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    trusted_signer = ArtifactSigner.load_or_create(tmp_path / "trusted.pem")
    stranger = ArtifactSigner.load_or_create(tmp_path / "stranger.pem")
    trusted = TrustedKeys.from_file(tmp_path / "trusted.pem.pub")
    with pytest.raises(UntrustedKey, match="is not trusted"):
        trusted.verify("ab" * 32, stranger.sign("ab" * 32), stranger.key_id)
    with pytest.raises(IntegrityError, match="signature does not match"):
        trusted.verify("ab" * 32, trusted_signer.sign("cd" * 32), trusted_signer.key_id)


def test_the_key_file_is_reused_and_private(tmp_path: Path) -> None:
    first = ArtifactSigner.load_or_create(tmp_path / "k.pem")
    again = ArtifactSigner.load_or_create(tmp_path / "k.pem")
    assert first.key_id == again.key_id
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
