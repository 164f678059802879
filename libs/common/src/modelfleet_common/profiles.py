"""Reference profiles of dataset versions: the per-column statistics drift is measured against.

Ingest writes one next to every dataset version it stores (`<version>.profile.json`); the monitor
reads it as the reference of every model trained on that version. The JSON layout is shared by
both, so it is defined here once, with its version number.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Layout version of the profile JSON; bump it (and teach the monitor) on any incompatible change.
#: 2 added `drift_bins` to numeric columns (version 1 profiles stay readable).
PROFILE_VERSION: Final = 2
#: Probabilities of the reported quantiles: 0, 0.1, ..., 1.0.
QUANTILE_PROBABILITIES: Final = [round(step / 10, 1) for step in range(11)]
#: Bins of equal reference mass for drift statistics. Each holds 0.5 % of the reference, which
#: bounds how far KS computed at the bin edges can be from KS on the raw values; the monitor keeps
#: counts per bin, so thousands of models x 20 features stay in tens of megabytes.
DRIFT_BINS: Final = 200
#: Most frequent values a categorical column's profile lists; the rest are summed in `other_count`.
MAX_FREQUENCIES: Final = 1000


def reference_profile(table: pa.Table, *, dataset: str, version: str) -> dict[str, Any]:
    """Per-column statistics of a stored version, the reference the monitor compares live data to.

    Numeric (int, float) columns: counts, mean, population std, min, max, deciles and a histogram
    on the deduplicated deciles; string and bool columns: value counts; timestamps: min and max.
    Only finite values enter numeric statistics.
    """
    return {
        "profile_version": PROFILE_VERSION,
        "dataset": dataset,
        "version": version,
        "row_count": table.num_rows,
        "columns": {
            field.name: _profile_column(table.column(index).combine_chunks(), field.type)
            for index, field in enumerate(table.schema)
        },
    }


def _profile_column(array: pa.Array, kind: pa.DataType) -> dict[str, Any]:
    counts = {"count": len(array) - array.null_count, "null_count": array.null_count}
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return {"kind": "numeric", "type": str(kind), **counts, **_numeric_profile(array)}
    if pa.types.is_timestamp(kind):
        extremes = pc.min_max(array)
        return {
            "kind": "timestamp",
            "type": str(kind),
            **counts,
            "min": _isoformat(extremes["min"].as_py()),
            "max": _isoformat(extremes["max"].as_py()),
        }
    if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return {"kind": "categorical", "type": str(kind), **counts, **_frequencies(array)}
    raise ValueError(f"no profile for columns of type {kind}")


def _numeric_profile(array: pa.Array) -> dict[str, Any]:
    values = np.asarray(array.drop_null().cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    # Sorted once: every quantile, histogram and drift bin below is then a lookup or a cut.
    finite = np.sort(values[np.isfinite(values)])
    infinite_count = int(values.size - finite.size)
    if finite.size == 0:
        return {
            "infinite_count": infinite_count,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": {"probabilities": QUANTILE_PROBABILITIES, "values": []},
            "histogram": {"edges": [], "counts": []},
            "drift_bins": {"edges": [], "counts": [], "means": []},
        }
    quantiles = np.quantile(finite, QUANTILE_PROBABILITIES)
    # Deciles of a skewed or discrete column repeat; repeated edges would make empty, zero-width bins.
    edges = np.unique(quantiles)
    if edges.size == 1:
        edges = np.repeat(edges, 2)  # a constant column: one bin [v, v] holding every value
    bin_counts, _ = np.histogram(finite, bins=edges)
    return {
        "infinite_count": infinite_count,
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite[0]),
        "max": float(finite[-1]),
        "quantiles": {"probabilities": QUANTILE_PROBABILITIES, "values": quantiles.tolist()},
        "histogram": {"edges": edges.tolist(), "counts": bin_counts.tolist()},
        "drift_bins": drift_bins(finite),
    }


def drift_bins(finite: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, list[float] | list[int]]:
    """Up to `DRIFT_BINS` bins of about equal mass, right-closed: (-inf, e0], (e0, e1], ... (ek, inf).

    `edges` are the cut points, `counts` the values per bin and `means` their mean, from which the
    monitor computes PSI, KS, Jensen-Shannon and Wasserstein without the raw values. A value
    repeated over many quantiles (discrete columns) gets a bin of its own.
    """
    ordered = np.sort(finite)  # already sorted when called from a profile: then almost free
    # Quantiles that are data values (the inverted CDF), so a discrete column gets no empty bins
    # between its values: the value at rank ceil(n * p).
    ranks = np.ceil(ordered.size * np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]).astype(np.int64) - 1
    edges = np.unique(ordered[np.clip(ranks, 0, ordered.size - 1)])
    edges = edges[edges < ordered[-1]]  # the last bin must hold the maximum, not be empty above it
    # Right-closed bins: a bin ends after the last value equal to its edge.
    bounds = np.concatenate(([0], np.searchsorted(ordered, edges, side="right"), [ordered.size]))
    running = np.concatenate(([0.0], np.cumsum(ordered)))
    counts = np.diff(bounds)
    sums = np.diff(running[bounds])
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "means": means.tolist()}


def _frequencies(array: pa.Array) -> dict[str, Any]:
    present = array.drop_null()
    if pa.types.is_boolean(array.type):
        present = present.cast(pa.string())  # JSON keys: "true" / "false"
    counted = pc.value_counts(present)
    values = np.asarray(counted.field("values").to_numpy(zero_copy_only=False), dtype=object)
    counts = np.asarray(counted.field("counts"), dtype=np.int64)
    # Most frequent first, ties by value, so the same data always writes the same JSON.
    order = np.lexsort((values.astype(str), -counts))
    kept = order[:MAX_FREQUENCIES]
    return {
        "distinct_count": int(values.size),
        "frequencies": dict(zip(values[kept].tolist(), counts[kept].tolist(), strict=True)),
        "other_count": int(counts[order[MAX_FREQUENCIES:]].sum()),
    }


def _isoformat(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())
