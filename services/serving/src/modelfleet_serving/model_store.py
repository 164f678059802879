"""The models serving holds in memory: fetched from MLflow on first use, verified, then cached.

Nothing is deserialized before the registry's signature, made by a key in
`FLEET_TRUSTED_KEYS_FILE`, binds exactly what serving is asked to load — the model it routes, the
version, the digest and serving's own topic prefix (`signing.VersionBinding`) — and the downloaded
files match that digest. A table pointing model B at model A's signed version, at another version
or at another fleet's, or at a failed (unsigned) candidate, fails that check: `ArtifactRefused`,
counted in `fleet_serving_artifacts_refused_total{model,reason}` (reason: unsigned, untrusted_key,
binding, digest, unsafe_type), and the version is never served.

Loaded models live in an LRU cache bounded by a memory budget. A model's memory is *estimated*
as the size of its files times a factor (`FLEET_SERVING_MEMORY_FACTOR`, default 3): measuring
the real heap of an estimator is slow and unreliable, while the file size is known before the load
and grows with the arrays the estimator holds. Models unused for `FLEET_SERVING_IDLE_UNLOAD_SECONDS`
are unloaded by `unload_idle`, which the app calls periodically.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry, Counter, Gauge

from modelfleet_common.mlflow_calls import RunArtifacts, mlflow_retrying
from modelfleet_common.model_files import ModelRefused, directory_size, load_skops_model
from modelfleet_common.signing import IntegrityError, TrustedKeys, VersionBinding, verify_artifact
from modelfleet_contracts.rollout import RouteTarget

from .config import ServingSettings
from .schema import InputSchema, read_input_schema

logger = logging.getLogger("modelfleet.serving")

_MB = 1024 * 1024

#: (model, version, digest): a version re-signed with other files is another cache entry.
ModelKey = tuple[str, str, str]
#: (model, version, digest, signature): a refusal is remembered for what was refused, so a forged
#: signature of a version never holds back the registry's own signature of it.
RefusalKey = tuple[str, str, str, str]


class ArtifactRefused(Exception):
    """A version's files failed digest, signature or safe-loading checks: it is never served."""

    def __init__(
        self, model: str, version: str, reason: str, *, newly: bool = False, kind: str = "integrity"
    ) -> None:
        super().__init__(f"model {model!r} version {version!r} refused: {reason}")
        self.model = model
        self.version = version
        self.reason = reason
        #: Which check failed, from a small fixed set (`IntegrityError.reason`, or `unsafe_type`).
        self.kind = kind
        #: True only for the check that found the problem; later requests within the refusal
        #: memory get the remembered refusal, so the incident is reported once, not per request.
        self.newly = newly


class ModelUnavailable(Exception):
    """A version's files could not be fetched (missing in MLflow, or MLflow unreachable)."""


class ModelSource(Protocol):
    """Where a version's files come from."""

    def download(self, model: str, target: RouteTarget, into: Path) -> Path:
        """Copy the version's model directory into `into`; returns its local path."""
        ...


class MlflowModelSource:
    """Model files from the version's own storage location in MLflow, with retries of transient errors.

    Never a `models:/` download: MLflow adds a registry metadata file to it that the signed
    digest does not cover, so a correct artifact would fail verification.
    """

    def __init__(self, tracking_uri: str, *, attempts: int = 3, backoff_seconds: float = 0.5) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.artifacts = RunArtifacts(self.client)
        self._attempts = attempts
        self._backoff_seconds = backoff_seconds

    def storage_uri(self, model: str, target: RouteTarget) -> str:
        """Where the version's files are stored: `runs:/…` and store URIs as given, else the registry's."""
        if target.model_uri.startswith("models:/"):
            uri = self.client.get_model_version_download_uri(model, target.version)
            return str(uri)
        return target.model_uri

    def download(self, model: str, target: RouteTarget, into: Path) -> Path:
        try:
            for attempt in mlflow_retrying(self._attempts, self._backoff_seconds):
                with attempt:
                    return self.artifacts.download(self.storage_uri(model, target), into)
        except (MlflowException, OSError, requests.RequestException) as error:
            raise ModelUnavailable(
                f"could not fetch model {model!r} version {target.version!r} from {target.model_uri}: {error}"
            ) from error
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


@dataclass
class LoadedModel:
    """A verified, deserialized model version and its bookkeeping."""

    model: str
    version: str
    digest: str
    estimator: Any
    memory_bytes: int
    last_used: float
    #: Its features and their types (from the signature in its verified files), when known.
    schema: InputSchema | None = None


