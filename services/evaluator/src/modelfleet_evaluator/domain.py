"""Pure gate math of the evaluator: metrics, the gates a policy resolves to, and their verdicts.

Functions over numpy arrays (and pandas frames for cohorts and noise); no I/O, no models. Every
metric is computed on a batch of row resamples at once (`metric_on_resamples`), so the point
estimate, the bootstrap and the per-cohort values share one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import rankdata

from modelfleet_contracts import GateResult
from modelfleet_contracts.policies import GateDefaults
from modelfleet_contracts.specs import MetricThreshold
from modelfleet_contracts.training import Task

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

#: The metric that decides non-inferiority, fairness and robustness for each task.
PRIMARY_METRIC: dict[Task, str] = {"classification": "roc_auc", "regression": "r2", "forecasting": "smape"}
#: Metrics a threshold may name, per task.
TASK_METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("roc_auc", "accuracy"),
    "regression": ("r2", "rmse", "mae"),
    "forecasting": ("smape", "mae", "rmse"),
}
LOWER_IS_BETTER = frozenset({"rmse", "mae", "smape"})

#: Upper bound of resample cells (resamples x rows) held in memory at once by the bootstrap.
_MAX_CELLS = 2_000_000
#: Unit of the model-size gate.
BYTES_PER_MB = 1024 * 1024


@dataclass(frozen=True)
class Outcomes:
    """A model's predictions on the holdout rows, next to the truth.

    Classification: `truth` and `predicted` are class indices into the model's classes (`-1` for a
    label the model never saw) and `scores` holds one probability column per class. Regression and
    forecasting: `truth` and `predicted` are numbers and `scores` is None.
    """

    truth: NDArray[np.generic]
    predicted: NDArray[np.generic]
    scores: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.truth)

    def subset(self, rows: IndexArray) -> Outcomes:
        """The outcomes of some rows only (e.g. one cohort)."""
        scores = None if self.scores is None else self.scores[rows]
        return Outcomes(truth=self.truth[rows], predicted=self.predicted[rows], scores=scores)


def _nan_where(condition: NDArray[np.bool_], values: FloatArray) -> FloatArray:
    return np.where(condition, values, np.nan)


def _binary_auc(positive: NDArray[np.bool_], scores: FloatArray) -> FloatArray:
    """ROC AUC of each row of resamples via the rank-sum (Mann-Whitney U) identity; ties averaged."""
    ranks = rankdata(scores, axis=1)
    n_positive = positive.sum(axis=1).astype(np.float64)
    n_negative = positive.shape[1] - n_positive
    defined = (n_positive > 0) & (n_negative > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (ranks * positive).sum(axis=1) - n_positive * (n_positive + 1) / 2
        return _nan_where(defined, u / (n_positive * n_negative))


def _roc_auc(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    if outcomes.scores is None or outcomes.scores.shape[1] < 2:
        return np.full(rows.shape[0], np.nan)
    truth = outcomes.truth[rows]
    classes = outcomes.scores.shape[1]
    if classes == 2:
        return _binary_auc(truth == 1, outcomes.scores[:, 1][rows])
    # Macro one-vs-rest over the classes present in each resample.
    per_class = np.stack([_binary_auc(truth == k, outcomes.scores[:, k][rows]) for k in range(classes)])
    present = ~np.isnan(per_class)
    counts = present.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_where(counts > 0, np.where(present, per_class, 0.0).sum(axis=0) / counts)


def _as_float(values: NDArray[np.generic]) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _accuracy(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    return _as_float((outcomes.truth[rows] == outcomes.predicted[rows]).mean(axis=1))


def _r2(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    truth = _as_float(outcomes.truth[rows])
    residual = ((truth - _as_float(outcomes.predicted[rows])) ** 2).sum(axis=1)
    total = ((truth - truth.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nan_where(total > 0, 1.0 - residual / total)


def _rmse(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    error = _as_float(outcomes.truth[rows]) - _as_float(outcomes.predicted[rows])
    return _as_float(np.sqrt((error**2).mean(axis=1)))


def _mae(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    return _as_float(
        np.abs(_as_float(outcomes.truth[rows]) - _as_float(outcomes.predicted[rows])).mean(axis=1)
    )


def _smape(outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    """Symmetric MAPE as a fraction in [0, 2]; a row where truth and prediction are both 0 is exact."""
    truth = _as_float(outcomes.truth[rows])
    predicted = _as_float(outcomes.predicted[rows])
    denominator = np.abs(truth) + np.abs(predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(denominator > 0, 2 * np.abs(truth - predicted) / denominator, 0.0)
    return _as_float(terms.mean(axis=1))


_METRICS = {
    "roc_auc": _roc_auc,
    "accuracy": _accuracy,
    "r2": _r2,
    "rmse": _rmse,
    "mae": _mae,
    "smape": _smape,
}


def metric_on_resamples(name: str, outcomes: Outcomes, rows: IndexArray) -> FloatArray:
    """The metric on each row of `rows` (resamples x row indices); NaN where it is undefined."""
    try:
        compute = _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(_METRICS)}") from None
    return compute(outcomes, rows)


def metric_value(name: str, outcomes: Outcomes) -> float:
    """The metric on all rows; NaN where it is undefined (e.g. AUC of a single class)."""
    if len(outcomes) == 0:
        return math.nan
    return float(metric_on_resamples(name, outcomes, np.arange(len(outcomes))[np.newaxis, :])[0])


@dataclass(frozen=True)
class Gates:
    """The gates one candidate is held to: its effective policy's, for its task."""

    metric_thresholds: tuple[MetricThreshold, ...]
    non_inferiority_margin: float
    confidence: float
    bootstrap_samples: int
    max_latency_p95_ms: float
    max_model_size_mb: float
    max_fairness_gap: float
    min_cohort_rows: int
    min_robustness: float
    noise_scale: float


