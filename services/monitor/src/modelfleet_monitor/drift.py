"""The drift engine: live feature distributions against a reference profile. Pure numpy, no I/O.

A model version's reference is the profile ingest wrote for the dataset version it was trained on
(`drift_bins` of numeric columns: equal-mass, right-closed bins with counts and means; value
counts of categorical ones). A `DriftWindow` keeps only counts (and sums) per bin, so adding a
batch is one `searchsorted` per feature plus one `bincount`, memory is fixed per model whatever
the window size, and every statistic is computed for all features of a model at once on padded
`(features, bins)` arrays:

- `psi` and `jensen_shannon`: on the fine bins merged into `COARSE_BINS` groups of equal
  reference mass (finer groups make both statistics noisy on a window of a thousand rows);
- `ks`: the largest gap between the two cumulative distributions at the bin edges, and its
  p-value (asymptotic two-sample distribution, as `scipy.stats.ks_2samp` uses for large samples);
- `wasserstein`: the earth mover's distance between the bins' masses placed at their means,
  divided by the reference's standard deviation (so one threshold fits every feature's scale);
- `chi_square`: Pearson's test of the window's counts against the reference shares (p-value).

Categorical features use `chi_square` when the numeric method is a test (`ks`), `jensen_shannon`
when it is `wasserstein`, and the method itself otherwise. Distances drift when they reach the
threshold; tests drift when their p-value falls below it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Method = Literal["psi", "ks", "jensen_shannon", "wasserstein", "chi_square"]

#: Methods whose statistic is a p-value: drift when it is *below* the threshold.
P_VALUE_METHODS: Final = frozenset({"ks", "chi_square"})
#: Groups the fine bins are merged into for PSI and Jensen-Shannon (deciles of the reference).
COARSE_BINS: Final = 10
#: Share given to an empty bin in PSI and Jensen-Shannon, so a log or ratio is never of zero.
EMPTY_SHARE: Final = 1e-4
#: p-values of the limit distribution within which KS recomputes the finite-sample p-value.
KS_EXACT_BETWEEN: Final = (1e-4, 0.5)
#: Smallest reference standard deviation the Wasserstein distance is divided by.
MIN_STD: Final = 1e-3
#: The default threshold of each method (PSI 0.2 "significant shift"; tests at 5 %).
DEFAULT_THRESHOLDS: Final[Mapping[str, float]] = {
    "psi": 0.2,
    "ks": 0.05,
    "jensen_shannon": 0.1,
    "wasserstein": 0.1,
    "chi_square": 0.05,
}
#: Name of the pseudo-feature that stands for a model's predictions.
PREDICTION: Final = "__prediction__"


class ProfileError(ValueError):
    """A reference profile cannot be used for drift (wrong layout, missing feature)."""


def categorical_method(numeric: Method) -> Method:
    """The method categorical features use when numeric ones use `numeric`."""
    if numeric == "ks":
        return "chi_square"
    if numeric == "wasserstein":
        return "jensen_shannon"
    return numeric


def is_drifted(method: str, statistic: float, threshold: float) -> bool:
    """The verdict: a p-value below its threshold, or a distance at or above it."""
    if method in P_VALUE_METHODS:
        return statistic < threshold
    return statistic >= threshold


@dataclass(frozen=True)
class FeatureResult:
    """The drift of one feature in one window."""

    feature: str
    method: Method
    statistic: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class NumericReference:
    """Reference bins of a model's numeric features, padded to one `(features, bins)` shape.

    `edges[f]` holds the cut points of feature f (padded with +inf, so padding bins stay empty),
    `counts[f]`/`means[f]` the reference rows and their mean per bin.
    """

    names: tuple[str, ...]
    edges: FloatArray
    edge_counts: IntArray
    counts: FloatArray
    means: FloatArray
    std: FloatArray
    groups: IntArray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", _coarse_groups(self.counts))

    @property
    def bins(self) -> int:
        return int(self.counts.shape[1]) if self.counts.ndim == 2 else 0

    @classmethod
    def from_bins(
        cls, features: Mapping[str, Mapping[str, Any]], std: Mapping[str, float]
    ) -> NumericReference:
        """From `{feature: {"edges", "counts", "means"}}`: the profile's `drift_bins`."""
        names = tuple(features)
        width = max((len(features[name]["counts"]) for name in names), default=0)
        edges = np.full((len(names), max(width - 1, 0)), np.inf)
        counts = np.zeros((len(names), width))
        means = np.zeros((len(names), width))
        edge_counts = np.zeros(len(names), dtype=np.int64)
        for row, name in enumerate(names):
            bins = features[name]
            cut, mass, centre = (
                np.asarray(bins[key], dtype=np.float64) for key in ("edges", "counts", "means")
            )
            if mass.size != cut.size + 1 or centre.size != mass.size or mass.size == 0:
                raise ProfileError(
                    f"drift bins of {name!r} are inconsistent: {cut.size} edges, {mass.size} counts"
                )
            edges[row, : cut.size] = cut
            edge_counts[row] = cut.size
            counts[row, : mass.size] = mass
            means[row, : centre.size] = centre
            # Padding bins are empty; put them at the last mean so sorting by position keeps order.
            means[row, mass.size :] = centre[-1]
        spread = np.array([max(float(std[name] or 0.0), MIN_STD) for name in names], dtype=np.float64)
        return cls(names, edges, edge_counts, counts, means, spread)


