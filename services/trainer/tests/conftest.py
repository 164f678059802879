"""Shared test data: a small synthetic dataset, spec and version events, and an MLflow on SQLite."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelfleet_contracts import DatasetVersionCreated, ModelSpec, ModelSpecSubmitted
from modelfleet_contracts.data import ColumnInfo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: starts a real local Ray (one CPU), shared by the session")


def synthetic_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Machines over `rows` days: numeric, string, bool and seasonal columns, and four targets."""
    rng = np.random.default_rng(seed)
    when = pd.date_range("2025-01-01", periods=rows, freq="D")
    temperature = rng.normal(70, 8, rows)
    load = rng.integers(0, 10, rows)
    market = rng.choice(["se", "no", "dk"], rows)
    risk = (temperature - 70) / 8 + (load - 5) / 3 + rng.normal(0, 0.5, rows)
    frame = pd.DataFrame(
        {
            "when": when,
            "day_of_week": when.day_of_week,
            "day_of_year": when.day_of_year,
            "temperature": temperature,
            "load": load,
            "market": market,
            "running": rng.random(rows) > 0.3,
            "failed": (risk > 0).astype(int),
            "condition": np.select([risk < -0.7, risk < 0.7], ["ok", "worn"], "broken"),
            "fuel": 3 * temperature + 2 * load + rng.normal(0, 1, rows),
            "demand": 100 + 10 * np.sin(2 * np.pi * when.day_of_week / 7) + 2 * load + rng.normal(0, 1, rows),
        }
    )
    frame.loc[3, "temperature"] = np.nan  # nullable columns must not break the fit
    return frame


@dataclass(frozen=True)
class StoredVersion:
    """A dataset version written to disk, and the event that announces it."""

    frame: pd.DataFrame
    event: DatasetVersionCreated


@pytest.fixture
def store_version(tmp_path: Path) -> Callable[..., StoredVersion]:
    """Write a frame as a Parquet dataset version and build its `DatasetVersionCreated`."""

    def store(frame: pd.DataFrame | None = None, dataset: str = "machines") -> StoredVersion:
        frame = synthetic_frame() if frame is None else frame
        version = hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()).hexdigest()
        path = tmp_path / "datasets" / dataset / f"{version}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        event = DatasetVersionCreated(
            producer="ingest",
            dataset=dataset,
            version=version,
            uri=str(path),
            row_count=len(frame),
            columns=[ColumnInfo(name=str(c), dtype=str(t)) for c, t in frame.dtypes.items()],
            source_uri=str(path),
        )
        return StoredVersion(frame, event)

    return store


def model_spec(
    name: str = "pump-failure",
    *,
    template: str = "tabular-classifier",
    version: str = "1",
    hyperparameters: dict[str, Any] | None = None,
    dataset: str = "machines",
    dataset_version: str = "latest",
    where: dict[str, Any] | None = None,
    features: list[str] | None = None,
    target: str = "failed",
    cohort_columns: list[str] | None = None,
) -> ModelSpec:
    """A valid spec for the synthetic dataset; every part can be changed."""
    return ModelSpec.model_validate(
        {
            "metadata": {"name": name, "owner": "team@example.com", "risk_class": "low"},
            "spec": {
                "dataset": {"name": dataset, "version": dataset_version, "where": where or {}},
                "features": features or ["temperature", "load", "market", "running"],
                "target": target,
                "cohort_columns": cohort_columns if cohort_columns is not None else ["market"],
                "pipeline": {"template": template, "version": version},
                "hyperparameters": hyperparameters or {},
            },
        }
    )


def submitted(spec: ModelSpec) -> ModelSpecSubmitted:
    """The `ModelSpecSubmitted` of a spec, with the revision `modelfleet apply` would give it."""
    canonical = spec.model_dump_json(by_alias=True)
    return ModelSpecSubmitted(
        producer="cli:test",
        model=spec.metadata.name,
        revision=hashlib.sha256(canonical.encode()).hexdigest(),
        spec=spec,
    )


@dataclass(frozen=True)
class TrackingServer:
    """A file-backed MLflow: SQLite runs, local artifacts."""

    uri: str
    artifact_root: str


@pytest.fixture(scope="session")
def mlflow_tracking(tmp_path_factory: pytest.TempPathFactory) -> TrackingServer:
    home = tmp_path_factory.mktemp("mlflow")
    return TrackingServer(uri=f"sqlite:///{home / 'mlflow.db'}", artifact_root=str(home / "artifacts"))


@pytest.fixture
def make_spec() -> Callable[..., ModelSpec]:
    """`model_spec`: a valid spec for the synthetic dataset, any part changed by keyword."""
    return model_spec


@pytest.fixture
def submit() -> Callable[[ModelSpec], ModelSpecSubmitted]:
    """`submitted`: the submission event of a spec."""
    return submitted


@pytest.fixture
def frame() -> pd.DataFrame:
    """A fresh synthetic dataset (tests may change it)."""
    return synthetic_frame()