def gates_for(gates: GateDefaults, task: Task) -> Gates:
    """The gates of one task from a model's effective gates (`modelfleet_common.policies.resolve_policy`:
    its risk class's, overridden by its spec, never below the policy's floors)."""
    return Gates(
        metric_thresholds=tuple(gates.metric_thresholds.get(task, [])),
        non_inferiority_margin=gates.non_inferiority_margin,
        confidence=gates.confidence,
        bootstrap_samples=gates.bootstrap_samples,
        max_latency_p95_ms=gates.max_latency_p95_ms,
        max_model_size_mb=gates.max_model_size_mb,
        max_fairness_gap=gates.max_fairness_gap,
        min_cohort_rows=gates.min_cohort_rows,
        min_robustness=gates.min_robustness,
        noise_scale=gates.noise_scale,
    )


def _number(value: float) -> str:
    return f"{value:.4g}"


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def threshold_gate(
    gate: str,
    value: float | None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    unit: str = "",
) -> GateResult:
    """Whether `value` lies within [minimum, maximum] (either bound optional); undefined fails."""
    threshold = minimum if minimum is not None else maximum
    if not _defined(value):
        return GateResult(gate=gate, passed=False, threshold=threshold, detail="could not be computed")
    assert value is not None  # narrowed by _defined
    problems = []
    if minimum is not None and value < minimum:
        problems.append(f"{_number(value)}{unit} is below the minimum {_number(minimum)}{unit}")
    if maximum is not None and value > maximum:
        problems.append(f"{_number(value)}{unit} is above the maximum {_number(maximum)}{unit}")
    bounds = [f"≥ {_number(minimum)}{unit}"] if minimum is not None else []
    bounds += [f"≤ {_number(maximum)}{unit}"] if maximum is not None else []
    meets = f"meets {' and '.join(bounds)}" if bounds else "(no bound set)"
    detail = "; ".join(problems) or f"{_number(value)}{unit} {meets}"
    return GateResult(gate=gate, passed=not problems, value=value, threshold=threshold, detail=detail)


def metric_gates(task: Task, thresholds: Sequence[MetricThreshold], outcomes: Outcomes) -> list[GateResult]:
    """One `metric:<name>` gate per threshold; a metric the task does not know fails with the list."""
    gates = []
    for bound in thresholds:
        name = f"metric:{bound.metric}"
        if bound.metric not in TASK_METRICS[task]:
            known = ", ".join(TASK_METRICS[task])
            detail = f"{bound.metric!r} is not a {task} metric; use one of: {known}"
            gates.append(GateResult(gate=name, passed=False, detail=detail))
            continue
        gates.append(
            threshold_gate(name, metric_value(bound.metric, outcomes), minimum=bound.min, maximum=bound.max)
        )
    return gates


@dataclass(frozen=True)
class NonInferiority:
    """Paired bootstrap of candidate - champion on the primary metric, oriented so higher is better."""

    metric: str
    candidate: float
    champion: float
    mean_difference: float
    lower_bound: float
    confidence: float
    margin: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.lower_bound) and self.lower_bound >= -self.margin