@dataclass(frozen=True)
class CategoricalReference:
    """Reference value counts of a model's categorical features; the last column counts the values no
    reference category holds."""

    names: tuple[str, ...]
    categories: tuple[dict[str, int], ...]
    counts: FloatArray

    @classmethod
    def from_frequencies(
        cls, features: Mapping[str, Mapping[str, float]], other: Mapping[str, float]
    ) -> CategoricalReference:
        """From `{feature: {value: count}}` plus each feature's count of values not listed."""
        names = tuple(features)
        categories = tuple(
            {str(value): index for index, value in enumerate(features[name])} for name in names
        )
        width = max((len(c) for c in categories), default=0) + 1
        counts = np.zeros((len(names), width))
        for row, name in enumerate(names):
            values = list(features[name].values())
            counts[row, : len(values)] = values
            counts[row, -1] = other.get(name, 0.0)
        return cls(names, categories, counts)


@dataclass(frozen=True)
class Reference:
    """Everything a model version's inputs are compared with."""

    numeric: NumericReference
    categorical: CategoricalReference
    dataset_version: str = ""

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric.names + self.categorical.names


def reference_from_profile(profile: Mapping[str, Any], features: Sequence[str]) -> Reference:
    """The reference of `features` in one of ingest's dataset profiles (layout version 2).

    Timestamp columns are not compared. Raises `ProfileError` naming what is missing.
    """
    if int(profile.get("profile_version", 0)) < 2:
        raise ProfileError(
            f"profile of {profile.get('dataset')}@{str(profile.get('version'))[:12]} has layout "
            f"{profile.get('profile_version')}, without drift bins: ingest the data again to profile it"
        )
    columns: Mapping[str, Mapping[str, Any]] = profile["columns"]
    numeric: dict[str, Mapping[str, Any]] = {}
    std: dict[str, float] = {}
    frequencies: dict[str, Mapping[str, float]] = {}
    other: dict[str, float] = {}
    for name in features:
        column = columns.get(name)
        if column is None:
            raise ProfileError(
                f"feature {name!r} is not a column of dataset version {profile.get('version')}"
            )
        if column["kind"] == "numeric":
            if not column["drift_bins"]["counts"]:
                continue  # no finite reference value: nothing to compare with
            numeric[name], std[name] = column["drift_bins"], column["std"]
        elif column["kind"] == "categorical":
            frequencies[name], other[name] = column["frequencies"], column["other_count"]
    return Reference(
        NumericReference.from_bins(numeric, std),
        CategoricalReference.from_frequencies(frequencies, other),
        dataset_version=str(profile.get("version", "")),
    )


