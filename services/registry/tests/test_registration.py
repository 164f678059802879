"""The registry turns every evaluated candidate into one signed version with its lineage."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow.artifacts
import pytest

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqliteIdempotencyStore
from modelfleet_common.signing import ArtifactSigner, TrustedKeys, verify_artifact
from modelfleet_contracts import ModelRegistered
from modelfleet_contracts.envelope import Event
from modelfleet_registry.aliases import ChampionAliases
from modelfleet_registry.handlers import RegistryDeps, register_model
from modelfleet_registry.keys import load_signer
from modelfleet_registry.mlflow_registry import MlflowModelRegistry
from modelfleet_registry.registration import Registrar

from .conftest import Lab


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
    assert version.tags["modelfleet.verdict"] == "passed"
    assert version.tags["modelfleet.report_uri"] == event.report_uri
    model = lab.client.get_registered_model(model_name)
    assert model.aliases == {"challenger": 1}
    assert model.tags == {"modelfleet.owner": "reliability@example.com", "modelfleet.risk_class": "high"}
    assert model.description == "Predict pump failures a day ahead."


def test_a_failing_candidate_is_registered_too_but_never_becomes_challenger(
    lab: Lab, registrar: Registrar, model_name: str
) -> None:
    registered = registrar.register(lab.evaluated(model_name, passed=False))

    assert registered.passed_evaluation is False
    assert lab.client.get_model_version(model_name, registered.version).tags["modelfleet.verdict"] == "failed"
    assert lab.client.get_registered_model(model_name).aliases == {}


def test_the_signature_on_the_version_verifies_with_the_public_key_file(
    lab: Lab, model_name: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "state" / "signing" / "ed25519.pem"
    registry = MlflowModelRegistry(lab.uri, attempts=1, ready_timeout_seconds=10)
    registered = Registrar(registry=registry, signer=load_signer(key_file)).register(
        lab.evaluated(model_name)
    )

    trusted = TrustedKeys.from_file(key_file.with_name("ed25519.pem.pub"))
    tags = lab.client.get_model_version(model_name, registered.version).tags
    files = mlflow.artifacts.download_artifacts(
        artifact_uri=lab.client.get_model_version_download_uri(model_name, registered.version),
        dst_path=str(tmp_path / "download"),
        tracking_uri=lab.uri,
    )
    verify_artifact(
        Path(files),
        digest=tags["modelfleet.digest"],
        signature=tags["modelfleet.signature"],
        signing_key_id=tags["modelfleet.signing_key_id"],
        trusted=trusted,
    )


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
        SqliteIdempotencyStore(tmp_path / "handled.sqlite"),
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
