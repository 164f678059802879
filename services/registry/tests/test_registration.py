"""The registry turns every evaluated candidate into one version with its lineage; it signs (model,
version, digest, topic prefix) only for a version that passed, with the digest of the files it found."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow.artifacts
import pytest

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqlIdempotencyStore
from modelfleet_common.signing import (
    ArtifactSigner,
    BindingMismatch,
    TrustedKeys,
    Unsigned,
    VersionBinding,
    verify_artifact,
)
from modelfleet_common.state import StateEngine
from modelfleet_contracts import ModelRegistered
from modelfleet_contracts.envelope import Event
from modelfleet_registry.aliases import ChampionAliases
from modelfleet_registry.handlers import RegistryDeps, register_model
from modelfleet_registry.keys import load_signer
from modelfleet_registry.mlflow_registry import MlflowModelRegistry
from modelfleet_registry.registration import Registrar

from .conftest import TOPIC_PREFIX, Lab


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


def versions_of(lab: Lab, model: str) -> list[str]:
    return sorted(str(v.version) for v in lab.client.search_model_versions(f"name='{model}'"))


def test_a_passing_candidate_becomes_a_signed_challenger_version_with_its_lineage(
    lab: Lab, registrar: Registrar, model_name: str, signer: ArtifactSigner
) -> None:
    event = lab.evaluated(model_name)

    registered = registrar.register(event)

    assert (registered.version, registered.model_uri) == ("1", f"models:/{model_name}/1")
    assert registered.digest == event.artifact_digest
    assert registered.signing_key_id == signer.key_id
    assert registered.passed_evaluation is True
    assert registered.lineage == event.lineage
    assert registered.causation_id == event.event_id
    version = lab.client.get_model_version(model_name, "1")
    assert version.status == "READY"
    assert version.run_id == event.run_id
    assert {
        f"modelfleet.{key}": value for key, value in event.lineage.items()
    }.items() <= version.tags.items()
    assert version.tags["modelfleet.digest"] == event.artifact_digest
    assert version.tags["modelfleet.signature"] == registered.signature
    assert version.tags["modelfleet.signing_key_id"] == signer.key_id
    assert version.tags["modelfleet.signed_statement"] == "modelfleet.version-binding/v1"
    assert version.tags["modelfleet.signed_topic_prefix"] == TOPIC_PREFIX == registered.topic_prefix
    assert version.tags["modelfleet.verdict"] == "passed"
    assert version.tags["modelfleet.report_uri"] == event.report_uri
    model = lab.client.get_registered_model(model_name)
    assert model.aliases == {"challenger": 1}
    assert model.tags == {"modelfleet.owner": "reliability@example.com", "modelfleet.risk_class": "high"}
    assert model.description == "Predict pump failures a day ahead."


def test_a_failing_candidate_is_registered_for_the_record_but_never_signed_nor_challenger(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registered = registrar.register(lab.evaluated(model_name, passed=False))

    assert registered.passed_evaluation is False
    assert (registered.signature, registered.signing_key_id, registered.topic_prefix) == ("", "", None)
    tags = lab.client.get_model_version(model_name, registered.version).tags
    assert tags["modelfleet.verdict"] == "failed"
    assert not {"modelfleet.signature", "modelfleet.signing_key_id"} & tags.keys()
    assert lab.client.get_registered_model(model_name).aliases == {}


def test_the_signature_on_the_version_binds_its_model_version_digest_and_fleet(
    lab: Lab, model_name: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "state" / "signing" / "ed25519.pem"
    registry = MlflowModelRegistry(lab.uri, attempts=1, ready_timeout_seconds=10)
    registrar = Registrar(registry=registry, signer=load_signer(key_file), topic_prefix=TOPIC_PREFIX)
    registered = registrar.register(lab.evaluated(model_name))

    trusted = TrustedKeys.from_file(key_file.with_name("ed25519.pem.pub"))
    tags = lab.client.get_model_version(model_name, registered.version).tags
    files = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=lab.client.get_model_version_download_uri(model_name, registered.version),
            dst_path=str(tmp_path / "download"),
            tracking_uri=lab.uri,
        )
    )
    binding = VersionBinding(model_name, registered.version, tags["modelfleet.digest"], TOPIC_PREFIX)
    signature, key = tags["modelfleet.signature"], tags["modelfleet.signing_key_id"]
    verify_artifact(files, binding=binding, signature=signature, signing_key_id=key, trusted=trusted)
    for other in (
        VersionBinding("another-model", registered.version, binding.digest, TOPIC_PREFIX),
        VersionBinding(model_name, "2", binding.digest, TOPIC_PREFIX),
        VersionBinding(model_name, registered.version, binding.digest, "other-fleet."),
    ):
        with pytest.raises(BindingMismatch):
            verify_artifact(files, binding=other, signature=signature, signing_key_id=key, trusted=trusted)


def test_a_failed_version_cannot_be_verified_for_loading(
    lab: Lab, registrar: Registrar, model_name: str, signer: ArtifactSigner
) -> None:
    registered = registrar.register(lab.evaluated(model_name, passed=False))
    binding = VersionBinding(model_name, registered.version, registered.digest, TOPIC_PREFIX)
    trusted = TrustedKeys.from_lines([signer.public_key_b64])
    with pytest.raises(Unsigned, match="only versions that passed their evaluation are signed"):
        trusted.verify(binding, registered.signature, registered.signing_key_id)


def test_a_version_left_unsigned_by_a_crash_is_signed_when_the_evaluation_comes_again(
    lab: Lab, registrar: Registrar, model_name: str, signer: ArtifactSigner
) -> None:
    event = lab.evaluated(model_name)
    # The registry crashed after creating the version and before tagging its signature.
    lab.client.create_registered_model(model_name)
    lab.client.create_model_version(
        model_name,
        event.model_uri,
        run_id=event.run_id,
        tags={"modelfleet.digest": event.artifact_digest or "", "modelfleet.verdict": "passed"},
    )

    registered = registrar.register(event)

    assert versions_of(lab, model_name) == ["1"]
    binding = VersionBinding(model_name, "1", registered.digest, TOPIC_PREFIX)
    TrustedKeys.from_lines([signer.public_key_b64]).verify(binding, registered.signature, signer.key_id)
    assert lab.client.get_model_version(model_name, "1").tags["modelfleet.signature"] == registered.signature


def test_a_model_changed_after_evaluation_is_refused_and_not_registered(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    event = lab.evaluated(model_name)
    stored = lab.stored_model_file(event)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    with pytest.raises(
        PermanentError, match=r"refusing to register .* the stored model changed after evaluation"
    ):
        registrar.register(event)
    assert lab.client.search_registered_models(f"name='{model_name}'") == []


def test_an_evaluation_vouching_for_a_digest_its_files_do_not_have_is_refused(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    event = lab.evaluated(model_name).model_copy(update={"artifact_digest": "ab" * 32})
    with pytest.raises(PermanentError, match="the stored model changed after evaluation"):
        registrar.register(event)
    assert lab.client.search_registered_models(f"name='{model_name}'") == []


def test_an_evaluation_without_a_digest_is_refused(lab: Lab, registrar: Registrar, model_name: str) -> None:
    event = lab.evaluated(model_name).model_copy(update={"artifact_digest": None})
    with pytest.raises(PermanentError, match="carries no artifact_digest"):
        registrar.register(event)


def test_a_malformed_run_id_never_reaches_a_registry_search(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    event = lab.evaluated(model_name).model_copy(update={"run_id": "x' or name='other"})
    with pytest.raises(PermanentError, match="is not an MLflow run id"):
        registrar.register(event)


async def test_a_second_delivery_creates_no_second_version_even_after_local_state_is_lost(
    lab: Lab, registrar: Registrar, model_name: str, tmp_path: Path
) -> None:
    event = lab.evaluated(model_name)
    published = Published()
    deps = RegistryDeps(
        registrar,
        SqlIdempotencyStore(StateEngine.sqlite(tmp_path / "state.sqlite"), ttl_seconds=3600),
        published,
        ChampionAliases(MlflowModelRegistry(lab.uri, attempts=1)),
    )

    await register_model(event, deps)
    await register_model(event, deps)
    assert len(published) == 1

    forgetful = RegistryDeps(
        registrar,
        InMemoryIdempotencyStore(),
        published,
        ChampionAliases(MlflowModelRegistry(lab.uri, attempts=1)),
    )
    await register_model(event, forgetful)

    assert versions_of(lab, model_name) == ["1"]
    first, again = published
    assert isinstance(first, ModelRegistered)
    assert isinstance(again, ModelRegistered)
    # The same registration again (new envelope): whoever missed it hears of it, nobody sees a new version.
    unchanged = {"event_id", "occurred_at"}
    assert again.model_dump(exclude=unchanged) == first.model_dump(exclude=unchanged)


def test_a_redelivered_older_candidate_never_takes_the_challenger_back(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    older = lab.evaluated(model_name)
    registrar.register(older)
    newer = registrar.register(lab.evaluated(model_name))

    again = registrar.register(older)

    assert again.version == "1"
    assert lab.client.get_registered_model(model_name).aliases == {"challenger": int(newer.version)}


def test_the_signing_key_is_created_once_and_only_its_public_half_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "signing" / "ed25519.pem"
    with caplog.at_level(logging.INFO, logger="modelfleet.registry"):
        first = load_signer(key_file)
        again = load_signer(key_file)

    assert again.key_id == first.key_id
    assert key_file.with_name("ed25519.pem.pub").read_text().strip() == first.public_key_b64
    [record, _] = [r for r in caplog.records if r.getMessage().startswith("signing key loaded")]
    assert record.signing_key_id == first.key_id  # type: ignore[attr-defined]
    assert record.public_key_file == str(key_file.with_name("ed25519.pem.pub").resolve())  # type: ignore[attr-defined]
    assert "PRIVATE KEY" not in caplog.text


def test_a_model_uri_outside_the_evaluated_run_is_refused(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    event = lab.evaluated(model_name)
    other = lab.evaluated(model_name)
    with pytest.raises(PermanentError, match=r"is not an artifact of run"):
        registrar.register(event.model_copy(update={"model_uri": other.model_uri}))
