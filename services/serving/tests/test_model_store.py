"""Serving loads a model version only when the registry signed it for that model, version, digest and
fleet and its files match the digest, and only within budget."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from modelfleet_common.signing import ArtifactSigner, VersionBinding
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving import model_store
from modelfleet_serving.config import ServingSettings
from modelfleet_serving.model_store import (
    ArtifactRefused,
    KeyLock,
    MlflowModelSource,
    ModelKey,
    ModelStore,
    ModelUnavailable,
    StoreMetrics,
)

from .conftest import Lab, signed_for


class CountingSource(MlflowModelSource):
    """The real MLflow source, counting downloads."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri, attempts=1)
        self.downloads: list[tuple[str, str]] = []

    def download(self, model: str, target: RouteTarget, into: Path) -> Path:
        self.downloads.append((model, target.version))
        return super().download(model, target, into)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def store_for(
    lab: Lab, tmp_path: Path, source: CountingSource | None = None, **options: object
) -> ModelStore:
    return ModelStore(
        source or CountingSource(lab.uri),
        lab.trusted,
        scratch_dir=tmp_path / "scratch",
        registry=CollectorRegistry(),
        **options,  # type: ignore[arg-type]
    )


def refused_count(store: ModelStore, model: str, reason: str | None = None) -> float:
    """Refusals of `model` (of one reason, or of every reason)."""
    samples = [
        sample
        for metric in store.metrics.refused.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["model"] == model
    ]
    return sum(s.value for s in samples if reason in (None, s.labels["reason"]))


def test_a_verified_model_loads_and_predicts(lab: Lab, logged: RouteTarget, tmp_path: Path) -> None:
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    loaded = store.load("churn", logged)
    assert loaded.estimator.predict(np.zeros((3, 2))).shape == (3,)
    assert store.loaded() == [("churn", logged.version)]
    assert not any((tmp_path / "scratch").iterdir()), "downloaded files are removed once loaded"


def test_a_registry_uri_is_fetched_from_the_versions_own_storage(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    name = "registered-churn"
    lab.client.create_registered_model(name)
    version = lab.client.create_model_version(name, logged.model_uri, run_id=logged.model_uri.split("/")[1])
    target = signed_for(
        name, logged.model_copy(update={"version": str(version.version), "model_uri": f"models:/{name}/1"})
    )
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    assert store.load(name, target).estimator.predict(np.zeros((1, 2))).shape == (1,)


def test_a_tampered_file_is_refused_counted_and_never_loaded(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = lab.log_model(seed=5, model="tampered")
    stored = lab.stored_file(target, "MLmodel")
    stored.write_text(stored.read_text() + "\n# tampered\n")

    def must_not_load(directory: Path) -> object:
        raise AssertionError(f"unverified files in {directory} were deserialized")

    monkeypatch.setattr(model_store, "load_skops_model", must_not_load)
    source = CountingSource(lab.uri)
    store = store_for(lab, tmp_path, source, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match=r"'tampered' version '6' refused: artifact digest .* differs"):
        store.load("tampered", target)
    assert refused_count(store, "tampered", "digest") == 1
    assert store.loaded() == []
    # Within the retry window the refusal is remembered: no download per request.
    with pytest.raises(ArtifactRefused, match="differs from the signed"):
        store.load("tampered", target)
    assert len(source.downloads) == 1
    assert refused_count(store, "tampered") == 1


def test_a_model_signed_by_an_untrusted_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    stranger = ArtifactSigner(Ed25519PrivateKey.generate())
    target = lab.log_model(seed=6, signer=stranger)
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match=rf"signing key '{stranger.key_id}' is not trusted"):
        store.load("churn", target)
    assert refused_count(store, "churn", "untrusted_key") == 1


def test_a_signature_of_another_digest_is_refused(lab: Lab, logged: RouteTarget, tmp_path: Path) -> None:
    other = lab.signer.sign(VersionBinding("churn", logged.version, "0" * 64, ""))
    forged = logged.model_copy(update={"signature": other})
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match="signature does not bind model 'churn' version '1'"):
        store.load("churn", forged)
    assert refused_count(store, "churn", "binding") == 1


def test_a_signature_for_model_a_does_not_let_serving_load_it_for_model_b(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    signed_for_a = signed_for("churn-a", logged)
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match="signature does not bind model 'churn-b'"):
        store.load("churn-b", signed_for_a)
    assert refused_count(store, "churn-b", "binding") == 1
    assert store.loaded() == []
    assert store.load("churn-a", signed_for_a).model == "churn-a", "model A itself still loads"


def test_a_signature_of_one_version_does_not_serve_another_version(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    as_version_7 = signed_for("churn", logged).model_copy(update={"version": "7"})
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match="signature does not bind model 'churn' version '7'"):
        store.load("churn", as_version_7)


def test_a_signature_made_for_another_fleet_is_refused(lab: Lab, logged: RouteTarget, tmp_path: Path) -> None:
    other_fleet = signed_for("churn", logged, topic_prefix="staging.")
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024, topic_prefix="prod.")
    with pytest.raises(ArtifactRefused, match=r"in fleet 'prod\.'"):
        store.load("churn", other_fleet)
    # The refusal is remembered for the forged signature only, not for the version itself.
    assert store.load("churn", signed_for("churn", logged, topic_prefix="prod.")).version == "1"


