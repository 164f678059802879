"""Live health of model versions: request windows, SLO checks and live metrics. Pure, no I/O.

The monitor keeps one window per (model, version, route) with the traffic received since the last
report: request and error counts and the latencies (as numpy arrays, one per batch). The monitor
does not join labels with predictions: ingest does, durably and however late the label
(`PredictionsLabeled`), and each joined prediction counts in the window of the version and route
that made it, open when the join arrives. A bounded memory of recent request ids and joins per
model makes a redelivered batch or a republished join count once.

Every time is passed in as `now` (seconds or datetimes): nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

import numpy as np
import numpy.typing as npt
from pydantic import JsonValue

from modelfleet_common.telemetry import Evidence
from modelfleet_contracts.serving import LabeledPrediction, PredictionRecord, Route
from modelfleet_contracts.specs import MonitoringPolicy

#: What a live metric is computed as: exact match of labels, or distance of numbers.
LiveTask = Literal["classification", "regression"]

#: Live metrics are "higher is better" (the deployer holds a challenger to the champion that way),
#: so regression reports the negated mean absolute error, as scikit-learn's scorers do.
LIVE_METRIC: dict[LiveTask, str] = {"classification": "accuracy", "regression": "neg_mae"}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, order=True)
class WindowKey:
    """Whose window: one model version on one route."""

    model: str
    version: str
    route: Route


@dataclass(frozen=True)
class HealthSummary:
    """The health of one version on one route over one reporting window."""

    key: WindowKey
    window_start: datetime
    window_end: datetime
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    labelled: int
    live_metric: str | None
    live_metric_value: float | None
    #: Sum of the latencies (the compute the window cost) and of the label scores.
    latency_sum_ms: float = 0.0
    live_score_sum: float = 0.0
    live_metric_std: float | None = None

    @property
    def error_rate(self) -> float:
        """Share of failed predictions (0 for a window without requests)."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class LabelScore:
    """How one version's prediction scored against its label (1/0, or -|error|)."""

    version: str
    route: Route
    score: float


@dataclass(frozen=True)
class SloViolation:
    """One SLO a window broke, with the objective and the observed value."""

    slo: Literal["error_rate", "latency_p99_ms"]
    objective: float
    observed: float


@dataclass
class _Window:
    #: Start of the reporting window this traffic belongs to (the report before it, or the start).
    start: datetime
    requests: int = 0
    errors: int = 0
    latency_batches: list[FloatArray] = field(default_factory=list)
    # Dedupe within the window even when the memory of recent requests already forgot one.
    request_ids: set[str] = field(default_factory=set)
    labelled: int = 0
    live_task: LiveTask | None = None
    # Sum of per-label scores: 1/0 for a correct/wrong class, -|error| for a number; and of squares.
    live_score_sum: float = 0.0
    live_score_squares: float = 0.0
    #: The request spans (`traceparent`s) of the window's predictions, the newest kept: what its
    #: `ModelHealthReported` links to.
    evidence: Evidence = field(default_factory=Evidence)


@dataclass(frozen=True)
class Drained:
    """A window taken out for its report: `HealthTracker.restore` puts it back if the report
    could not be published, so its traffic counts in the next one."""

    summary: HealthSummary
    window: _Window