def bootstrap_non_inferiority(
    task: Task,
    candidate: Outcomes,
    champion: Outcomes,
    *,
    margin: float,
    confidence: float,
    samples: int,
    seed: int,
) -> NonInferiority:
    """Resample the holdout rows `samples` times (same rows for both models) and bound the difference.

    The lower bound is the (1 - confidence) quantile of candidate - champion; for a metric where
    lower is better (smape) the difference is negated, so "higher is better" always holds.
    """
    if len(candidate) != len(champion):
        raise ValueError(f"candidate has {len(candidate)} outcomes, champion {len(champion)}: not paired")
    metric = PRIMARY_METRIC[task]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows_count = len(candidate)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(rows_count, 1))
    differences = []
    for start in range(0, samples, chunk):
        rows = rng.integers(0, rows_count, size=(min(chunk, samples - start), rows_count))
        candidate_values = metric_on_resamples(metric, candidate, rows)
        champion_values = metric_on_resamples(metric, champion, rows)
        differences.append(sign * (candidate_values - champion_values))
    difference = np.concatenate(differences) if differences else np.array([])
    difference = difference[np.isfinite(difference)]
    mean = float(difference.mean()) if difference.size else math.nan
    lower = float(np.quantile(difference, 1 - confidence)) if difference.size else math.nan
    return NonInferiority(
        metric=metric,
        candidate=metric_value(metric, candidate),
        champion=metric_value(metric, champion),
        mean_difference=mean,
        lower_bound=lower,
        confidence=confidence,
        margin=margin,
    )


def non_inferiority_gate(result: NonInferiority, champion_version: str) -> GateResult:
    """The verdict of a bootstrap comparison against champion `champion_version`."""
    if not math.isfinite(result.lower_bound):
        detail = f"{result.metric} is undefined on the bootstrap resamples; cannot compare with the champion"
        return GateResult(gate="non_inferiority", passed=False, threshold=-result.margin, detail=detail)
    orientation = " (sign flipped: lower is better)" if result.metric in LOWER_IS_BETTER else ""
    verdict = "≥" if result.passed else "<"
    detail = (
        f"{result.metric}: candidate {_number(result.candidate)} vs champion v{champion_version} "
        f"{_number(result.champion)}; difference{orientation} mean {result.mean_difference:+.4g}, "
        f"{result.confidence:.0%} lower bound {result.lower_bound:+.4g} {verdict} "
        f"{-result.margin:+.4g} (-margin)"
    )
    return GateResult(
        gate="non_inferiority",
        passed=result.passed,
        value=result.lower_bound,
        threshold=-result.margin,
        detail=detail,
    )


def latency_gate(latencies_ms: Sequence[float], max_p95_ms: float) -> GateResult:
    """p95 of single-row prediction latencies against the bound."""
    if not latencies_ms:
        return GateResult(
            gate="latency_p95", passed=False, threshold=max_p95_ms, detail="no latency measured"
        )
    p95 = float(np.percentile(np.asarray(latencies_ms, dtype=np.float64), 95))
    gate = threshold_gate("latency_p95", p95, maximum=max_p95_ms, unit=" ms")
    return gate.model_copy(update={"detail": f"{gate.detail} (p95 of {len(latencies_ms)} single-row calls)"})


def size_gate(size_bytes: int, max_mb: float) -> GateResult:
    """Size of the model's files, in MB (2^20 bytes), against the bound."""
    return threshold_gate("model_size", size_bytes / BYTES_PER_MB, maximum=max_mb, unit=" MB")


@dataclass(frozen=True)
class CohortMetrics:
    """The primary metric of each large-enough cohort of one cohort column."""

    column: str
    metrics: dict[str, float]
    too_small: list[str] = field(default_factory=list)
    undefined: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float | None:
        """max - min over the cohorts; None with fewer than two cohorts."""
        if len(self.metrics) < 2:
            return None
        return max(self.metrics.values()) - min(self.metrics.values())


def cohort_metrics(
    metric: str, outcomes: Outcomes, cohorts: pd.DataFrame, min_rows: int
) -> list[CohortMetrics]:
    """The metric per cohort of every column of `cohorts` (aligned with the outcomes' rows)."""
    results = []
    for column in cohorts.columns:
        labels = cohorts[column].astype("string").fillna("<missing>")
        metrics: dict[str, float] = {}
        too_small: list[str] = []
        undefined: list[str] = []
        for cohort, rows in sorted(labels.groupby(labels, sort=True).indices.items()):
            if len(rows) < min_rows:
                too_small.append(str(cohort))
                continue
            value = metric_value(metric, outcomes.subset(np.asarray(rows, dtype=np.intp)))
            if math.isfinite(value):
                metrics[str(cohort)] = value
            else:
                undefined.append(str(cohort))
        results.append(CohortMetrics(str(column), metrics, too_small, undefined))
    return results


