"""The baseline of `benchmarks/drift.py`: the same reference/current Parquet files checked by Evidently.

For every scenario and method in the plan, each model's reference and current frames are read with
pandas (not timed), then `Report([DataDriftPreset(...)], include_tests=True).run(current, reference)`
is timed, `Dataset.from_pandas` with an explicit `DataDefinition` included (the column kinds are
given, so Evidently does not infer them). The per-column verdicts are Evidently's own (the status of
each column's "Value Drift" test), the statistics the `ValueDrift` metric values, and the dataset
verdict its `DriftedColumnsCount` share against `drift_share` (0.5, its default), as its
`DatasetDriftMetric` decides it.

No modelfleet code is imported: it runs in its own virtualenv (`evidently`, `pandas<3`, pyarrow),
created by `benchmarks/drift.py` on first use.

    python evidently_drift.py --plan plan.json --out evidently.json

`plan.json`: `{"data_dir", "methods": {name: {DataDriftPreset keyword arguments}}, "scenarios":
[{"name", "models": [{"model", "reference", "current", "numeric": [...], "categorical": [...]}]}]}`,
file names relative to `data_dir`. Progress and a running estimate of the time left go to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

#: Evidently's default share of drifted columns from which the dataset counts as drifted.
DRIFT_SHARE = 0.5


def run_model(
    preset_options: dict[str, Any], data_dir: Path, model: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """Seconds Evidently takes for one model, and its per-column statistics and verdicts."""
    reference = pd.read_parquet(data_dir / model["reference"])
    current = pd.read_parquet(data_dir / model["current"])
    definition = DataDefinition(
        numerical_columns=list(model["numeric"]), categorical_columns=list(model["categorical"])
    )
    report = Report([DataDriftPreset(drift_share=DRIFT_SHARE, **preset_options)], include_tests=True)
    started = time.perf_counter()
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    return seconds, verdicts(snapshot.dict())


def verdicts(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Per column `[statistic, drifted]` and the dataset's drifted share, from a snapshot's dict."""
    statistics_by_column: dict[str, float] = {}
    share = float("nan")
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            statistics_by_column[config["column"]] = float(metric["value"])
        elif config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    drifted: dict[str, bool] = {}
    for test in snapshot["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            drifted[params["column"]] = test["status"] == "FAIL"
    missing = set(statistics_by_column) ^ set(drifted)
    if missing:
        raise RuntimeError(f"Evidently reported a statistic or a verdict alone for {sorted(missing)}")
    return {
        "features": {name: [statistics_by_column[name], drifted[name]] for name in statistics_by_column},
        "drift_share": share,
        "dataset_drift": share >= DRIFT_SHARE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plan", type=Path, required=True, help="JSON: data dir, methods, scenarios.")
    parser.add_argument("--out", type=Path, required=True, help="Where the results JSON is written.")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    data_dir = Path(plan["data_dir"])
    # Evidently and scipy warn about near-constant inputs and precision; the numbers are what counts.
    warnings.simplefilter("ignore")

    results: dict[str, Any] = {}
    for scenario in plan["scenarios"]:
        for method, options in plan["methods"].items():
            started = time.perf_counter()
            timings: list[float] = []
            models: dict[str, Any] = {}
            total = len(scenario["models"])
            for done, model in enumerate(scenario["models"], start=1):
                seconds, outcome = run_model(options, data_dir, model)
                timings.append(seconds)
                models[model["model"]] = {"seconds": seconds, **outcome}
                if done in (1, 10) or done % 100 == 0 or done == total:
                    left = statistics.median(timings) * (total - done)
                    print(
                        f"  evidently {scenario['name']}/{method}: {done}/{total} models, "
                        f"{time.perf_counter() - started:.0f}s so far, about {left:.0f}s left",
                        file=sys.stderr,
                        flush=True,
                    )
            results.setdefault(scenario["name"], {})[method] = {
                "total_seconds": sum(timings),
                "median_seconds": statistics.median(timings),
                "models": models,
            }
    args.out.write_text(json.dumps({"evidently": _version(), "results": results}))


def _version() -> str:
    import importlib.metadata

    return importlib.metadata.version("evidently")


if __name__ == "__main__":
    main()