class HealthTracker:
    """Windows of every model version, and what was recently counted, to count it once.

    Memory is bounded: per model at most `dedupe_per_model` recent (request, version) pairs of
    predictions and as many joins (`PredictionsLabeled` event ids) are remembered, the oldest
    forgotten first. Windows hold only the traffic since the last `drain`.
    """

    def __init__(self, *, dedupe_per_model: int, started_at: datetime) -> None:
        if dedupe_per_model < 1:
            raise ValueError(f"dedupe_per_model must be at least 1, got {dedupe_per_model}")
        self.dedupe_per_model = dedupe_per_model
        self._window_start = started_at
        self._windows: dict[WindowKey, _Window] = {}
        self._predicted: dict[str, _Recent] = {}
        self._joined: dict[str, _Recent] = {}

    def add_predictions(
        self, model: str, records: Sequence[PredictionRecord], *, now: float
    ) -> list[PredictionRecord]:
        """Count a batch of `model`'s predictions; returns those that were new (not redelivered).

        O(len(records)): duplicates are found by request id and version in the window and the
        memory of recent predictions, then counts and latencies are added per window with numpy.
        """
        recent = self._predicted.setdefault(model, _Recent(self.dedupe_per_model))
        fresh: list[PredictionRecord] = []
        for record in records:
            key = WindowKey(model, record.version, record.route)
            window = self._windows.get(key)
            if (window is not None and record.request_id in window.request_ids) or not recent.add(
                (record.request_id, record.version)
            ):
                continue
            window = self._window(key)
            window.request_ids.add(record.request_id)
            window.evidence.add(record.traceparent)
            fresh.append(record)
        if fresh:
            self._count(model, fresh)
        return fresh

    def add_labeled(
        self, model: str, join: UUID, labeled: Sequence[LabeledPrediction], task: LiveTask
    ) -> list[LabelScore]:
        """Score each joined prediction against its label in the window of the version and route
        that made it; returns the scores. A join already counted (same event id) scores nothing,
        nor does a regression label or prediction that is not a number.
        """
        if not self._joined.setdefault(model, _Recent(self.dedupe_per_model)).add(join):
            return []
        scored: list[LabelScore] = []
        for entry in labeled:
            score = label_score(entry.prediction, entry.label, task)
            if score is None:
                continue
            window = self._window(WindowKey(model, entry.version, entry.route))
            if window.live_task not in (None, task):
                # The model's task changed with its spec; start its live metric afresh.
                window.labelled, window.live_score_sum, window.live_score_squares = 0, 0.0, 0.0
            window.live_task = task
            window.labelled += 1
            window.live_score_sum += score
            window.live_score_squares += score * score
            scored.append(LabelScore(entry.version, entry.route, score))
        return scored

    def _window(self, key: WindowKey) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(start=self._window_start)
        return window

    def _count(self, model: str, records: Sequence[PredictionRecord]) -> None:
        keys = [WindowKey(model, record.version, record.route) for record in records]
        distinct = sorted(set(keys))
        position = {key: index for index, key in enumerate(distinct)}
        group = np.fromiter((position[key] for key in keys), dtype=np.int64, count=len(keys))
        latencies = np.fromiter(
            (record.latency_ms for record in records), dtype=np.float64, count=len(records)
        )
        failed = np.fromiter((record.error is not None for record in records), dtype=bool, count=len(records))
        requests = np.bincount(group, minlength=len(distinct))
        errors = np.bincount(group, weights=failed, minlength=len(distinct))
        for index, key in enumerate(distinct):
            window = self._windows[key]
            window.requests += int(requests[index])
            window.errors += int(errors[index])
            window.latency_batches.append(latencies[group == index])

    def drain(self, now: datetime) -> list[HealthSummary]:
        """Summaries of every window that saw requests since the last drain, which it closes.

        Windows with labels but no requests stay open (their labels count once traffic comes).
        """
        return [drained.summary for drained in self.take(now)]

    def take(self, now: datetime) -> list[Drained]:
        """Like `drain`, keeping each window so that `restore` can put it back."""
        taken: list[Drained] = []
        for key in sorted(self._windows):
            window = self._windows[key]
            if window.requests == 0:
                continue
            taken.append(Drained(summarize(key, window, window.start, now), window))
            del self._windows[key]
        self._window_start = now
        return taken

    def restore(self, drained: Drained) -> None:
        """Put back a window whose report was not published: it is reported with the next one,
        from its own start, together with whatever the version served since."""
        key, old = drained.summary.key, drained.window
        new = self._windows.get(key)
        if new is None:
            self._windows[key] = old
            return
        if new.live_task not in (None, old.live_task) and old.labelled:
            # The task changed in between: keep the newer live metric, as `add_labeled` does.
            old.labelled, old.live_score_sum, old.live_score_squares = 0, 0.0, 0.0
        old.requests += new.requests
        old.errors += new.errors
        old.latency_batches += new.latency_batches
        old.request_ids |= new.request_ids
        old.labelled += new.labelled
        old.live_task = new.live_task or old.live_task
        old.live_score_sum += new.live_score_sum
        old.live_score_squares += new.live_score_squares
        old.evidence.merge(new.evidence)
        self._windows[key] = old

    def models(self) -> set[str]:
        """Models with an open window or something recently counted."""
        return {key.model for key in self._windows} | set(self._predicted) | set(self._joined)

    def forget(self, model: str) -> None:
        """Drop every window and memory of a model that left the fleet."""
        self._predicted.pop(model, None)
        self._joined.pop(model, None)
        for key in [key for key in self._windows if key.model == model]:
            del self._windows[key]


