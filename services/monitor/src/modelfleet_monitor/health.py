"""Live health of model versions: request windows, SLO checks and live metrics. Pure, no I/O.

The monitor keeps one window per (model, version, route) with the traffic received since the last
report: request and error counts and the latencies (as numpy arrays, one per batch). Labels arrive
later than predictions, so each model keeps a bounded, time-limited buffer of recent predictions
keyed by request id; a label joins every version that answered (or mirrored) that request and
counts in the window of that version open when the label arrives.

Every time is passed in as `now` (seconds or datetimes): nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import JsonValue

from modelfleet_contracts.serving import PredictionRecord, Route
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
    # Dedupe within the window even when the label buffer already evicted a request.
    request_ids: set[str] = field(default_factory=set)
    labelled: int = 0
    live_task: LiveTask | None = None
    # Sum of per-label scores: 1/0 for a correct/wrong class, -|error| for a number; and of squares.
    live_score_sum: float = 0.0
    live_score_squares: float = 0.0


@dataclass(frozen=True)
class Drained:
    """A window taken out for its report: `HealthTracker.restore` puts it back if the report
    could not be published, so its traffic counts in the next one."""

    summary: HealthSummary
    window: _Window


@dataclass
class _Buffered:
    route: Route
    prediction: JsonValue
    failed: bool
    labelled: bool = False


@dataclass
class _Request:
    received_at: float
    by_version: dict[str, _Buffered] = field(default_factory=dict)


class HealthTracker:
    """Windows of every model version plus the buffer of predictions awaiting their labels.

    Memory is bounded: at most `max_buffered_per_model` request ids per model wait for a label,
    none longer than `label_ttl_seconds`; the oldest are evicted first. Windows hold only the
    traffic since the last `drain`.
    """

    def __init__(
        self, *, max_buffered_per_model: int, label_ttl_seconds: float, started_at: datetime
    ) -> None:
        if max_buffered_per_model < 1:
            raise ValueError(f"max_buffered_per_model must be at least 1, got {max_buffered_per_model}")
        if label_ttl_seconds <= 0:
            raise ValueError(f"label_ttl_seconds must be positive, got {label_ttl_seconds}")
        self.max_buffered_per_model = max_buffered_per_model
        self.label_ttl_seconds = label_ttl_seconds
        self._window_start = started_at
        self._windows: dict[WindowKey, _Window] = {}
        self._buffers: dict[str, OrderedDict[str, _Request]] = {}
        # Labels that came before their prediction (serving batches its logs, a caller may not):
        # (label, task, received_at) by request id, bounded and aged like the predictions.
        self._early: dict[str, OrderedDict[str, tuple[JsonValue, LiveTask, float]]] = {}

    def buffered(self, model: str) -> int:
        """How many request ids of `model` are waiting for (or kept after) their label."""
        return len(self._buffers.get(model, ()))

    def add_predictions(
        self, model: str, records: Sequence[PredictionRecord], *, now: float
    ) -> list[PredictionRecord]:
        """Count a batch of `model`'s predictions; returns those that were new (not redelivered).

        O(len(records)): duplicates are found by request id and version in the window and the
        buffer, then counts and latencies are added per window with numpy.
        """
        buffer = self._buffers.setdefault(model, OrderedDict())
        self._evict(buffer, now)
        fresh: list[PredictionRecord] = []
        for record in records:
            key = WindowKey(model, record.version, record.route)
            window = self._windows.get(key)
            buffered = buffer.get(record.request_id)
            if (window is not None and record.request_id in window.request_ids) or (
                buffered is not None and record.version in buffered.by_version
            ):
                continue
            self._window(key).request_ids.add(record.request_id)
            request = buffer.get(record.request_id)
            if request is None:
                request = buffer[record.request_id] = _Request(received_at=now)
            request.by_version[record.version] = _Buffered(
                route=record.route, prediction=record.prediction, failed=record.error is not None
            )
            fresh.append(record)
        while len(buffer) > self.max_buffered_per_model:
            buffer.popitem(last=False)
        if fresh:
            self._count(model, fresh)
        return fresh

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

    def add_label(
        self, model: str, request_id: str, label: JsonValue, task: LiveTask, *, now: float
    ) -> list[LabelScore]:
        """Join a label to the buffered predictions of `request_id`; returns the scores it gave.

        A label for a request no longer (or never) buffered, for a failed prediction, or one
        already labelled (a redelivery) scores nothing. A regression label that is not a number
        scores nothing either.
        """
        buffer = self._buffers.get(model)
        if buffer is not None:
            self._evict(buffer, now)
        request = buffer.get(request_id) if buffer is not None else None
        if request is None:
            self._keep_early(model, request_id, label, task, now)
            return []
        scored: list[LabelScore] = []
        for version, buffered in request.by_version.items():
            if buffered.labelled or buffered.failed:
                continue
            score = label_score(buffered.prediction, label, task)
            buffered.labelled = True
            if score is None:
                continue
            window = self._window(WindowKey(model, version, buffered.route))
            if window.live_task not in (None, task):
                # The model's task changed with its spec; start its live metric afresh.
                window.labelled, window.live_score_sum, window.live_score_squares = 0, 0.0, 0.0
            window.live_task = task
            window.labelled += 1
            window.live_score_sum += score
            window.live_score_squares += score * score
            scored.append(LabelScore(version, buffered.route, score))
        return scored

    def early_labels(self, model: str) -> int:
        """How many labels of `model` wait for their prediction."""
        return len(self._early.get(model, ()))

    def settle_early_labels(
        self, model: str, records: Sequence[PredictionRecord], *, now: float
    ) -> list[LabelScore]:
        """Score the labels that arrived before these (just added) predictions."""
        early = self._early.get(model)
        if not early:
            return []
        scored: list[LabelScore] = []
        for request_id in dict.fromkeys(record.request_id for record in records):
            waiting = early.pop(request_id, None)
            if waiting is not None:
                label, task, _received = waiting
                scored += self.add_label(model, request_id, label, task, now=now)
        return scored

    def _keep_early(self, model: str, request_id: str, label: JsonValue, task: LiveTask, now: float) -> None:
        early = self._early.setdefault(model, OrderedDict())
        early[request_id] = (label, task, now)
        oldest_kept = now - self.label_ttl_seconds
        while early and (
            len(early) > self.max_buffered_per_model or next(iter(early.values()))[2] < oldest_kept
        ):
            early.popitem(last=False)

    def _evict(self, buffer: OrderedDict[str, _Request], now: float) -> None:
        oldest_kept = now - self.label_ttl_seconds
        while buffer and next(iter(buffer.values())).received_at < oldest_kept:
            buffer.popitem(last=False)

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
            # The task changed in between: keep the newer live metric, as `add_label` does.
            old.labelled, old.live_score_sum, old.live_score_squares = 0, 0.0, 0.0
        old.requests += new.requests
        old.errors += new.errors
        old.latency_batches += new.latency_batches
        old.request_ids |= new.request_ids
        old.labelled += new.labelled
        old.live_task = new.live_task or old.live_task
        old.live_score_sum += new.live_score_sum
        old.live_score_squares += new.live_score_squares
        self._windows[key] = old

    def models(self) -> set[str]:
        """Models with an open window or a buffered prediction or label."""
        return {key.model for key in self._windows} | set(self._buffers) | set(self._early)

    def forget(self, model: str) -> None:
        """Drop every window and buffered prediction of a model that left the fleet."""
        self._buffers.pop(model, None)
        self._early.pop(model, None)
        for key in [key for key in self._windows if key.model == model]:
            del self._windows[key]


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
