"""Driving the closed loop from outside the fleet: live traffic with labels, drift, and the clock.

What `modelfleet-dev demo` (and a closed-loop benchmark) needs besides the services themselves:

- `traffic_for`: a model's requests, sampled from its own slice of its dataset (`where`): the
  model's features as `inputs` and every other column but the target as `context` (serving refuses
  features a model does not take, but logs the context, and ingest's feedback rows need every
  declared column), with the row's true label as feedback;
- `drifted_traffic`: the same slice sampled with a strong bias (covariate shift): only the rows
  whose chosen numeric features sit in their top `top_share` together, still with their true labels,
  so the monitor sees drift, the retrain learns from labelled drifted data, and the canary compares
  versions on true labels;
- `choose_drift_models`: which models to drift (spread over use cases, cheap rollouts first);
- `TrafficDriver`: a few concurrent workers sending predict + feedback at a target rate;
- `loop_timelines`: from the fleet's events, when each model's monitor first found drift (or
  decay), when it was asked to retrain, and when it had a new champion: the seconds between.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pandas as pd

from modelfleet_common.policies import Overrides, resolve_policy
from modelfleet_contracts import (
    DriftDetected,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    ModelSpec,
    PerformanceDegraded,
    RetrainRequested,
    RiskPolicy,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MonitoringPolicy, RolloutPolicy

#: Fewest distinct values a numeric column needs to be shifted (flags such as `promo` cannot be).
MIN_DISTINCT_VALUES = 8


def model_slice(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The rows of `frame` the model trains on: its `spec.dataset.where` equalities, compared as
    text so that `where: {store: 7}` matches a column read as integers."""
    mask = pd.Series(True, index=frame.index)
    for column, value in spec.spec.dataset.where.items():
        mask &= frame[column].astype(str) == str(value)
    return frame[mask].reset_index(drop=True)