def test_a_failed_candidate_carries_no_signature_and_is_never_served(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    failed = logged.model_copy(update={"signature": "", "signing_key_id": ""})
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ArtifactRefused, match="carries no registry signature"):
        store.load("churn", failed)
    assert refused_count(store, "churn", "unsigned") == 1
    assert store.loaded() == []


def test_a_refused_version_is_tried_again_after_the_retry_window(lab: Lab, tmp_path: Path) -> None:
    target = lab.log_model(seed=7)
    stored = lab.stored_file(target, "MLmodel")
    original = stored.read_text()
    stored.write_text(original + "\n# tampered\n")
    clock = FakeClock()
    store = store_for(
        lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024, refusal_retry_seconds=60, clock=clock
    )
    with pytest.raises(ArtifactRefused, match="differs from the signed"):
        store.load("churn", target)
    stored.write_text(original)
    clock.now = 61
    assert store.load("churn", target).version == target.version


def test_a_missing_artifact_is_unavailable_not_refused(lab: Lab, logged: RouteTarget, tmp_path: Path) -> None:
    missing = logged.model_copy(update={"model_uri": logged.model_uri.replace("/model", "/nothing-here")})
    store = store_for(lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024)
    with pytest.raises(ModelUnavailable, match="could not fetch model 'churn' version '1'"):
        store.load("churn", missing)
    assert refused_count(store, "churn") == 0


def test_the_least_recently_used_model_is_unloaded_when_the_budget_is_exceeded(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    probe = store_for(lab, tmp_path, memory_budget_bytes=1, memory_factor=1.0)
    size = probe.load("probe", signed_for("probe", logged)).memory_bytes
    store = store_for(lab, tmp_path, memory_budget_bytes=int(2.5 * size), memory_factor=1.0)
    store.load("a", signed_for("a", logged))
    store.load("b", signed_for("b", logged))
    store.load("a", signed_for("a", logged))  # now "b" is the least recently used
    store.load("c", signed_for("c", logged))
    assert store.loaded() == [("a", "1"), ("c", "1")]
    assert store.memory_used_bytes == 2 * size
    assert store.metrics.unloads.labels("memory")._value.get() == 1


def test_models_idle_longer_than_the_limit_are_unloaded(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    clock = FakeClock()
    store = store_for(
        lab, tmp_path, memory_budget_bytes=10 * 1024 * 1024, idle_unload_seconds=60, clock=clock
    )
    store.load("quiet", signed_for("quiet", logged))
    clock.now = 50
    store.load("busy", signed_for("busy", logged))
    assert store.unload_idle(now=100) == [("quiet", "1")]
    assert store.loaded() == [("busy", "1")]
    assert store.memory_used_bytes == store.load("busy", signed_for("busy", logged)).memory_bytes


class ObservedStore(ModelStore):
    """Signals once a second caller is waiting for the same version."""

    second_caller = threading.Event()

    def _acquire_key_lock(self, key: ModelKey) -> KeyLock:
        key_lock = super()._acquire_key_lock(key)
        if key_lock.users == 2:
            self.second_caller.set()
        return key_lock


class GatedSource(CountingSource):
    """Holds the first download until a second caller asks for the same version."""

    def __init__(self, tracking_uri: str, gate: threading.Event) -> None:
        super().__init__(tracking_uri)
        self.gate = gate

    def download(self, model: str, target: RouteTarget, into: Path) -> Path:
        # The timeout only stops a broken store from hanging the suite; the assertion is on counts.
        self.gate.wait(timeout=30)
        return super().download(model, target, into)


async def test_concurrent_first_requests_for_one_version_load_it_once(
    lab: Lab, logged: RouteTarget, tmp_path: Path
) -> None:
    ObservedStore.second_caller = threading.Event()
    source = GatedSource(lab.uri, ObservedStore.second_caller)
    store = ObservedStore(
        source,
        lab.trusted,
        scratch_dir=tmp_path / "scratch",
        memory_budget_bytes=10 * 1024 * 1024,
        registry=CollectorRegistry(),
    )
    first, second = await asyncio.gather(store.get("churn", logged), store.get("churn", logged))
    assert first is second
    assert source.downloads == [("churn", "1")]
    assert store.metrics.loads._value.get() == 1


def test_the_store_refuses_to_start_without_trusted_keys(tmp_path: Path) -> None:
    settings = ServingSettings(trusted_keys_file=None)
    with pytest.raises(ValueError, match="set FLEET_TRUSTED_KEYS_FILE"):
        ModelStore.from_settings(settings, StoreMetrics(CollectorRegistry()))


def test_settings_build_a_store_with_the_budget_in_megabytes(lab: Lab, tmp_path: Path) -> None:
    keys = tmp_path / "trusted.keys"
    keys.write_text(lab.signer.public_key_b64 + "\n")
    settings = ServingSettings(
        trusted_keys_file=keys,
        mlflow_tracking_uri=lab.uri,
        serving_memory_budget_mb=2,
        serving_model_dir=tmp_path / "models",
    )
    store = ModelStore.from_settings(settings, StoreMetrics(CollectorRegistry()))
    assert store.memory_budget_bytes == 2 * 1024 * 1024
    assert store.trusted.key_ids == [lab.signer.key_id]