def fairness_gate(
    metric: str, per_column: Sequence[CohortMetrics], max_gap: float, min_rows: int
) -> GateResult:
    """The largest cohort gap of any column against the bound; passes when nothing is comparable."""
    if not per_column:
        return GateResult(
            gate="fairness_gap", passed=True, threshold=max_gap, detail="the spec names no cohort columns"
        )
    comparable = [c for c in per_column if c.gap is not None]
    if not comparable:
        columns = ", ".join(c.column for c in per_column)
        detail = f"no cohort column ({columns}) has two cohorts with ≥ {min_rows} rows and a defined {metric}"
        return GateResult(gate="fairness_gap", passed=True, threshold=max_gap, detail=detail)
    worst = max(comparable, key=lambda c: c.gap or 0.0)
    gap = worst.gap or 0.0
    best_cohort = max(worst.metrics, key=worst.metrics.__getitem__)
    worst_cohort = min(worst.metrics, key=worst.metrics.__getitem__)
    verdict = "≤" if gap <= max_gap else ">"
    detail = (
        f"{metric} gap {gap:.4g} {verdict} {max_gap:.4g} in `{worst.column}`: "
        f"{best_cohort}={worst.metrics[best_cohort]:.4g}, {worst_cohort}={worst.metrics[worst_cohort]:.4g}"
    )
    skipped = [c for col in per_column for c in col.too_small]
    if skipped:
        detail += f"; {len(skipped)} cohort(s) under {min_rows} rows left out"
    return GateResult(gate="fairness_gap", passed=gap <= max_gap, value=gap, threshold=max_gap, detail=detail)


def with_gaussian_noise(features: pd.DataFrame, scale: float, rng: np.random.Generator) -> pd.DataFrame:
    """A copy with N(0, (scale x column std)^2) noise on every numeric, non-boolean column."""
    noisy = features.copy()
    for column in features.columns:
        series = features[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        spread = float(np.nanstd(values)) if np.isfinite(values).any() else 0.0
        if spread > 0:
            noisy[column] = values + rng.normal(0.0, scale * spread, size=len(values))
    return noisy


def robustness_ratio(metric: str, clean: float, noisy: float) -> float | None:
    """Share of the clean metric kept under noise, in [0, 1]; None when the ratio means nothing."""
    if not (math.isfinite(clean) and math.isfinite(noisy)):
        return None
    if metric in LOWER_IS_BETTER:
        ratio = 1.0 if noisy <= 0 else clean / noisy
    else:
        if clean <= 0:
            return None
        ratio = noisy / clean
    return min(1.0, max(0.0, ratio))


def robustness_gate(
    metric: str, clean: float, noisy: float, noise_scale: float, minimum: float
) -> GateResult:
    """The robustness ratio against the bound, with both metric values in the detail."""
    ratio = robustness_ratio(metric, clean, noisy)
    context = f"{metric} clean {clean:.4g}, with noise of {noise_scale:g} std {noisy:.4g}"
    if ratio is None:
        detail = f"{context}: ratio undefined (needs a finite, positive clean metric)"
        return GateResult(gate="robustness", passed=False, threshold=minimum, detail=detail)
    passed = ratio >= minimum
    detail = f"{context}: kept {ratio:.1%} {'≥' if passed else '<'} {minimum:.0%}"
    return GateResult(gate="robustness", passed=passed, value=ratio, threshold=minimum, detail=detail)


def higher_is_better(gate: GateResult) -> bool:
    """Direction of a gate's value: for the report's headroom chart."""
    if gate.gate.startswith("metric:"):
        return gate.gate.removeprefix("metric:") not in LOWER_IS_BETTER
    return gate.gate in {"non_inferiority", "robustness"}


def headroom(gate: GateResult) -> float | None:
    """How far a gate's value is on the passing side of its threshold, as a share of it, in [-1, 1]."""
    if gate.value is None or gate.threshold is None or not math.isfinite(gate.value):
        return None
    distance = gate.value - gate.threshold if higher_is_better(gate) else gate.threshold - gate.value
    return max(-1.0, min(1.0, distance / max(abs(gate.threshold), 1e-3)))


def verdict_summary(gates: Sequence[GateResult]) -> str:
    """One sentence: passed, or which gates failed."""
    failed = [g.gate for g in gates if not g.passed]
    if not failed:
        return f"every gate passed ({len(gates)})"
    return f"{len(failed)} of {len(gates)} gates failed: {', '.join(failed)}"


def gate_metrics(gates: Sequence[GateResult]) -> Mapping[str, float]:
    """`eval.<gate>` metric values (`:` becomes `.`, as not every MLflow client accepts it)."""
    return {
        f"eval.{gate.gate.replace(':', '.')}": float(gate.value)
        for gate in gates
        if gate.value is not None and math.isfinite(gate.value)
    }