def _native(value: Any) -> Any:
    """A JSON-ready scalar: numpy numbers as Python ones, missing values as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


@dataclass(frozen=True)
class ModelTraffic:
    """The requests sent to one model: input rows (features), their context and the true label of each."""

    model: str
    rows: tuple[dict[str, Any], ...]
    labels: tuple[Any, ...]
    kind: str = "steady"
    #: Columns of each row that are not the model's features (ids, cohorts): logged, not predicted on.
    context: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.rows or len(self.rows) != len(self.labels):
            raise ValueError(f"{self.model}: traffic needs rows, one label each ({len(self.rows)} rows)")


def traffic_for(spec: ModelSpec, rows: pd.DataFrame, kind: str = "steady") -> ModelTraffic:
    """Requests from `rows` (already the model's slice): the features as inputs, every other column
    but the target as context."""
    target = spec.spec.target
    if target not in rows.columns:
        raise ValueError(f"{spec.metadata.name}: the rows lack the target column {target!r}")
    features = [column for column in spec.spec.features if column in rows.columns]
    others = [column for column in rows.columns if column not in features and column != target]
    return ModelTraffic(
        model=spec.metadata.name,
        rows=_records(rows[features]),
        labels=tuple(_native(value) for value in rows[target].tolist()),
        kind=kind,
        context=_records(rows[others]) if others else (),
    )


def _records(frame: pd.DataFrame) -> tuple[dict[str, Any], ...]:
    return tuple(
        {str(column): _native(value) for column, value in record.items()}
        for record in frame.to_dict("records")
    )


def effective_monitoring(policy: RiskPolicy, spec: ModelSpec) -> MonitoringPolicy:
    """The model's monitoring policy, as the fleet resolves it (`resolve_policy`)."""
    return resolve_policy(policy, Overrides.of(spec), loosened="floor").monitoring


def effective_rollout(policy: RiskPolicy, spec: ModelSpec) -> RolloutPolicy:
    """The model's rollout policy, as the fleet resolves it (`resolve_policy`)."""
    rollout = resolve_policy(policy, Overrides.of(spec), loosened="floor").rollout
    return RolloutPolicy(
        shadow=rollout.shadow,
        canary_steps=list(rollout.canary_steps),
        min_requests_per_step=rollout.min_requests_per_step,
        requires_approval=rollout.requires_approval,
        min_live_labels=rollout.min_live_labels,
    )


def rollout_requests(rollout: RolloutPolicy) -> float:
    """Requests the model needs (all routes) to take a challenger through shadow and every canary
    step: a step at w % needs `min_requests_per_step` challenger requests, so that / w of all."""
    per_step = rollout.min_requests_per_step or 1
    total = float(per_step) if rollout.shadow else 0.0
    for weight in rollout.canary_steps or [100]:
        total += per_step * 100 / weight
    return total


def drift_features(rows: pd.DataFrame, spec: ModelSpec, monitoring: MonitoringPolicy) -> list[str]:
    """The numeric features to shift: enough of them for the monitor's drift share (at least one,
    at most three, so each keeps a strong shift), those most related to the target first."""
    numeric = [
        name
        for name in spec.spec.features
        if pd.api.types.is_numeric_dtype(rows[name]) and rows[name].nunique() >= MIN_DISTINCT_VALUES
    ]
    if not numeric:
        raise ValueError(f"{spec.metadata.name} has no numeric feature with {MIN_DISTINCT_VALUES}+ values")
    share = monitoring.drift_share if monitoring.drift_share is not None else 0.3
    wanted = min(3, len(numeric), max(1, math.ceil(share * len(spec.spec.features))))
    target = pd.to_numeric(rows[spec.spec.target], errors="coerce")

    def strength(name: str) -> float:
        correlation = rows[name].astype(float).corr(target, method="spearman")
        return 0.0 if pd.isna(correlation) else abs(float(correlation))

    return sorted(numeric, key=lambda name: (-strength(name), numeric.index(name)))[:wanted]


def drifted_rows(rows: pd.DataFrame, features: Sequence[str], top_share: float = 0.3) -> pd.DataFrame:
    """The rows whose `features` are high together: the top `top_share` by their mean percentile
    rank. A covariate shift with the true labels of those rows (nothing is made up)."""
    if not features:
        raise ValueError("name at least one feature to shift")
    if not 0 < top_share < 1:
        raise ValueError(f"top_share must be between 0 and 1, got {top_share}")
    rank = rows[list(features)].rank(pct=True).mean(axis=1)
    keep = max(1, round(len(rows) * top_share))
    chosen = rank.sort_values(ascending=False, kind="stable").index[:keep]
    return rows.loc[sorted(chosen)].reset_index(drop=True)


@dataclass(frozen=True)
class DriftCandidate:
    """A model that may be drifted, with what it costs to roll out its next version."""

    model: str
    use_case: str
    rollout_requests: float


def choose_drift_models(
    candidates: Iterable[DriftCandidate], count: int, min_use_cases: int = 3
) -> list[str]:
    """`count` models to drift: first the cheapest of each of the `min_use_cases` use cases whose
    rollouts are cheapest, then the cheapest of the rest. Raises when that cannot be done."""
    ranked = sorted(candidates, key=lambda c: (c.rollout_requests, c.model))
    use_cases = list(dict.fromkeys(c.use_case for c in ranked))
    if count < 1 or len(ranked) < count:
        raise ValueError(f"cannot drift {count} of {len(ranked)} eligible models")
    spread = min(min_use_cases, count)
    if len(use_cases) < spread:
        raise ValueError(f"eligible models span {len(use_cases)} use cases; {spread} wanted")
    chosen = [next(c for c in ranked if c.use_case == use_case) for use_case in use_cases[:spread]]
    chosen += [c for c in ranked if c not in chosen][: count - len(chosen)]
    return [c.model for c in chosen]


@dataclass
class TrafficCounts:
    """What one model was sent and answered with."""

    sent: int = 0
    answered: int = 0
    errors: int = 0
    feedback: int = 0
    routes: Counter[str] = field(default_factory=Counter)


class TrafficDriver:
    """Sends each routed model's requests, and their labels as feedback, at `rate` requests/s in
    all, spread over models by weight. `route` starts or changes a model's traffic while it runs."""

    def __init__(
        self,
        base_url: str,
        *,
        rate: float,
        workers: int = 6,
        run_id: str = "loop",
        seed: int = 5,
        token: str | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.workers = workers
        self.run_id = run_id
        #: Serving's bearer token (scopes predict and feedback); see `modelfleet tokens`.
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.counts: dict[str, TrafficCounts] = {}
        self._traffic: dict[str, ModelTraffic] = {}
        self._weights: dict[str, float] = {}
        self._random = random.Random(seed)
        self._next_slot = 0.0
        self._sequence = 0

    def route(self, traffic: ModelTraffic, weight: float = 1.0) -> None:
        """Send `traffic` to its model from now on, `weight` times as often as a weight of 1."""
        self._traffic[traffic.model] = traffic
        self._weights[traffic.model] = weight
        self.counts.setdefault(traffic.model, TrafficCounts())

    def kind(self, model: str) -> str | None:
        """`steady`, `drifted`, ... : what `model` is being sent now; None if nothing."""
        traffic = self._traffic.get(model)
        return traffic.kind if traffic else None

    @property
    def sent(self) -> int:
        return sum(count.sent for count in self.counts.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set."""
        limits = httpx.Limits(max_connections=self.workers * 2)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30, limits=limits, headers=self.headers
        ) as client:
            await asyncio.gather(*(self._work(client, stop) for _ in range(self.workers)))

    async def _pace(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1 / self.rate
        await asyncio.sleep(slot - now)

    async def _work(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self._traffic:
                await asyncio.sleep(0.5)
                continue
            await self._pace()
            models = list(self._traffic)
            model = self._random.choices(models, weights=[self._weights[m] for m in models])[0]
            await self._send(client, self._traffic[model])

    async def _send(self, client: httpx.AsyncClient, traffic: ModelTraffic) -> None:
        counts = self.counts[traffic.model]
        index = self._random.randrange(len(traffic.rows))
        self._sequence += 1
        request_id = f"{self.run_id}-{self._sequence}"
        body: dict[str, Any] = {
            "model": traffic.model,
            "request_id": request_id,
            "inputs": [traffic.rows[index]],
        }
        if traffic.context:
            body["context"] = [traffic.context[index]]
        counts.sent += 1
        try:
            answer = await client.post("/predict", json=body)
            if answer.status_code != 200:
                counts.errors += 1
                return
            counts.answered += 1
            counts.routes[f"{answer.json().get('route')} v{answer.json().get('version')}"] += 1
            label = {"model": traffic.model, "request_id": request_id, "label": traffic.labels[index]}
            if (await client.post("/feedback", json=label)).status_code == 202:
                counts.feedback += 1
        except httpx.HTTPError:
            counts.errors += 1


@dataclass
class LoopTimeline:
    """One model's turn of the loop after `since`: the monitor's first finding (drift, or decay of
    the live metric), the retrain request, the new version and its promotion."""

    model: str
    detected_at: datetime | None = None
    #: What the first finding was, with its numbers, e.g. `drift: share 0.67 · temperature`.
    finding: str = ""
    drift_windows: int = 0
    retrain_at: datetime | None = None
    retrain_reason: str = ""
    champion_before: str | None = None
    registered_version: str | None = None
    #: Every version registered after the retrain request: the loop's possible new champions.
    registered_versions: set[str] = field(default_factory=set)
    promoted_version: str | None = None
    promoted_at: datetime | None = None
    #: A version the loop made that its canary rolled back (the model then waits for its cooldown).
    rolled_back_version: str | None = None
    rolled_back_reason: str = ""

    @property
    def settled(self) -> bool:
        """The loop's turn is over: a new champion, or its candidate rolled back."""
        return self.promoted_at is not None or self.rolled_back_version is not None

    @property
    def is_drift(self) -> bool:
        return self.finding.startswith("drift")

    @property
    def detection_to_promotion_seconds(self) -> float | None:
        """Seconds from the first finding's report to the new champion; None until then."""
        if self.detected_at is None or self.promoted_at is None:
            return None
        return (self.promoted_at - self.detected_at).total_seconds()


def finding_summary(event: DriftDetected | PerformanceDegraded) -> str:
    """A finding in a few words: what drifted (or decayed) and by how much."""
    if isinstance(event, PerformanceDegraded):
        bound = f"{event.observed:.3g} < {event.threshold:.3g}"
        return f"decay: {event.metric} {bound} on {event.labelled_rows} labels"
    drifted = [f.feature for f in event.features if f.drifted and f.feature != "__prediction__"]
    parts = [f"drift: share {event.drift_share:.2f}"]
    if drifted:
        parts.append(", ".join(drifted[:3]) + ("…" if len(drifted) > 3 else ""))
    if event.prediction_drifted:
        parts.append("predictions")
    return " · ".join(parts)


def loop_timelines(
    events: Sequence[Event], models: Iterable[str], since: datetime
) -> dict[str, LoopTimeline]:
    """Fold events (oldest first) into each model's timeline from its first finding (drift or
    decay) at or after `since`: the first retrain request after it, the versions registered after
    that request, and the first promotion of one of them (a version the loop made)."""
    timelines = {model: LoopTimeline(model) for model in models}
    for event in events:
        line = timelines.get(getattr(event, "model", ""))
        if line is None:
            continue
        if isinstance(event, ModelPromoted | ModelRolledBack) and line.detected_at is None:
            line.champion_before = event.version if isinstance(event, ModelPromoted) else event.to_version
        if event.occurred_at < since:
            continue
        if isinstance(event, DriftDetected | PerformanceDegraded):
            line.drift_windows += isinstance(event, DriftDetected)
            if line.detected_at is None:
                line.detected_at, line.finding = event.occurred_at, finding_summary(event)
        elif line.detected_at is None:
            continue
        elif isinstance(event, RetrainRequested) and line.retrain_at is None:
            line.retrain_at, line.retrain_reason = event.occurred_at, event.reason
        elif isinstance(event, ModelRegistered) and line.retrain_at:
            line.registered_version = line.registered_version or event.version
            line.registered_versions.add(event.version)
        elif (
            isinstance(event, ModelPromoted)
            and line.promoted_at is None
            and event.version in line.registered_versions
            and event.version != line.champion_before
        ):
            line.promoted_version, line.promoted_at = event.version, event.occurred_at
        elif (
            isinstance(event, ModelRolledBack)
            and line.promoted_at is None
            and event.from_version in line.registered_versions
        ):
            line.rolled_back_version, line.rolled_back_reason = event.from_version, event.reason
    return timelines


def request_counts(counts: Mapping[str, TrafficCounts]) -> tuple[int, int, int]:
    """Requests sent, answered and failed over every model."""
    return (
        sum(c.sent for c in counts.values()),
        sum(c.answered for c in counts.values()),
        sum(c.errors for c in counts.values()),
    )