class DriftWindow:
    """The live rows of one model version since the last check, as bin counts: O(features x bins)."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        numeric, categorical = reference.numeric, reference.categorical
        self.rows = 0
        self._counts = np.zeros_like(numeric.counts)
        self._sums = np.zeros_like(numeric.counts)
        self._categorical = np.zeros_like(categorical.counts)

    def add_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add input rows as dicts (the prediction log's `features`); missing values are skipped."""
        numeric = self.reference.numeric.names
        values = np.array(
            [[_number(row.get(name)) for name in numeric] for row in rows], dtype=np.float64
        ).reshape(len(rows), len(numeric))
        categories = [[_category(row.get(name)) for row in rows] for name in self.reference.categorical.names]
        self.add_columns(values, categories)

    def add_columns(self, numeric: FloatArray, categorical: Sequence[Sequence[str | None]] = ()) -> None:
        """Add rows as a `(rows, numeric features)` matrix (NaN = missing; `(rows, 0)` when the model
        has no numeric feature) and one value list per categorical feature, in the reference's order."""
        reference = self.reference.numeric
        for column in range(len(reference.names) if numeric.size else 0):
            # Sorting the batch's values once, then cutting them at the edges, counts and sums every
            # bin with a few hundred binary searches instead of one per value: about ten times
            # faster on large batches than binning each value.
            ordered = np.sort(numeric[:, column])
            # NaN sorts last, beyond +inf: keep the finite values only.
            ordered = ordered[
                np.searchsorted(ordered, -np.inf, side="right") : np.searchsorted(ordered, np.inf)
            ]
            cut = reference.edges[column, : reference.edge_counts[column]]
            bounds = np.concatenate(([0], np.searchsorted(ordered, cut, side="right"), [ordered.size]))
            running = np.concatenate(([0.0], np.cumsum(ordered)))
            self._counts[column, : bounds.size - 1] += np.diff(bounds)
            self._sums[column, : bounds.size - 1] += np.diff(running[bounds])
        for column, values in enumerate(categorical):
            index = self.reference.categorical.categories[column]
            other = self._categorical.shape[1] - 1
            codes = np.fromiter(
                (index.get(value, other) for value in values if value is not None), dtype=np.int64
            )
            self._categorical[column] += np.bincount(codes, minlength=self._categorical.shape[1])
        self.rows += int(numeric.shape[0])

    def counts(self) -> dict[str, FloatArray]:
        """What the window holds beyond its reference: bin counts and sums, category counts."""
        return {"counts": self._counts, "sums": self._sums, "categorical": self._categorical}

    def restore(self, rows: int, counts: Mapping[str, FloatArray]) -> bool:
        """Take back counts `counts()` gave (e.g. before a restart); False, and nothing changed,
        when they do not fit this window's reference (another reference, other features)."""
        fits = all(
            key in counts and np.shape(counts[key]) == np.shape(mine) for key, mine in self.counts().items()
        )
        if not fits:
            return False
        self._counts = np.array(counts["counts"], dtype=np.float64)
        self._sums = np.array(counts["sums"], dtype=np.float64)
        self._categorical = np.array(counts["categorical"], dtype=np.float64)
        self.rows = int(rows)
        return True

    def check(self, method: Method, threshold: float | None = None) -> list[FeatureResult]:
        """Every feature's drift against the reference, numeric features first."""
        numeric_threshold = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
        results = _numeric_results(
            self.reference.numeric, self._counts, self._sums, method, numeric_threshold
        )
        categorical = categorical_method(method)
        categorical_threshold = (
            numeric_threshold if categorical == method else DEFAULT_THRESHOLDS[categorical]
        )
        results += _categorical_results(
            self.reference.categorical, self._categorical, categorical, categorical_threshold
        )
        return results


def drift_share(results: Sequence[FeatureResult]) -> float:
    """Share of the compared features that drifted (0 when none was compared)."""
    compared = [result for result in results if not math.isnan(result.statistic)]
    return sum(result.drifted for result in compared) / len(compared) if compared else 0.0


def _numeric_results(
    reference: NumericReference, counts: FloatArray, sums: FloatArray, method: Method, threshold: float
) -> list[FeatureResult]:
    if not reference.names:
        return []
    statistic = numeric_statistic(reference, counts, sums, method)
    return _results(reference.names, statistic, method, threshold)


def _categorical_results(
    reference: CategoricalReference, counts: FloatArray, method: Method, threshold: float
) -> list[FeatureResult]:
    if not reference.names:
        return []
    statistic = categorical_statistic(reference.counts, counts, method)
    return _results(reference.names, statistic, method, threshold)


def _results(
    names: Sequence[str], statistic: FloatArray, method: Method, threshold: float
) -> list[FeatureResult]:
    return [
        FeatureResult(
            name,
            method,
            float(value),
            threshold,
            bool(not math.isnan(value) and is_drifted(method, value, threshold)),
        )
        for name, value in zip(names, statistic, strict=True)
    ]


def numeric_statistic(
    reference: NumericReference, counts: FloatArray, sums: FloatArray, method: Method
) -> FloatArray:
    """`method`'s statistic for every numeric feature at once (NaN where the window is empty)."""
    n_ref = reference.counts.sum(axis=1)
    n_cur = counts.sum(axis=1)
    empty = n_cur == 0
    if method in ("psi", "jensen_shannon", "chi_square"):
        ref = _group(reference.counts, reference.groups)
        cur = _group(counts, reference.groups)
        statistic = categorical_statistic(ref, cur, method)
    elif method == "ks":
        statistic = _ks_p_value(reference.counts, counts)
    elif method == "wasserstein":
        cur_means = np.divide(sums, counts, out=reference.means.copy(), where=counts > 0)
        statistic = _wasserstein(
            reference.means, reference.counts / n_ref[:, None], cur_means, _shares(counts)
        )
        statistic = statistic / reference.std
    else:
        raise ValueError(f"unknown drift method {method!r}")
    statistic = np.asarray(statistic, dtype=np.float64)
    statistic[empty] = np.nan
    return statistic


