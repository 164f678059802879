"""Count-based windows per model version: input drift, prediction drift and decay. Pure, no I/O.

Each version served as champion or challenger gets a `VersionWatch`. Its input rows go into a
`DriftWindow` against the reference of the dataset version it was trained on; when the window
holds `window_size` rows it is checked, and a new one starts once the verdict was published.
Its predictions are compared with its own first `window_size` predictions (the model's behaviour
when it went live). Its labelled predictions are scored, and every `window_size` labels the live
metric is held against the value measured at evaluation time. Each check returns a finding; the
caller publishes it, then closes the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from modelfleet_common.profiles import drift_bins
from modelfleet_common.telemetry import Evidence
from modelfleet_contracts.specs import MonitoringPolicy

from .drift import (
    DEFAULT_THRESHOLDS,
    PREDICTION,
    CategoricalReference,
    DriftWindow,
    FeatureResult,
    Method,
    NumericReference,
    Reference,
    drift_share,
)
from .health import LiveTask

#: Used when neither the spec nor its risk class sets them.
DEFAULT_METHOD: Method = "psi"
DEFAULT_WINDOW = 1000
DEFAULT_DRIFT_SHARE = 0.5
#: One-sided 95 % normal quantile: how far below its bound a window's live metric must be.
DECAY_CONFIDENCE_Z = 1.645


@dataclass(frozen=True)
class DriftFinding:
    """One checked window of a version's inputs (and predictions)."""

    model: str
    version: str
    dataset_version: str
    window_start: datetime
    window_end: datetime
    rows: int
    features: list[FeatureResult]
    prediction: FeatureResult | None
    share: float
    share_threshold: float

    @property
    def drifted(self) -> bool:
        """Enough features drifted, or the predictions did."""
        return self.share >= self.share_threshold or bool(self.prediction and self.prediction.drifted)

    def summary(self) -> str:
        """The numbers behind the verdict, for logs and retrain requests."""
        drifted = [f for f in self.features if f.drifted]
        parts = [f"{f.feature} {f.method} {f.statistic:.3g} vs {f.threshold:g}" for f in drifted]
        if self.prediction is not None and self.prediction.drifted:
            parts.append(f"predictions {self.prediction.method} {self.prediction.statistic:.3g}")
        share = f"drift share {self.share:.2f} (threshold {self.share_threshold:.2f}) over {self.rows} rows"
        return f"{share}: {', '.join(parts) or 'no feature drifted'}"


@dataclass(frozen=True)
class DecayFinding:
    """One checked window of a version's labelled predictions."""

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    metric: str
    baseline: float
    observed: float
    threshold: float
    labelled: int
    #: Standard error of `observed` (spread of the label scores over the square root of their count).
    standard_error: float = 0.0

    @property
    def decayed(self) -> bool:
        """Below the bound with 95 % confidence: a small window's bad luck does not retrain a model."""
        return self.observed + DECAY_CONFIDENCE_Z * self.standard_error < self.threshold


def drift_settings(policy: MonitoringPolicy) -> tuple[Method, float, int, float]:
    """Method, threshold, window size and share threshold of a monitoring policy, with defaults."""
    method: Method = policy.drift_method or DEFAULT_METHOD
    threshold = policy.drift_threshold if policy.drift_threshold is not None else DEFAULT_THRESHOLDS[method]
    return (
        method,
        threshold,
        policy.window_size or DEFAULT_WINDOW,
        policy.drift_share if policy.drift_share is not None else DEFAULT_DRIFT_SHARE,
    )


def decay_threshold(baseline: float, max_drop: float) -> float:
    """Lowest live value still acceptable: `max_drop` of the baseline's size below it.

    Live metrics are higher-is-better (accuracy, negated MAE), so this works for both.
    """
    return baseline - abs(baseline) * max_drop


