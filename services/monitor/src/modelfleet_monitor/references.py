"""What the monitor must remember to judge a version: where its reference is, and its evaluation.

`VersionFacts` keeps, in the service's durable key-value store, the facts learned from other
services' events (which the consumer group will not re-read after a restart): each dataset
version's profile URI, each registered version's run and dataset version, and each run's holdout
metrics. Whichever replica handles such an event writes it at once, and any replica reads it.
These facts never change once known (a dataset version, a registered version and a run are
immutable), so the values found are cached; a fact not found is read again next time, since
another replica may have written it since. `ProfileReader` reads profiles from wherever ingest
stored them (any fsspec URI).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelfleet_common.profiles import reference_profile
from modelfleet_common.state import KeyValueStore

from .drift import ProfileError, Reference, reference_from_profile
from .health import LiveTask

logger = logging.getLogger("modelfleet.monitor")

PROFILES, VERSIONS, RUNS = "profiles", "versions", "runs"


class VersionFacts:
    """Facts about dataset and model versions, in a `KeyValueStore`, the last `capacity` found
    kept in memory."""

    def __init__(self, store: KeyValueStore, capacity: int = 10_000) -> None:
        self.store = store
        self.capacity = capacity
        self._found: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def _get(self, namespace: str, key: str) -> Any | None:
        cached = self._found.get((namespace, key))
        if cached is not None:
            self._found.move_to_end((namespace, key))
            return cached
        value = self.store.get(namespace, key)
        if value is not None:
            self._keep(namespace, key, value)
        return value

    def _put(self, namespace: str, key: str, value: Any) -> None:
        self.store.put(namespace, key, value)
        self._keep(namespace, key, value)

    def _keep(self, namespace: str, key: str, value: Any) -> None:
        self._found[(namespace, key)] = value
        self._found.move_to_end((namespace, key))
        if len(self._found) > self.capacity:
            self._found.popitem(last=False)

    def note_dataset_version(self, version: str, profile_uri: str, uri: str) -> None:
        self._put(PROFILES, version, {"profile_uri": profile_uri, "uri": uri})

    def profile_uri(self, dataset_version: str) -> str | None:
        value = self._get(PROFILES, dataset_version)
        return str(value["profile_uri"]) if value else None

    def data_uri(self, dataset_version: str) -> str | None:
        """Where the dataset version's rows are (for a model trained on a slice of them)."""
        value = self._get(PROFILES, dataset_version)
        return str(value["uri"]) if value and value.get("uri") else None

    def note_run(self, run_id: str, metrics: dict[str, float]) -> None:
        self._put(RUNS, run_id, {"metrics": metrics})

    def note_model_version(self, model: str, version: str, run_id: str, dataset_version: str | None) -> None:
        self._put(VERSIONS, f"{model}/{version}", {"run_id": run_id, "dataset_version": dataset_version})

    def dataset_version(self, model: str, version: str) -> str | None:
        value = self._get(VERSIONS, f"{model}/{version}")
        return str(value["dataset_version"]) if value and value.get("dataset_version") else None

    def baseline(self, model: str, version: str, task: LiveTask) -> float | None:
        """The version's live metric as measured on its holdout: accuracy, or negated MAE."""
        registered = self._get(VERSIONS, f"{model}/{version}")
        run = self._get(RUNS, registered["run_id"]) if registered else None
        if run is None:
            return None
        metrics: dict[str, float] = run["metrics"]
        if task == "classification":
            return metrics.get("accuracy")
        mae = metrics.get("mae")
        return -mae if mae is not None else None


class ProfileSource(Protocol):
    """Reads reference profiles and dataset versions (tests pass a dict-backed fake)."""

    def read(self, uri: str) -> dict[str, Any]: ...

    def read_table(self, uri: str) -> pa.Table: ...


class FsspecProfiles:
    """Profiles and versions on any filesystem fsspec reads (a local path, `s3://`, `memory://`, ...)."""

    def read(self, uri: str) -> dict[str, Any]:
        with fsspec.open(uri, "rt") as handle:
            profile: dict[str, Any] = json.load(handle)
        return profile

    def read_table(self, uri: str) -> pa.Table:
        with fsspec.open(uri, "rb") as handle:
            return pq.read_table(handle)


def select_rows(table: pa.Table, where: Mapping[str, Any]) -> pa.Table:
    """The rows a model trains on: every `where` column equal to its value (as the trainer selects)."""
    mask = None
    for column, value in where.items():
        values = table.column(column)
        try:
            equal = pc.equal(values, pa.scalar(value).cast(values.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            equal = pc.equal(values.cast(pa.string()), str(value))
        mask = equal if mask is None else pc.and_(mask, equal)
    return table if mask is None else table.filter(pc.fill_null(mask, False))


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
        return self._keep(key, reference_from_profile(profile, features))

    def slice_reference(
        self, data_uri: str, where: Mapping[str, Any], features: Sequence[str], *, dataset_version: str
    ) -> Reference:
        """The reference of a model trained on the rows of a version matching `where`.

        The dataset's own profile describes every row: for a model of one site or one market, other
        sites' rows would look like drift. So the slice is profiled here, once per version, filter
        and features (the same statistics as ingest's profiles).
        """
        key = (f"{data_uri}?{sorted(where.items())}", tuple(features))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            table = self.source.read_table(data_uri)
        except (OSError, ValueError) as error:
            raise ProfileError(f"cannot read dataset version {data_uri}: {error}") from error
        missing = [name for name in [*where, *features] if name not in table.column_names]
        if missing:
            raise ProfileError(f"columns {missing} are not in dataset version {dataset_version[:12]}")
        rows = select_rows(table.select(list(dict.fromkeys([*where, *features]))), where)
        if rows.num_rows == 0:
            raise ProfileError(f"no row of dataset version {dataset_version[:12]} matches {dict(where)}")
        profile = reference_profile(rows.select(list(features)), dataset="slice", version=dataset_version)
        return self._keep(key, reference_from_profile(profile, features))

    def _keep(self, key: tuple[str, tuple[str, ...]], reference: Reference) -> Reference:
        self._cache[key] = reference
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return reference