def categorical_statistic(reference: FloatArray, counts: FloatArray, method: Method) -> FloatArray:
    """`method`'s statistic for rows of counts over the same categories (or bins)."""
    n_cur = counts.sum(axis=1)
    if method == "chi_square":
        statistic = _chi_square_p_value(reference, counts)
    else:
        expected = np.clip(_shares(reference), EMPTY_SHARE, None)
        actual = np.clip(_shares(counts), EMPTY_SHARE, None)
        if method == "psi":
            statistic = ((actual - expected) * np.log(actual / expected)).sum(axis=1)
        elif method == "jensen_shannon":
            statistic = distance.jensenshannon(expected, actual, axis=1)
        elif method == "ks":
            statistic = _ks_p_value(reference, counts)
        elif method == "wasserstein":
            raise ValueError("the Wasserstein distance needs numeric values, not categories")
        else:
            raise ValueError(f"unknown drift method {method!r}")
    statistic = np.asarray(statistic, dtype=np.float64)
    statistic[n_cur == 0] = np.nan
    return statistic


def _shares(counts: FloatArray) -> FloatArray:
    totals = counts.sum(axis=1, keepdims=True)
    shares: FloatArray = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
    return shares


def _coarse_groups(counts: FloatArray) -> IntArray:
    """For each fine bin, the decile of the reference it falls in (by mass before it)."""
    if counts.size == 0:
        return np.zeros(counts.shape, dtype=np.int64)
    before = np.cumsum(_shares(counts), axis=1) - _shares(counts)
    return np.minimum((before * COARSE_BINS + 1e-9).astype(np.int64), COARSE_BINS - 1).astype(np.int64)


def _group(counts: FloatArray, groups: IntArray) -> FloatArray:
    rows = counts.shape[0]
    flat = (groups + np.arange(rows)[:, None] * COARSE_BINS).ravel()
    grouped = np.asarray(
        np.bincount(flat, weights=counts.ravel(), minlength=rows * COARSE_BINS), dtype=np.float64
    )
    return grouped.reshape(rows, COARSE_BINS)


def _ks_p_value(reference: FloatArray, counts: FloatArray) -> FloatArray:
    n_ref = reference.sum(axis=1)
    n_cur = counts.sum(axis=1)
    gap = np.abs(np.cumsum(_shares(reference), axis=1) - np.cumsum(_shares(counts), axis=1)).max(axis=1)
    effective = np.maximum(
        np.divide(n_ref * n_cur, n_ref + n_cur, out=np.ones_like(n_ref), where=n_cur > 0), 1
    )
    # Kolmogorov's limit distribution is fast everywhere; the finite-sample one (`kstwo`, what
    # `scipy.stats.ks_2samp` uses for large samples) is exact but takes up to 0.2 s per feature deep
    # in the tail. So: the limit first, and `kstwo` only where the verdict could depend on it.
    p_value = np.asarray(stats.kstwobign.sf(np.sqrt(effective) * gap), dtype=np.float64)
    near = (p_value > KS_EXACT_BETWEEN[0]) & (p_value < KS_EXACT_BETWEEN[1])
    if near.any():
        p_value[near] = stats.kstwo.sf(gap[near], np.round(effective[near]))
    return p_value


def _chi_square_p_value(reference: FloatArray, counts: FloatArray) -> FloatArray:
    """Pearson's two-sample test of homogeneity per row: are both counts drawn alike?

    The reference is a sample too, so expected counts come from both rows pooled (as
    `scipy.stats.chi2_contingency` does); holding the window to the reference's shares as if they
    were exact flags a large window of unchanged data as drifted far more often than 5 %.
    """
    ref_total = reference.sum(axis=1, keepdims=True)
    cur_total = counts.sum(axis=1, keepdims=True)
    pooled = reference + counts
    total = np.maximum(ref_total + cur_total, 1)
    seen = pooled > 0
    statistic = np.zeros(reference.shape[0])
    for observed, row_total in ((reference, ref_total), (counts, cur_total)):
        expected = pooled * row_total / total
        statistic += np.divide(
            (observed - expected) ** 2, expected, out=np.zeros_like(expected), where=seen
        ).sum(axis=1)
    degrees = np.maximum(seen.sum(axis=1) - 1, 1)
    return np.asarray(stats.chi2.sf(statistic, degrees), dtype=np.float64)


def _wasserstein(
    ref_positions: FloatArray, ref_mass: FloatArray, cur_positions: FloatArray, cur_mass: FloatArray
) -> FloatArray:
    """W1 between two discrete distributions per row: the area between their cumulative curves."""
    positions = np.concatenate([ref_positions, cur_positions], axis=1)
    delta = np.concatenate([ref_mass, -cur_mass], axis=1)
    order = np.argsort(positions, axis=1, kind="stable")
    positions = np.take_along_axis(positions, order, axis=1)
    gap = np.cumsum(np.take_along_axis(delta, order, axis=1), axis=1)[:, :-1]
    return np.asarray((np.abs(gap) * np.diff(positions, axis=1)).sum(axis=1), dtype=np.float64)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def _category(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
