"""What the monitor must remember to judge a version: where its reference is, and its evaluation.

`VersionFacts` keeps, in the service's durable key-value store, the facts learned from other
services' events (which the consumer group will not re-read after a restart): each dataset
version's profile URI, each registered version's run and dataset version, and each run's holdout
metrics. `ProfileReader` reads profiles from wherever ingest stored them (any fsspec URI).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import fsspec

from modelfleet_common.state import KeyValueStore

from .drift import ProfileError, Reference, reference_from_profile
from .health import LiveTask

logger = logging.getLogger("modelfleet.monitor")

PROFILES, VERSIONS, RUNS = "profiles", "versions", "runs"


class VersionFacts:
    """Facts about dataset and model versions, in a `KeyValueStore`."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store

    def note_dataset_version(self, version: str, profile_uri: str) -> None:
        self.store.put(PROFILES, version, {"profile_uri": profile_uri})

    def profile_uri(self, dataset_version: str) -> str | None:
        value = self.store.get(PROFILES, dataset_version)
        return str(value["profile_uri"]) if value else None

    def note_run(self, run_id: str, metrics: dict[str, float]) -> None:
        self.store.put(RUNS, run_id, {"metrics": metrics})

    def note_model_version(self, model: str, version: str, run_id: str, dataset_version: str | None) -> None:
        self.store.put(VERSIONS, f"{model}/{version}", {"run_id": run_id, "dataset_version": dataset_version})

    def dataset_version(self, model: str, version: str) -> str | None:
        value = self.store.get(VERSIONS, f"{model}/{version}")
        return str(value["dataset_version"]) if value and value.get("dataset_version") else None

    def baseline(self, model: str, version: str, task: LiveTask) -> float | None:
        """The version's live metric as measured on its holdout: accuracy, or negated MAE."""
        registered = self.store.get(VERSIONS, f"{model}/{version}")
        run = self.store.get(RUNS, registered["run_id"]) if registered else None
        if run is None:
            return None
        metrics: dict[str, float] = run["metrics"]
        if task == "classification":
            return metrics.get("accuracy")
        mae = metrics.get("mae")
        return -mae if mae is not None else None


class ProfileSource(Protocol):
    """Reads a reference profile (tests pass a dict-backed fake)."""

    def read(self, uri: str) -> dict[str, Any]: ...


class FsspecProfiles:
    """Profiles on any filesystem fsspec reads (a local path, `s3://`, `memory://`, ...)."""

    def read(self, uri: str) -> dict[str, Any]:
        with fsspec.open(uri, "rt") as handle:
            profile: dict[str, Any] = json.load(handle)
        return profile


class ReferenceCache:
    """References built from profiles, the most recently used `capacity` kept in memory."""

    def __init__(self, source: ProfileSource, capacity: int = 1024) -> None:
        self.source = source
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], Reference] = OrderedDict()

    def reference(self, profile_uri: str, features: Sequence[str]) -> Reference:
        """The reference of `features`; raises `ProfileError` (or `OSError`) when unusable."""
        key = (profile_uri, tuple(features))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            profile = self.source.read(profile_uri)
        except (OSError, ValueError) as error:
            raise ProfileError(f"cannot read the reference profile {profile_uri}: {error}") from error
        reference = reference_from_profile(profile, features)
        self._cache[key] = reference
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return reference
