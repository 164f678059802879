"""Drift checks for a fleet: modelfleet's drift engine against Evidently, same data, same tests, one run.

Data (seeded, written once as Parquet to a temporary directory and read by both sides):

* **fleet**: `--models` models, each with a reference and a current frame of 5,000 rows and 20
  features: 16 numeric (normal, lognormal, Poisson counts, bimodal; four of each, parameters drawn
  per model) and 4 categorical strings (3 to 12 categories, shares drawn per model). About 60 % of
  the models get a current frame from the same distributions as their reference; the others get
  drift in a random subset of 1 to 20 features: shifted or rescaled numbers, moved category shares,
  each with a magnitude drawn log-uniformly from 0.02 to 0.6 (in standard deviations, relative
  scale change or share of mass moved), so that many sit near the thresholds instead of only
  obvious drift.
* **wide**: one table of 100 numeric columns (the same four families) with 350,000 rows of
  reference and of current data, 30 columns drifted with magnitudes from 0.005 to 0.3.

Methods and thresholds, identical on both sides (Evidently through `DataDriftPreset`'s
`num_method`/`cat_method` and `num_threshold`/`cat_threshold`): `psi` 0.2, `ks` p < 0.05 with
`chi_square` p < 0.05 for categorical columns, `jensen_shannon` 0.1, `wasserstein` 0.1 (normed by
the reference's standard deviation) with `jensen_shannon` 0.1 for categorical columns. What differs
by design is the binning: Evidently bins PSI and Jensen-Shannon on Sturges' equal-width bins of the
combined data (by value when the reference has at most 20 distinct values) and runs KS and
Wasserstein on the raw values; modelfleet keeps 200 equal-mass bins of the reference (ingest's
profile), computes KS and Wasserstein on them and PSI and Jensen-Shannon on their deciles. That is
why the share of identical verdicts is measured, per method.

Timings (single process each, one after the other, so the two never compete for the 2 cores):

* **Evidently** (`baselines/evidently_drift.py`, its own venv `.venv-bench-evidently` because it
  needs pandas < 3): per model, `Dataset.from_pandas` + `Report([DataDriftPreset]).run`, once per
  model (it is slow); frames already read into pandas.
* **modelfleet, monitor path**: what the monitor pays per window, with the reference built once
  per model version (the monitor caches it): `DriftWindow(reference)`, `add_columns` with the
  current frame as a numeric matrix and categorical value lists, `check(method, threshold)`.
* **modelfleet, end to end**: the reference too: `reference_profile` of the reference table (what
  ingest does once per dataset version), `reference_from_profile`, then the monitor path.

modelfleet's timings are the median of `--repeats` passes over the fleet. Verdicts: the share of
identical per-feature verdicts and of identical per-model dataset verdicts (drifted when at least
half of the features drift, Evidently's default), and how often each side flags the features that
were drifted on purpose and the ones that were not.

    python benchmarks/drift.py --quick                   # 50 models, 50,000-row wide table
    python benchmarks/drift.py --models 100 --methods psi
    python benchmarks/drift.py                           # 1000 models, all methods: about 2 h

Evidently takes about 1.5 h of the full run, modelfleet's 5 passes of both paths about 15 min.
Writes `benchmarks/results/drift-<timestamp>.json`: the summary, both configurations, every
feature whose verdicts differ (with both statistics) and modelfleet's time of every pass.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelfleet_common.profiles import reference_profile
from modelfleet_monitor.drift import (
    DEFAULT_THRESHOLDS,
    DriftWindow,
    FeatureResult,
    Method,
    Reference,
    categorical_method,
    drift_share,
    reference_from_profile,
)

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "benchmarks" / "baselines" / "evidently_drift.py"
EVIDENTLY_VENV = REPO / ".venv-bench-evidently"
EVIDENTLY_VERSION = "0.7.23"
RESULTS = REPO / "benchmarks" / "results"
MODELFLEET, EVIDENTLY = "modelfleet", "Evidently"

#: The methods compared; `chi_square` is not one of them on its own: it is what categorical
#: features use under `ks`, so its agreement shows in the categorical rows of `ks`.
METHODS: tuple[Method, ...] = ("psi", "ks", "jensen_shannon", "wasserstein")
#: Evidently's name of each of modelfleet's methods.
EVIDENTLY_NAMES: dict[str, str] = {
    "psi": "psi",
    "ks": "ks",
    "jensen_shannon": "jensenshannon",
    "wasserstein": "wasserstein",
    "chi_square": "chisquare",
}
#: A model's dataset drifts when at least this share of its features drift (Evidently's default).
DATASET_DRIFT_SHARE = 0.5
#: Seconds Evidently took here per model of 20 features x 5,000 rows (1.0 to 1.2 s, by method).
EVIDENTLY_SECONDS_PER_MODEL = 1.2
#: Seconds Evidently took here per million cells (reference + current) of the wide table.
EVIDENTLY_SECONDS_PER_MILLION_CELLS = 1.3
#: The goals of issue #5, for the fleet scenario.
GOAL_SPEEDUP, GOAL_AGREEMENT = 100.0, 0.99

NUMERIC_FAMILIES = ("normal", "lognormal", "counts", "bimodal")
FLEET_NUMERIC, FLEET_CATEGORICAL, FLEET_ROWS = 16, 4, 5000
WIDE_COLUMNS, WIDE_DRIFTED = 100, 30
FLEET_DRIFTED_SHARE = 0.4
FLEET_DRIFTED_FEATURES = (1, 2, 3, 4, 6, 8, 10, 12, 15, 20)


# --- data -----------------------------------------------------------------------------------------


@dataclass
class ModelData:
    """One model's files and columns, and the features drifted on purpose (with their magnitude)."""

    name: str
    reference: str
    current: str
    numeric: list[str]
    categorical: list[str]
    injected: dict[str, float] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def numeric_column(
    rng: np.random.Generator, family: str, rows: int, magnitude: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Reference and current values of one numeric column; `magnitude` 0 draws both alike.

    A drifted column gets, at random, either a shift of its location by `magnitude` standard
    deviations (bimodal: of both modes) or, normal and lognormal, its spread times `1 + magnitude`
    (wider or narrower), bimodal, `magnitude / 2` of the weight moved between its modes; counts get
    their rate times `1 + magnitude` (higher or lower).
    """
    sign = rng.choice([-1.0, 1.0])
    shift = rng.random() < 0.5
    if family == "normal":
        loc, scale = rng.uniform(-50, 50), rng.uniform(0.5, 20)
        cur_loc = loc + sign * magnitude * scale if shift else loc
        cur_scale = scale if shift else scale * (1 + magnitude) ** sign
        return rng.normal(loc, scale, rows), rng.normal(cur_loc, cur_scale, rows)
    if family == "lognormal":
        mu, sigma = rng.uniform(0, 3), rng.uniform(0.3, 1.2)
        cur_mu = mu + sign * magnitude * sigma if shift else mu
        cur_sigma = sigma if shift else sigma * (1 + magnitude) ** sign
        return rng.lognormal(mu, sigma, rows), rng.lognormal(cur_mu, cur_sigma, rows)
    if family == "counts":
        lam = rng.uniform(0.5, 40)
        cur_lam = lam * (1 + magnitude) ** sign
        return rng.poisson(lam, rows).astype(np.int64), rng.poisson(cur_lam, rows).astype(np.int64)
    if family == "bimodal":
        low, gap, scale, weight = (
            rng.uniform(-10, 10),
            rng.uniform(3, 8),
            rng.uniform(0.5, 2),
            rng.uniform(0.2, 0.8),
        )
        cur_weight = float(np.clip(weight + sign * magnitude / 2, 0.05, 0.95)) if not shift else weight
        cur_low = low + sign * magnitude * scale if shift else low

        def draw(at: float, share: float) -> np.ndarray[Any, Any]:
            upper = rng.random(rows) < share
            return rng.normal(np.where(upper, at + gap, at), scale)

        return draw(low, weight), draw(cur_low, cur_weight)
    raise ValueError(f"unknown family {family!r}")


def categorical_column(rng: np.random.Generator, rows: int, magnitude: float) -> tuple[list[str], list[str]]:
    """Reference and current values of one categorical column; drift moves `magnitude` of the mass."""
    count = int(rng.integers(3, 13))
    values = np.array([f"v{index:02d}" for index in range(count)])
    # Mixed with the uniform so no category is so rare that the reference might not hold it.
    shares = 0.8 * rng.dirichlet(np.ones(count)) + 0.2 / count
    elsewhere = rng.dirichlet(np.ones(count))
    moved = min(magnitude, 0.9)
    current_shares = (1 - moved) * shares + moved * elsewhere
    return (
        rng.choice(values, rows, p=shares).tolist(),
        rng.choice(values, rows, p=current_shares / current_shares.sum()).tolist(),
    )


def magnitudes(rng: np.random.Generator, count: int, low: float, high: float) -> np.ndarray[Any, Any]:
    return np.exp(rng.uniform(math.log(low), math.log(high), count))


def write_fleet_model(index: int, seed: int, rows: int, data_dir: Path) -> ModelData:
    """Generate model `index` (its own seeded stream) and write its two frames."""
    rng = np.random.default_rng([seed, index])
    numeric = [f"num_{column:02d}" for column in range(FLEET_NUMERIC)]
    categorical = [f"cat_{column}" for column in range(FLEET_CATEGORICAL)]
    features = numeric + categorical
    injected: dict[str, float] = {}
    if rng.random() < FLEET_DRIFTED_SHARE:
        count = int(rng.choice(FLEET_DRIFTED_FEATURES))
        chosen = rng.choice(features, count, replace=False)
        injected = dict(zip(chosen.tolist(), magnitudes(rng, count, 0.02, 0.6).tolist(), strict=True))
    reference: dict[str, Any] = {}
    current: dict[str, Any] = {}
    for column, name in enumerate(numeric):
        family = NUMERIC_FAMILIES[column % len(NUMERIC_FAMILIES)]
        reference[name], current[name] = numeric_column(rng, family, rows, injected.get(name, 0.0))
    for name in categorical:
        reference[name], current[name] = categorical_column(rng, rows, injected.get(name, 0.0))
    model = ModelData(
        f"model-{index:04d}",
        f"model-{index:04d}-reference.parquet",
        f"model-{index:04d}-current.parquet",
        numeric,
        categorical,
        injected,
    )
    pq.write_table(pa.table(reference), data_dir / model.reference)
    pq.write_table(pa.table(current), data_dir / model.current)
    return model


def write_wide_table(seed: int, rows: int, data_dir: Path) -> ModelData:
    """The wide scenario: 100 numeric columns, 30 of them drifted."""
    rng = np.random.default_rng([seed, 1_000_000])
    numeric = [f"col_{column:03d}" for column in range(WIDE_COLUMNS)]
    chosen = rng.choice(numeric, WIDE_DRIFTED, replace=False)
    injected = dict(zip(chosen.tolist(), magnitudes(rng, WIDE_DRIFTED, 0.005, 0.3).tolist(), strict=True))
    reference: dict[str, Any] = {}
    current: dict[str, Any] = {}
    for column, name in enumerate(numeric):
        family = NUMERIC_FAMILIES[column % len(NUMERIC_FAMILIES)]
        reference[name], current[name] = numeric_column(rng, family, rows, injected.get(name, 0.0))
    model = ModelData("wide", "wide-reference.parquet", "wide-current.parquet", numeric, [], injected)
    pq.write_table(pa.table(reference), data_dir / model.reference)
    pq.write_table(pa.table(current), data_dir / model.current)
    return model


# --- modelfleet -----------------------------------------------------------------------------------


@dataclass
class Loaded:
    """One model's data in the forms our engine takes: the reference table and the current columns."""

    model: ModelData
    reference_table: pa.Table
    numeric: np.ndarray[Any, Any]
    categorical: list[list[str | None]]
    reference: Reference


def load(model: ModelData, data_dir: Path) -> Loaded:
    """Read a model's files (not timed) and build its reference once, as the monitor caches it."""
    reference_table = pq.read_table(data_dir / model.reference)
    current = pq.read_table(data_dir / model.current)
    numeric = np.column_stack(
        [current.column(name).to_numpy().astype(np.float64) for name in model.numeric]
    ).reshape(current.num_rows, len(model.numeric))
    categorical = [current.column(name).to_pylist() for name in model.categorical]
    profile = reference_profile(reference_table, dataset=model.name, version="reference")
    return Loaded(
        model, reference_table, numeric, categorical, reference_from_profile(profile, model.features)
    )


def monitor_path(loaded: Loaded, method: Method) -> list[FeatureResult]:
    """What the monitor does per window: bin the live rows, then check every feature."""
    window = DriftWindow(loaded.reference)
    window.add_columns(loaded.numeric, loaded.categorical)
    results: list[FeatureResult] = window.check(method, DEFAULT_THRESHOLDS[method])
    return results


def end_to_end(loaded: Loaded, method: Method) -> list[FeatureResult]:
    """The reference as well: profile the reference table, build the reference, then the window."""
    profile = reference_profile(loaded.reference_table, dataset=loaded.model.name, version="reference")
    window = DriftWindow(reference_from_profile(profile, loaded.model.features))
    window.add_columns(loaded.numeric, loaded.categorical)
    results: list[FeatureResult] = window.check(method, DEFAULT_THRESHOLDS[method])
    return results


def run_modelfleet(models: Sequence[Loaded], method: Method, repeats: int) -> dict[str, Any]:
    """Median timings of `repeats` passes over the models, per path, and the verdicts of the first."""
    totals: dict[str, list[float]] = {"monitor": [], "end_to_end": []}
    per_model: dict[str, list[list[float]]] = {"monitor": [], "end_to_end": []}
    verdicts: dict[str, Any] = {}
    for repeat in range(repeats):
        for path, run in (("monitor", monitor_path), ("end_to_end", end_to_end)):
            timings = []
            for loaded in models:
                started = time.perf_counter()
                results = run(loaded, method)
                timings.append(time.perf_counter() - started)
                if repeat == 0 and path == "monitor":
                    verdicts[loaded.model.name] = {
                        "features": {r.feature: [r.statistic, bool(r.drifted)] for r in results},
                        "drift_share": drift_share(results),
                        "dataset_drift": drift_share(results) >= DATASET_DRIFT_SHARE,
                    }
                elif repeat == 0:
                    mine = {r.feature: bool(r.drifted) for r in results}
                    if mine != {f: v[1] for f, v in verdicts[loaded.model.name]["features"].items()}:
                        raise RuntimeError(f"{loaded.model.name}: end to end and monitor path disagree")
            totals[path].append(sum(timings))
            per_model[path].append(timings)
    summary: dict[str, Any] = {"models": verdicts}
    for path in totals:
        summary[f"{path}_total_seconds"] = statistics.median(totals[path])
        # Per model: the median over models of each model's median over repeats.
        summary[f"{path}_median_seconds"] = statistics.median(
            statistics.median(times) for times in zip(*per_model[path], strict=True)
        )
        summary[f"{path}_totals"] = totals[path]
    return summary


# --- Evidently ------------------------------------------------------------------------------------


def evidently_options(method: Method) -> dict[str, Any]:
    """`DataDriftPreset` arguments that run exactly the tests and thresholds our `check` runs."""
    categorical = categorical_method(method)
    threshold = DEFAULT_THRESHOLDS[method]
    return {
        "num_method": EVIDENTLY_NAMES[method],
        "num_threshold": threshold,
        "cat_method": EVIDENTLY_NAMES[categorical],
        "cat_threshold": threshold if categorical == method else DEFAULT_THRESHOLDS[categorical],
    }


def ensure_evidently_venv() -> Path:
    """The baseline's interpreter; the venv is made on first use (Evidently needs pandas < 3)."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import importlib.metadata as m, evidently, pyarrow; "
        f"assert m.version('evidently') == '{EVIDENTLY_VERSION}'",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {EVIDENTLY_VENV} for the Evidently baseline …", flush=True)
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-p", sys.executable, str(EVIDENTLY_VENV)], check=True)
    pins = [
        f"evidently=={EVIDENTLY_VERSION}",
        "pandas<3",
        f"pyarrow=={importlib.metadata.version('pyarrow')}",
        f"numpy=={importlib.metadata.version('numpy')}",
        f"scipy=={importlib.metadata.version('scipy')}",
    ]
    subprocess.run([*uv, "pip", "install", "-p", str(python), *pins], check=True)
    return python


def run_evidently(
    python: Path, data_dir: Path, methods: Sequence[Method], scenarios: dict[str, list[ModelData]]
) -> dict[str, Any]:
    plan = {
        "data_dir": str(data_dir),
        "methods": {method: evidently_options(method) for method in methods},
        "scenarios": [
            {
                "name": name,
                "models": [
                    {
                        "model": m.name,
                        "reference": m.reference,
                        "current": m.current,
                        "numeric": m.numeric,
                        "categorical": m.categorical,
                    }
                    for m in models
                ],
            }
            for name, models in scenarios.items()
        ],
    }
    (data_dir / "plan.json").write_text(json.dumps(plan))
    out = data_dir / "evidently.json"
    subprocess.run(
        [str(python), str(BASELINE), "--plan", str(data_dir / "plan.json"), "--out", str(out)], check=True
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def estimate_evidently_seconds(models: int, wide_rows: int, methods: int) -> float:
    wide_cells = WIDE_COLUMNS * wide_rows * 2 / 1e6
    return methods * (models * EVIDENTLY_SECONDS_PER_MODEL + wide_cells * EVIDENTLY_SECONDS_PER_MILLION_CELLS)


# --- comparison -----------------------------------------------------------------------------------


def compare(models: Sequence[ModelData], ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Verdict agreement of one scenario and method, overall and by feature kind, and against the truth."""
    same = {"numeric": 0, "categorical": 0}
    compared = {"numeric": 0, "categorical": 0}
    only = {MODELFLEET: 0, EVIDENTLY: 0}
    flagged = {side: {"injected": 0, "clean": 0} for side in (MODELFLEET, EVIDENTLY)}
    injected_total = clean_total = 0
    same_dataset = 0
    for model in models:
        mine, other = ours[model.name], theirs[model.name]
        for kind, names in (("numeric", model.numeric), ("categorical", model.categorical)):
            for name in names:
                a, b = bool(mine["features"][name][1]), bool(other["features"][name][1])
                compared[kind] += 1
                same[kind] += a == b
                if a != b:
                    only[MODELFLEET if a else EVIDENTLY] += 1
                truth = "injected" if name in model.injected else "clean"
                injected_total += truth == "injected"
                clean_total += truth == "clean"
                flagged[MODELFLEET][truth] += a
                flagged[EVIDENTLY][truth] += b
        same_dataset += bool(mine["dataset_drift"]) == bool(other["dataset_drift"])
    features = sum(compared.values())
    return {
        "features_compared": features,
        "identical_feature_verdicts": sum(same.values()) / features,
        "identical_numeric_verdicts": same["numeric"] / compared["numeric"] if compared["numeric"] else None,
        "identical_categorical_verdicts": (
            same["categorical"] / compared["categorical"] if compared["categorical"] else None
        ),
        "drifted_only_by": only,
        "identical_dataset_verdicts": same_dataset / len(models),
        "flagged_share_of_injected": {
            side: counts["injected"] / injected_total if injected_total else None
            for side, counts in flagged.items()
        },
        "flagged_share_of_clean": {
            side: counts["clean"] / clean_total if clean_total else None for side, counts in flagged.items()
        },
    }


def disagreements(
    models: Sequence[ModelData], ours: dict[str, Any], theirs: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every feature verdict the sides disagree on, with both statistics, to look at by hand."""
    found = []
    for model in models:
        for name in model.features:
            mine, other = ours[model.name]["features"][name], theirs[model.name]["features"][name]
            if bool(mine[1]) != bool(other[1]):
                found.append(
                    {
                        "model": model.name,
                        "feature": name,
                        "injected_magnitude": model.injected.get(name),
                        MODELFLEET: mine,
                        EVIDENTLY: other,
                    }
                )
    return found


def ratio(theirs: float, ours: float) -> float:
    return theirs / ours if ours > 0 else math.inf


def summarize(
    scenarios: dict[str, list[ModelData]],
    methods: Sequence[Method],
    ours: dict[str, Any],
    theirs: dict[str, Any],
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, models in scenarios.items():
        for method in methods:
            mine, other = ours[scenario][method], theirs["results"][scenario][method]
            summary.setdefault(scenario, {})[method] = {
                "models": len(models),
                "evidently_total_seconds": other["total_seconds"],
                "evidently_median_seconds": other["median_seconds"],
                "monitor_total_seconds": mine["monitor_total_seconds"],
                "monitor_median_seconds": mine["monitor_median_seconds"],
                "end_to_end_total_seconds": mine["end_to_end_total_seconds"],
                "end_to_end_median_seconds": mine["end_to_end_median_seconds"],
                "speedup_monitor_path": ratio(other["total_seconds"], mine["monitor_total_seconds"]),
                "speedup_end_to_end": ratio(other["total_seconds"], mine["end_to_end_total_seconds"]),
                **compare(models, mine["models"], other["models"]),
                "disagreements": disagreements(models, mine["models"], other["models"]),
            }
    return summary


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def print_tables(summary: dict[str, Any], repeats: int) -> dict[str, bool]:
    for scenario, methods in summary.items():
        first = next(iter(methods.values()))
        print(f"\n{scenario}: {first['models']} model(s); modelfleet: median of {repeats} passes")
        print(
            f"{'method':16}{'Evidently s':>12}{'per model ms':>13}{'mf monitor s':>13}{'per model ms':>13}"
            f"{'speedup':>9}{'mf e2e s':>10}{'speedup':>9}"
        )
        for method, row in methods.items():
            print(
                f"{method:16}{row['evidently_total_seconds']:>12.2f}"
                f"{1e3 * row['evidently_median_seconds']:>13.1f}"
                f"{row['monitor_total_seconds']:>13.4f}{1e3 * row['monitor_median_seconds']:>13.3f}"
                f"{row['speedup_monitor_path']:>8.0f}x{row['end_to_end_total_seconds']:>10.3f}"
                f"{row['speedup_end_to_end']:>8.0f}x"
            )
        print(
            f"{'identical verdicts %':16}{'features':>10}{'numeric':>9}{'categ.':>8}{'dataset':>9}"
            f"{'only mf':>9}{'only Ev':>9}   flagged % of injected / clean (mf, Ev)"
        )
        for method, row in methods.items():
            injected, clean = row["flagged_share_of_injected"], row["flagged_share_of_clean"]
            categorical = f"({categorical_method(method)})" if row["identical_categorical_verdicts"] else ""
            print(
                f"{method:16}{percent(row['identical_feature_verdicts']):>10}"
                f"{percent(row['identical_numeric_verdicts']):>9}"
                f"{percent(row['identical_categorical_verdicts']):>8}"
                f"{percent(row['identical_dataset_verdicts']):>9}"
                f"{row['drifted_only_by'][MODELFLEET]:>9d}{row['drifted_only_by'][EVIDENTLY]:>9d}"
                f"   {percent(injected[MODELFLEET])}/{percent(clean[MODELFLEET])}, "
                f"{percent(injected[EVIDENTLY])}/{percent(clean[EVIDENTLY])} {categorical}"
            )
    goals: dict[str, bool] = {}
    for method, row in summary.get("fleet", {}).items():
        goals[f"{method}: >= {GOAL_SPEEDUP:.0f}x faster (monitor path)"] = (
            row["speedup_monitor_path"] >= GOAL_SPEEDUP
        )
        goals[f"{method}: >= {100 * GOAL_AGREEMENT:.0f} % identical feature verdicts"] = (
            row["identical_feature_verdicts"] >= GOAL_AGREEMENT
        )
    print()
    for goal, met in goals.items():
        print(f"goal (fleet) {goal}: {'MET' if met else 'NOT MET'}")
    return goals


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null, so the result is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 50 models, 50,000-row wide table.")
    parser.add_argument("--models", type=int, help="Models in the fleet scenario (default 1000; quick 50).")
    parser.add_argument(
        "--wide-rows",
        type=int,
        help="Rows of the wide table's reference and current (350,000; quick 50,000).",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=(
            f"Comma-separated, from {', '.join(METHODS)}. Categorical features use chi_square under ks "
            "and jensen_shannon under wasserstein, as in the monitor."
        ),
    )
    parser.add_argument("--repeats", type=int, default=5, help="Passes of modelfleet's side; medians shown.")
    parser.add_argument("--no-wide", action="store_true", help="Skip the wide-table scenario.")
    parser.add_argument("--seed", type=int, default=5, help="Seed of the synthetic data.")
    parser.add_argument(
        "--data-dir", type=Path, help="Parent of the temporary data directory (default: system temp)."
    )
    args = parser.parse_args()
    args.models = args.models or (50 if args.quick else 1000)
    args.wide_rows = args.wide_rows or (50_000 if args.quick else 350_000)
    methods: list[Method] = []
    for name in (part.strip() for part in args.methods.split(",") if part.strip()):
        if name not in METHODS:
            parser.error(
                f"unknown method {name!r}: choose from {', '.join(METHODS)} "
                "(chi_square is compared as the categorical test of ks)"
            )
        methods.append(name)  # type: ignore[arg-type]

    wide_rows = 0 if args.no_wide else args.wide_rows
    estimate = estimate_evidently_seconds(args.models, wide_rows, len(methods))
    print(
        f"{args.models} models x {FLEET_NUMERIC + FLEET_CATEGORICAL} features x {FLEET_ROWS} rows"
        + ("" if args.no_wide else f", wide table {WIDE_COLUMNS} columns x {wide_rows} rows")
        + f"; methods {', '.join(methods)}\nEvidently is expected to take about {estimate / 60:.0f} min "
        f"({EVIDENTLY_SECONDS_PER_MODEL:g} s per model and method, measured on this 2-core machine)",
        flush=True,
    )
    python = ensure_evidently_venv()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-drift-", dir=args.data_dir) as scratch:
        data_dir = Path(scratch)
        started = time.perf_counter()
        scenarios: dict[str, list[ModelData]] = {
            "fleet": [write_fleet_model(i, args.seed, FLEET_ROWS, data_dir) for i in range(args.models)]
        }
        if not args.no_wide:
            scenarios["wide"] = [write_wide_table(args.seed, wide_rows, data_dir)]
        drifted = sum(bool(m.injected) for m in scenarios["fleet"])
        print(
            f"data written to {data_dir} in {time.perf_counter() - started:.0f}s "
            f"({drifted} of {args.models} fleet models with injected drift)",
            flush=True,
        )

        ours: dict[str, Any] = {}
        for scenario, models in scenarios.items():
            loaded = [load(model, data_dir) for model in models]
            for method in methods:
                ours.setdefault(scenario, {})[method] = run_modelfleet(loaded, method, args.repeats)
                mine = ours[scenario][method]
                print(
                    f"  modelfleet {scenario}/{method}: monitor path {mine['monitor_total_seconds']:.3f}s, "
                    f"end to end {mine['end_to_end_total_seconds']:.3f}s",
                    flush=True,
                )
            del loaded

        started = time.perf_counter()
        theirs = run_evidently(python, data_dir, methods, scenarios)
        print(f"  Evidently {theirs['evidently']} done in {time.perf_counter() - started:.0f}s", flush=True)

    summary = summarize(scenarios, methods, ours, theirs)
    goals = print_tables(summary, args.repeats)
    result = {
        "settings": {
            key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
        },
        "versions": {
            "evidently": theirs["evidently"],
            "numpy": importlib.metadata.version("numpy"),
            "scipy": importlib.metadata.version("scipy"),
            "pyarrow": importlib.metadata.version("pyarrow"),
        },
        "methods": {
            method: {"modelfleet": DEFAULT_THRESHOLDS[method], "evidently": evidently_options(method)}
            for method in methods
        },
        "summary": summary,
        "goals": goals,
        "modelfleet_pass_totals": {
            scenario: {
                method: {path: values[f"{path}_totals"] for path in ("monitor", "end_to_end")}
                for method, values in per_method.items()
            }
            for scenario, per_method in ours.items()
        },
    }
    out = RESULTS / f"drift-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(json_safe(result), indent=2))
    print(f"details: {out}")


if __name__ == "__main__":
    main()