class _Recent:
    """The last `size` keys seen, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, key: Hashable) -> bool:
        """Remember `key`; False if it was already remembered."""
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True


def summarize(key: WindowKey, window: _Window, start: datetime, end: datetime) -> HealthSummary:
    """Percentiles and the live metric of one window."""
    latencies = np.concatenate(window.latency_batches) if window.latency_batches else np.empty(0)
    p50, p95, p99 = (
        (float(value) for value in np.percentile(latencies, [50, 95, 99]))
        if latencies.size
        else (None, None, None)
    )
    live = window.live_task if window.labelled else None
    return HealthSummary(
        key=key,
        window_start=start,
        window_end=end,
        requests=window.requests,
        errors=window.errors,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        labelled=window.labelled,
        live_metric=LIVE_METRIC[live] if live else None,
        live_metric_value=window.live_score_sum / window.labelled if live else None,
        latency_sum_ms=float(latencies.sum()),
        live_score_sum=window.live_score_sum,
        live_metric_std=_std(window) if live else None,
    )


def _std(window: _Window) -> float:
    mean = window.live_score_sum / window.labelled
    return math.sqrt(max(window.live_score_squares / window.labelled - mean * mean, 0.0))


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def label_score(prediction: JsonValue, label: JsonValue, task: LiveTask) -> float | None:
    """Score of one prediction against its label (higher is better); None if not comparable."""
    if prediction is None or label is None:
        return None
    if task == "regression":
        predicted, actual = _number(prediction), _number(label)
        if predicted is None or actual is None:
            return None
        return -abs(predicted - actual)
    predicted, actual = _number(prediction), _number(label)
    if predicted is not None and actual is not None:
        # 1 and 1.0 are the same class, whichever way the JSON spelled them.
        return 1.0 if predicted == actual else 0.0
    return 1.0 if prediction == label else 0.0


def live_task_of_template(template: str | None) -> LiveTask:
    """How a model's live metric is computed, from its pipeline template name (default: classes)."""
    if template is not None and any(word in template for word in ("regress", "forecast")):
        return "regression"
    return "classification"


def slo_violations(
    summary: HealthSummary, policy: MonitoringPolicy, *, min_requests: int = 1
) -> list[SloViolation]:
    """The SLOs a window broke: error rate or p99 latency strictly above its bound.

    Windows with fewer than `min_requests` requests are too small to judge and break nothing.
    """
    if summary.requests < min_requests:
        return []
    violations: list[SloViolation] = []
    if policy.max_error_rate is not None and summary.error_rate > policy.max_error_rate:
        violations.append(SloViolation("error_rate", policy.max_error_rate, summary.error_rate))
    p99 = summary.latency_p99_ms
    if policy.max_latency_p99_ms is not None and p99 is not None and p99 > policy.max_latency_p99_ms:
        violations.append(SloViolation("latency_p99_ms", policy.max_latency_p99_ms, p99))
    return violations
