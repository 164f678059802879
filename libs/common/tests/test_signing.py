"""Digests change with any byte or name; a signature verifies only for trusted keys, intact files and
the exact (model, version, digest, topic prefix) it was made for."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelfleet_common.signing import (
    ArtifactSigner,
    BindingMismatch,
    DigestMismatch,
    TrustedKeys,
    Unsigned,
    UntrustedKey,
    VersionBinding,
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
    binding = VersionBinding("churn", "3", directory_digest(artifact), "prod.")
    signature = signer.sign(binding)

    verify_artifact(
        artifact, binding=binding, signature=signature, signing_key_id=signer.key_id, trusted=trusted
    )

    (artifact / "model.skops").write_bytes(b"\x00tampered")
    with pytest.raises(DigestMismatch, match="differs from the signed"):
        verify_artifact(
            artifact, binding=binding, signature=signature, signing_key_id=signer.key_id, trusted=trusted
        )


@pytest.mark.parametrize(
    "other",
    [
        {"model": "fraud"},
        {"version": "4"},
        {"digest": "cd" * 32},
        {"topic_prefix": "staging."},
    ],
    ids=["another model", "another version", "another digest", "another fleet"],
)
def test_a_signature_binds_one_model_version_digest_and_fleet(tmp_path: Path, other: dict[str, str]) -> None:
    signer = ArtifactSigner.load_or_create(tmp_path / "registry.pem")
    trusted = TrustedKeys.from_file(tmp_path / "registry.pem.pub")
    signed = VersionBinding("churn", "3", "ab" * 32, "prod.")
    signature = signer.sign(signed)
    trusted.verify(signed, signature, signer.key_id)
    with pytest.raises(BindingMismatch, match="signature does not bind"):
        trusted.verify(replace(signed, **other), signature, signer.key_id)


def test_the_signed_statement_is_canonical_and_names_its_format() -> None:
    statement = VersionBinding("churn", "3", "ab" * 32, "prod.").statement()
    assert statement == (
        b'{"digest":"' + b"ab" * 32 + b'","model":"churn","statement":"modelfleet.version-binding/v1",'
        b'"topic_prefix":"prod.","version":"3"}'
    )


def test_a_version_without_a_signature_is_unsigned(tmp_path: Path) -> None:
    trusted = TrustedKeys.from_lines([ArtifactSigner.load_or_create(tmp_path / "k.pem").public_key_b64])
    with pytest.raises(Unsigned, match="only versions that passed their evaluation are signed"):
        trusted.verify(VersionBinding("churn", "2", "ab" * 32, ""), "", "")


def test_a_signature_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    stranger = ArtifactSigner.load_or_create(tmp_path / "stranger.pem")
    ArtifactSigner.load_or_create(tmp_path / "trusted.pem")
    trusted = TrustedKeys.from_file(tmp_path / "trusted.pem.pub")
    binding = VersionBinding("churn", "3", "ab" * 32, "")
    with pytest.raises(UntrustedKey, match="is not trusted"):
        trusted.verify(binding, stranger.sign(binding), stranger.key_id)


def test_any_of_several_trusted_keys_verifies_during_a_rotation(tmp_path: Path) -> None:
    old = ArtifactSigner.load_or_create(tmp_path / "old.pem")
    new = ArtifactSigner.load_or_create(tmp_path / "new.pem")
    trusted = TrustedKeys.from_lines([old.public_key_b64, "# rotated in", new.public_key_b64])
    binding = VersionBinding("churn", "3", "ab" * 32, "")
    trusted.verify(binding, old.sign(binding), old.key_id)
    trusted.verify(binding, new.sign(binding), new.key_id)


def test_the_key_file_is_reused_and_private(tmp_path: Path) -> None:
    first = ArtifactSigner.load_or_create(tmp_path / "k.pem")
    again = ArtifactSigner.load_or_create(tmp_path / "k.pem")
    assert first.key_id == again.key_id
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
