"""Small, learnable datasets and specs for the assembly-line tests (written to a temp directory)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.datasets import load_breast_cancer

OWNER = "fleet-tests@example.com"


def _dataset(name: str, frame: pd.DataFrame, source: str, **extra: Any) -> dict[str, Any]:
    columns = []
    for column, dtype in frame.dtypes.items():
        kind = "float" if dtype.kind == "f" else "int" if dtype.kind in "iu" else "string"
        columns.append({"name": str(column), "type": kind})
    return {
        "apiVersion": "modelfleet/v1",
        "kind": "Dataset",
        "metadata": {"name": name, "owner": OWNER},
        "spec": {"columns": columns, "source": source, **extra},
    }


def model_spec(
    name: str,
    dataset: str,
    features: list[str],
    target: str,
    template: str,
    version: str,
    hyperparameters: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet/v1",
        "kind": "ModelSpec",
        "metadata": {"name": name, "owner": OWNER, "purpose": "integration test", "risk_class": "low"},
        "spec": {
            "dataset": {"name": dataset},
            "features": features,
            "target": target,
            "pipeline": {"template": template, "version": version},
            "hyperparameters": hyperparameters or {},
            **spec,
        },
    }


def sensors(rows: int = 1200, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vibration = rng.gamma(2.0, 1.0, rows)
    temperature = rng.normal(70, 8, rows)
    machine = rng.choice(["pump", "compressor"], rows)
    risk = 0.9 * vibration + 0.12 * (temperature - 70) + np.where(machine == "pump", 0.5, 0.0) - 3.0
    fails = (rng.random(rows) < 1 / (1 + np.exp(-2 * risk))).astype(int)
    return pd.DataFrame(
        {"vibration": vibration, "temperature": temperature, "machine": machine, "fails": fails}
    )


def drifted(rows: int, seed: int) -> pd.DataFrame:
    """Sensor rows of machines running hotter and shaking harder, labelled by the same physics."""
    frame = sensors(rows=rows, seed=seed)
    shifted = sensors(rows=rows, seed=seed)
    frame["vibration"] = shifted["vibration"] * 1.6
    frame["temperature"] = shifted["temperature"] + 15
    # The outcome follows the same risk formula as in training (see `assembly_data.sensors`).
    risk = (
        0.9 * frame["vibration"]
        + 0.12 * (frame["temperature"] - 70)
        + (frame["machine"] == "pump") * 0.5
        - 3.0
    )
    rng = random.Random(seed)
    frame["fails"] = [int(rng.random() < 1 / (1 + pow(2.718281828, -2 * r))) for r in risk]
    return frame


def energy(rows: int = 800, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(50, 400, rows)
    insulation = rng.choice(["poor", "average", "good"], rows)
    outdoor = rng.normal(5, 6, rows)
    factor = np.select([insulation == "poor", insulation == "average"], [1.4, 1.0], 0.7)
    kwh = 20 + 0.8 * area * factor - 3.5 * outdoor + rng.normal(0, 12, rows)
    return pd.DataFrame({"area": area, "insulation": insulation, "outdoor": outdoor, "kwh": kwh.round(2)})


def demand(days: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    day_of_week = dates.day_of_week.to_numpy()
    day_of_year = dates.day_of_year.to_numpy()
    promo = (rng.random(days) < 0.15).astype(int)
    units = (
        100
        + 0.05 * np.arange(days)
        + 15 * np.sin(2 * np.pi * day_of_week / 7)
        + 20 * np.sin(2 * np.pi * day_of_year / 365)
        + 30 * promo
        + rng.normal(0, 4, days)
    )
    return pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "day_of_week": day_of_week,
            "day_of_year": day_of_year,
            "promo": promo,
            "units": units.round(1),
        }
    )


def write_fleet(root: Path, suffix: str) -> dict[str, dict[str, Any]]:
    """Four datasets (one bundled with scikit-learn) and five specs over every template.

    Model names end in `suffix`: registered model names are global in an MLflow server that
    outlives one test run. Returns the specs by model name.
    """
    root.mkdir(parents=True, exist_ok=True)
    cancer = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    cancer["malignant"] = 1 - cancer.pop("target")
    frames = {"cancer": cancer, "energy": energy(), "sensors": sensors(), "demand": demand()}
    documents: list[dict[str, Any]] = []
    for name, frame in frames.items():
        frame.to_csv(root / f"{name}.csv", index=False)
        extra = {"time_column": "date"} if name == "demand" else {}
        documents.append(_dataset(name, frame, f"{name}.csv", **extra))
    specs = {
        "cancer-screening": model_spec(
            "cancer-screening",
            "cancer",
            ["mean_radius", "mean_texture", "mean_smoothness", "worst_concave_points"],
            "malignant",
            "tabular-classifier",
            "1",
            {"C": 0.5},
        ),
        "sensor-failure-lr": model_spec(
            "sensor-failure-lr",
            "sensors",
            ["vibration", "temperature", "machine"],
            "fails",
            "tabular-classifier",
            "1",
        ),
        "sensor-failure-gbm": model_spec(
            "sensor-failure-gbm",
            "sensors",
            ["vibration", "temperature", "machine"],
            "fails",
            "tabular-classifier",
            "2",
            {"max_iter": 50},
        ),
        "heating-energy": model_spec(
            "heating-energy",
            "energy",
            ["area", "insulation", "outdoor"],
            "kwh",
            "tabular-regressor",
            "1",
            {"alpha": 0.5},
        ),
        "store-demand": model_spec(
            "store-demand",
            "demand",
            ["day_of_week", "day_of_year", "promo"],
            "units",
            "time-series-forecaster",
            "1",
            {"time_column": "date", "seasonalities": {"day_of_week": 7, "day_of_year": 365}},
        ),
    }
    (root / "datasets.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    for spec in specs.values():
        spec["metadata"]["name"] += suffix
    (root / "models.yaml").write_text(yaml.safe_dump_all(list(specs.values()), sort_keys=False))
    return {spec["metadata"]["name"]: spec for spec in specs.values()}