@dataclass
class VersionWatch:
    """Windows of one model version.

    Adding rows or labels only counts them; a window that is full is *due*. Its finding is computed
    by `drift_finding` / `decay_finding` without closing it, and only `close_drift_window` /
    `close_label_window` start the next one: the caller closes a window after its verdict was
    published, so a failed publish leaves the window to be judged (and published) again.
    """

    model: str
    version: str
    live_task: LiveTask
    reference: Reference | None = None
    window: DriftWindow | None = None
    window_start: datetime | None = None
    #: Predictions until the version's first window is full; then its prediction reference.
    first_predictions: list[Any] = field(default_factory=list)
    prediction_window: DriftWindow | None = None
    labelled: int = 0
    score_sum: float = 0.0
    score_squares: float = 0.0
    labels_since: datetime | None = None
    #: Counts of the input window as checkpointed (`snapshots`), waiting for the reference to be
    #: known again after a restart or a move: `use_reference` takes them back if they fit it.
    restored_window: Mapping[str, Any] | None = None
    #: The request spans (`traceparent`s) of the open input window's rows, the newest kept: what
    #: its `DriftDetected` links to.
    evidence: Evidence = field(default_factory=Evidence)

    def use_reference(self, reference: Reference) -> None:
        """Compare inputs with `reference` from now on (a fresh window, or the restored one)."""
        self.reference = reference
        self.window = DriftWindow(reference)
        restored, self.restored_window = self.restored_window, None
        if (
            restored is not None
            and restored.get("dataset_version") == reference.dataset_version
            and list(restored.get("features", ())) == list(reference.features)
        ):
            self.window.restore(restored["rows"], restored["counts"])

    @property
    def rows(self) -> int:
        """Rows in the open input window (0 before the reference is known)."""
        return self.window.rows if self.window is not None else 0

    def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any],
        policy: MonitoringPolicy,
        now: datetime,
        traceparents: Sequence[str | None] = (),
    ) -> None:
        """Count a batch of inputs and their predictions (and remember the requests' spans)."""
        _method, _threshold, size, _share = drift_settings(policy)
        if self.window_start is None:
            self.window_start = now
        self.evidence.extend(traceparents)
        if self.window is not None:
            self.window.add_rows(rows)
        self._add_predictions(predictions, size)

    def drift_due(self, policy: MonitoringPolicy) -> bool:
        """Whether the input window holds `window_size` rows: its verdict is owed."""
        return self.window is not None and self.window.rows >= drift_settings(policy)[2]

    def drift_finding(self, policy: MonitoringPolicy, now: datetime) -> DriftFinding | None:
        """The verdict of a due input window (and of the predictions since); the window stays open."""
        if self.window is None or not self.drift_due(policy):
            return None
        method, threshold, _size, share_threshold = drift_settings(policy)
        features = self.window.check(method, threshold)
        prediction = self._check_predictions(method, threshold)
        return DriftFinding(
            model=self.model,
            version=self.version,
            dataset_version=self.reference.dataset_version if self.reference else "",
            window_start=self.window_start or now,
            window_end=now,
            rows=self.window.rows,
            features=features,
            prediction=prediction,
            share=drift_share(features),
            share_threshold=share_threshold,
        )

    def close_drift_window(self, now: datetime) -> None:
        """Start the next input and prediction windows (after the verdict was published)."""
        if self.window is not None:
            self.window = DriftWindow(self.window.reference)
        if self.prediction_window is not None:
            self.prediction_window = DriftWindow(self.prediction_window.reference)
        self.window_start = now
        self.evidence = Evidence()

    def add_scores(self, scores: Sequence[float], now: datetime) -> None:
        """Count label scores (1/0 or -|error|)."""
        if self.labels_since is None:
            self.labels_since = now
        self.labelled += len(scores)
        self.score_sum += float(sum(scores))
        self.score_squares += float(sum(score * score for score in scores))

    def decay_due(self, policy: MonitoringPolicy) -> bool:
        """Whether `window_size` labels were scored since the last label window closed."""
        return self.labelled >= (policy.window_size or DEFAULT_WINDOW)

    def decay_finding(
        self, baseline: float | None, policy: MonitoringPolicy, now: datetime
    ) -> DecayFinding | None:
        """The verdict of a due label window against the version's evaluation-time value of its
        live metric; None when it is not due or cannot be judged (no baseline, no allowed drop)."""
        if not self.decay_due(policy) or baseline is None or policy.max_performance_drop is None:
            return None
        observed, labelled = self.score_sum / self.labelled, self.labelled
        spread = math.sqrt(max(self.score_squares / labelled - observed * observed, 0.0))
        return DecayFinding(
            model=self.model,
            version=self.version,
            window_start=self.labels_since or now,
            window_end=now,
            metric="accuracy" if self.live_task == "classification" else "neg_mae",
            baseline=baseline,
            observed=observed,
            threshold=decay_threshold(baseline, policy.max_performance_drop),
            labelled=labelled,
            standard_error=spread / math.sqrt(labelled),
        )

    def close_label_window(self, now: datetime) -> None:
        """Start the next label window (after its verdict, if any, was published)."""
        self.labelled, self.score_sum, self.score_squares, self.labels_since = 0, 0.0, 0.0, now

    def _add_predictions(self, predictions: Sequence[Any], size: int) -> None:
        kept = [p for p in predictions if p is not None]
        if self.prediction_window is not None:
            if self.live_task == "classification":
                self.prediction_window.add_columns(np.empty((len(kept), 0)), [[_label(p) for p in kept]])
            else:
                self.prediction_window.add_columns(np.array([_value(p) for p in kept]).reshape(-1, 1))
            return
        self.first_predictions.extend(kept)
        if len(self.first_predictions) >= size:
            self.prediction_window = DriftWindow(
                _prediction_reference(self.first_predictions, self.live_task)
            )
            self.first_predictions = []

    def _check_predictions(self, method: Method, threshold: float) -> FeatureResult | None:
        window = self.prediction_window
        if window is None or window.rows == 0:
            return None
        [result] = window.check(method, threshold)
        return result


def _prediction_reference(predictions: Sequence[Any], task: LiveTask) -> Reference:
    empty_numeric = NumericReference.from_bins({}, {})
    if task == "classification":
        labels = [_label(p) for p in predictions]
        values, counts = np.unique(np.array(labels, dtype=object).astype(str), return_counts=True)
        frequencies = {PREDICTION: dict(zip(values.tolist(), counts.astype(float).tolist(), strict=True))}
        return Reference(empty_numeric, CategoricalReference.from_frequencies(frequencies, {PREDICTION: 0.0}))
    numbers = np.array([_value(p) for p in predictions], dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return Reference(empty_numeric, CategoricalReference.from_frequencies({}, {}))
    return Reference(
        NumericReference.from_bins({PREDICTION: drift_bins(finite)}, {PREDICTION: float(finite.std())}),
        CategoricalReference.from_frequencies({}, {}),
    )


def _label(prediction: Any) -> str:
    if isinstance(prediction, bool):
        return "true" if prediction else "false"
    if isinstance(prediction, float) and prediction.is_integer():
        return str(int(prediction))  # 1 and 1.0 are the same class
    return str(prediction)


def _value(prediction: Any) -> float:
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return float("nan")
    return float(prediction)