class StoreMetrics:
    """Prometheus metrics of the model store; labelled by model at most, so cardinality stays bounded."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "fleet_serving_artifacts_refused",
            "Model versions refused: unsigned, untrusted key, signature not binding this model, "
            "version, digest and fleet, files not matching the digest, or unsafe types.",
            ["model", "reason"],
            registry=registry,
        )
        self.loads = Counter(
            "fleet_serving_model_loads", "Model versions verified and loaded.", registry=registry
        )
        self.unloads = Counter(
            "fleet_serving_model_unloads",
            "Model versions unloaded, by reason (memory, idle).",
            ["reason"],
            registry=registry,
        )
        self.loaded = Gauge("fleet_serving_models_loaded", "Model versions in memory.", registry=registry)
        self.memory = Gauge(
            "fleet_serving_models_memory_bytes",
            "Estimated memory of the loaded models (file size x memory factor).",
            registry=registry,
        )


@dataclass
class KeyLock:
    """The lock of one version being loaded, and how many callers hold or wait for it."""

    lock: threading.Lock
    users: int = 0


class ModelStore:
    """Verified models by (model, version), loaded once each, within a memory budget."""

    def __init__(
        self,
        source: ModelSource,
        trusted: TrustedKeys,
        *,
        scratch_dir: Path,
        memory_budget_bytes: int,
        memory_factor: float = 3.0,
        idle_unload_seconds: float = 900.0,
        refusal_retry_seconds: float = 60.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        topic_prefix: str = "",
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.source = source
        self.trusted = trusted
        #: This fleet's topic prefix: every signature must bind it (the fleet default is "").
        self.topic_prefix = topic_prefix
        self.scratch_dir = scratch_dir
        self.memory_budget_bytes = memory_budget_bytes
        self.memory_factor = memory_factor
        self.idle_unload_seconds = idle_unload_seconds
        self.refusal_retry_seconds = refusal_retry_seconds
        self.metrics = metrics or StoreMetrics(registry if registry is not None else CollectorRegistry())
        self.clock = clock
        self._models: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
        self._memory_used = 0
        self._refused: dict[RefusalKey, tuple[float, str, str]] = {}
        self._key_locks: dict[ModelKey, KeyLock] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ServingSettings, metrics: StoreMetrics) -> ModelStore:
        """The store serving runs with (its metrics built with the service's, at import); refuses to
        start without trusted keys to verify against."""
        if settings.trusted_keys_file is None:
            raise ValueError(
                "serving verifies every model's signature: set FLEET_TRUSTED_KEYS_FILE to the file "
                "of registry public keys (one base64 key per line)"
            )
        return cls(
            MlflowModelSource(
                settings.mlflow_tracking_uri,
                attempts=settings.max_attempts,
                backoff_seconds=settings.retry_backoff_seconds,
            ),
            TrustedKeys.from_file(settings.trusted_keys_file),
            scratch_dir=settings.serving_model_dir,
            memory_budget_bytes=int(settings.serving_memory_budget_mb * _MB),
            memory_factor=settings.serving_memory_factor,
            idle_unload_seconds=settings.serving_idle_unload_seconds,
            refusal_retry_seconds=settings.serving_refusal_retry_seconds,
            metrics=metrics,
            topic_prefix=settings.topic_prefix,
        )

    @property
    def memory_used_bytes(self) -> int:
        """Estimated memory of the loaded models."""
        return self._memory_used

    def loaded(self) -> list[tuple[str, str]]:
        """(model, version) of the loaded models, least recently used first."""
        with self._lock:
            return [(key[0], key[1]) for key in self._models]

    async def get(self, model: str, target: RouteTarget) -> LoadedModel:
        """The loaded model for `target`; downloads, verifies and loads it in a thread on first use."""
        hit = self._hit(_key(model, target))
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.load, model, target)

    def load(self, model: str, target: RouteTarget) -> LoadedModel:
        """Blocking form of `get`. Concurrent callers for one version wait for a single load.

        Raises `ArtifactRefused` when the files fail verification, `ModelUnavailable` when they
        cannot be fetched.
        """
        key = _key(model, target)
        hit = self._hit(key)
        if hit is not None:
            return hit
        key_lock = self._acquire_key_lock(key)
        try:
            with key_lock.lock:
                # Another caller may have loaded it while this one waited for the lock.
                hit = self._hit(key)
                if hit is not None:
                    return hit
                self._raise_if_recently_refused(_refusal_key(model, target))
                loaded = self._fetch_verify_load(model, target)
                self._insert(key, loaded)
                return loaded
        finally:
            self._release_key_lock(key, key_lock)

    def unload_idle(self, now: float) -> list[tuple[str, str]]:
        """Unload models unused for longer than the idle limit; returns their (model, version)."""
        unloaded = []
        with self._lock:
            for key, loaded in list(self._models.items()):
                if now - loaded.last_used > self.idle_unload_seconds:
                    self._remove(key, reason="idle")
                    unloaded.append((key[0], key[1]))
            # Expired refusals are forgotten here too, so the refusal memory stays bounded.
            for refused, (until, _, _) in list(self._refused.items()):
                if until <= now:
                    del self._refused[refused]
        for model, version in unloaded:
            logger.info("model unloaded", extra={"model": model, "version": version, "reason": "idle"})
        return unloaded

    def _hit(self, key: ModelKey) -> LoadedModel | None:
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                loaded.last_used = self.clock()
                self._models.move_to_end(key)
            return loaded

    def _acquire_key_lock(self, key: ModelKey) -> KeyLock:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, KeyLock(threading.Lock()))
            key_lock.users += 1
            return key_lock

    def _release_key_lock(self, key: ModelKey, key_lock: KeyLock) -> None:
        # Locks of versions nobody is loading are dropped, so the lock table does not grow with the fleet.
        with self._lock:
            key_lock.users -= 1
            if key_lock.users == 0:
                self._key_locks.pop(key, None)

    def _raise_if_recently_refused(self, key: RefusalKey) -> None:
        with self._lock:
            refusal = self._refused.get(key)
        if refusal is not None and self.clock() < refusal[0]:
            raise ArtifactRefused(key[0], key[1], refusal[1], kind=refusal[2])

    def _refuse(self, model: str, target: RouteTarget, reason: str, kind: str) -> ArtifactRefused:
        self.metrics.refused.labels(model, kind).inc()
        with self._lock:
            self._refused[_refusal_key(model, target)] = (
                self.clock() + self.refusal_retry_seconds,
                reason,
                kind,
            )
        logger.warning(
            "model artifact refused",
            extra={"model": model, "version": target.version, "reason": reason, "check": kind},
        )
        return ArtifactRefused(model, target.version, reason, newly=True, kind=kind)

    def _fetch_verify_load(self, model: str, target: RouteTarget) -> LoadedModel:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch_dir, prefix="download-") as scratch:
            directory = self.source.download(model, target, Path(scratch))
            # What serving was asked to load, in this fleet: the signature must bind exactly that.
            binding = VersionBinding(model, target.version, target.digest, self.topic_prefix)
            try:
                verify_artifact(
                    directory,
                    binding=binding,
                    signature=target.signature,
                    signing_key_id=target.signing_key_id,
                    trusted=self.trusted,
                )
            except IntegrityError as error:
                raise self._refuse(model, target, str(error), error.reason) from error
            try:
                estimator = load_skops_model(directory)
            except ModelRefused as error:
                raise self._refuse(model, target, str(error), "unsafe_type") from error
            memory_bytes = int(max(directory_size(directory), 1) * self.memory_factor)
            schema = read_input_schema(directory, estimator)
        self.metrics.loads.inc()
        logger.info(
            "model loaded", extra={"model": model, "version": target.version, "memory_bytes": memory_bytes}
        )
        return LoadedModel(
            model=model,
            version=target.version,
            digest=target.digest,
            estimator=estimator,
            memory_bytes=memory_bytes,
            last_used=self.clock(),
            schema=schema,
        )

    def _insert(self, key: ModelKey, loaded: LoadedModel) -> None:
        """Keep `loaded`, then unload least recently used models until the budget holds.

        A single model larger than the whole budget is still kept (alone): refusing it would take
        the model offline although the machine may well hold it.
        """
        evicted = []
        with self._lock:
            self._models[key] = loaded
            self._memory_used += loaded.memory_bytes
            while self._memory_used > self.memory_budget_bytes and len(self._models) > 1:
                oldest = next(iter(self._models))
                self._remove(oldest, reason="memory")
                evicted.append(oldest)
            self._update_gauges()
        for model, version, _ in evicted:
            logger.info("model unloaded", extra={"model": model, "version": version, "reason": "memory"})

    def _remove(self, key: ModelKey, *, reason: str) -> None:
        """Drop a model; the caller holds `_lock`."""
        removed = self._models.pop(key)
        self._memory_used -= removed.memory_bytes
        self.metrics.unloads.labels(reason).inc()
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.loaded.set(len(self._models))
        self.metrics.memory.set(self._memory_used)


def _key(model: str, target: RouteTarget) -> ModelKey:
    return (model, target.version, target.digest)


def _refusal_key(model: str, target: RouteTarget) -> RefusalKey:
    return (model, target.version, target.digest, target.signature)
