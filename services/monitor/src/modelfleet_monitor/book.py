"""The models a monitor replica owns: their specs, deployments, review periods and windows.

A replica owns the models of the partitions its consumer group gave it (see `app` for why one
model's predictions, labels, spec and deployments all come to the same replica). For those, and
only those, it keeps in memory what it folds from their events, and writes it to the state engine
so that it outlives the process and moves with the partition:

- low-rate facts are written when they happen: a model's profile (from its spec), its deployment
  and the partition it lives on go to the `specs` namespace; a review period changed by a
  promotion, a rollback, a refusal, a published verdict or review is saved with the model's windows
  at once;
- the windows, updated by every prediction and label, are *checkpointed*: the models changed since
  the last checkpoint are written together (`put_many`) every `checkpoint_seconds`, when the
  partitions are revoked, and when the service stops. A kill loses at most the rows counted
  since the last checkpoint (their window fills a little later); a verdict whose publish failed is
  saved at once, so a kill cannot lose it;
- a model is read from the engine the first time this replica sees it (after a start or after a
  rebalance gave it the partition), and dropped from memory when its partition goes to another
  replica, which then reads what this one wrote when the partitions were revoked.

Only the owner writes a model's records, so an owner's in-memory copy cannot be stale: every change
to the model reaches it as an event of its own partitions. `owned is None` means no consumer group
assigns partitions (one process, tests): every model is this replica's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelfleet_common.state import KeyValueStore
from modelfleet_contracts.specs import BusinessKpi, MonitoringPolicy, RiskClass

from .health import LiveTask
from .review import ReviewPeriod
from .snapshots import (
    jsonable,
    kpi_from_state,
    kpi_state,
    monitoring_from_state,
    monitoring_state,
    review_from_state,
    review_state,
    watch_from_state,
    watch_state,
)
from .watch import VersionWatch

logger = logging.getLogger("modelfleet.monitor")

#: Namespaces of the monitor's key-value store: one record per model in each.
SPECS, WINDOWS = "specs", "windows"
#: Where monitors before the state engine kept a review period's start.
LEGACY_REVIEWS = "reviews"

#: Risk class assumed for a model whose spec the monitor has not seen (yet).
DEFAULT_RISK_CLASS: RiskClass = "medium"


@dataclass(frozen=True)
class ModelProfile:
    """What the monitor needs from a model's spec: features, SLOs, how labels are scored, its KPI."""

    risk_class: RiskClass = DEFAULT_RISK_CLASS
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    live_task: LiveTask = "classification"
    features: tuple[str, ...] = ()
    business_kpi: BusinessKpi | None = None
    #: The spec's row filter: the model's reference is the profile of just those rows.
    where: tuple[tuple[str, str | int | float | bool], ...] = ()

    def state(self) -> dict[str, Any]:
        return {
            "risk_class": self.risk_class,
            "monitoring": monitoring_state(self.monitoring),
            "live_task": self.live_task,
            "features": list(self.features),
            "business_kpi": kpi_state(self.business_kpi),
            "where": [list(pair) for pair in self.where],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelProfile:
        return cls(
            risk_class=state["risk_class"],
            monitoring=monitoring_from_state(state["monitoring"]),
            live_task=state["live_task"],
            features=tuple(state["features"]),
            business_kpi=kpi_from_state(state.get("business_kpi")),
            where=tuple((str(column), value) for column, value in state.get("where", [])),
        )


@dataclass
class Deployment:
    """Where a model's versions are, from its latest routing table."""

    champion: str | None = None
    challenger: str | None = None
    stage: str | None = None


@dataclass
class ModelState:
    """Everything the monitor holds about one model it owns."""

    model: str
    #: The partition its events come from (the record's, as Kafka delivered it).
    partition: int | None = None
    profile: ModelProfile | None = None
    deployment: Deployment = field(default_factory=Deployment)
    review: ReviewPeriod | None = None
    watches: dict[str, VersionWatch] = field(default_factory=dict)
    windows_loaded: bool = False
    #: The monitoring policy resolved for `profile` (the profile it was resolved for, and it).
    policy: tuple[ModelProfile | None, MonitoringPolicy] | None = None


class ModelBook:
    """The owned models in memory, read from and written to a `KeyValueStore`."""

    def __init__(self, store: KeyValueStore, *, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        #: Partitions this replica owns; None without a consumer group (every model).
        self.owned: frozenset[int] | None = None
        self._models: dict[str, ModelState] = {}
        self._dirty: set[str] = set()
        self._specs_loaded = False
        self._write_lock = asyncio.Lock()

    # -- ownership --------------------------------------------------------------------------

    def owns(self, partition: int | None) -> bool:
        """Whether events of `partition` are this replica's (None: an event of unknown origin)."""
        return self.owned is None or partition is None or partition in self.owned

    def _ownable(self, state: ModelState, owned: frozenset[int] | None) -> bool:
        return owned is None or state.partition is None or state.partition in owned

    async def revoke(self) -> int:
        """The partitions are being taken away (all of them: Kafka's eager rebalance): write every
        changed model, and own nothing until the next assignment. Returns how many were written."""
        owned, self.owned = self.owned, frozenset()
        return await self._checkpoint(owned)

    def assign(self, partitions: Iterable[int]) -> list[str]:
        """The partitions this replica owns from now on; returns the models dropped from memory
        (their partitions went to another replica, which reads them from the engine)."""
        self.owned = frozenset(partitions)
        dropped = [model for model, state in self._models.items() if not self._ownable(state, self.owned)]
        for model in dropped:
            del self._models[model]
            self._dirty.discard(model)
        self._specs_loaded = False
        return dropped

    # -- reading ----------------------------------------------------------------------------

    def get(self, model: str, partition: int | None = None) -> ModelState:
        """The model's state, read from the engine the first time this replica sees it."""
        state = self._models.get(model)
        if state is None:
            state = self._models[model] = self._read_spec(model, self.store.get(SPECS, model))
        if not state.windows_loaded:
            self._read_windows(state)
        if partition is not None:
            state.partition = partition
        return state

    def _read_spec(self, model: str, value: dict[str, Any] | None) -> ModelState:
        state = ModelState(model)
        if value is not None:
            state.partition = value.get("partition")
            state.profile = ModelProfile.from_state(value["profile"]) if value.get("profile") else None
            state.deployment = Deployment(**value.get("deployment", {}))
        return state

    def _read_windows(self, state: ModelState) -> None:
        value = self.store.get(WINDOWS, state.model)
        if value is not None:
            if state.partition is None:
                state.partition = value.get("partition")
            if value.get("review"):
                state.review = review_from_state(value["review"])
            state.watches = {
                version: watch_from_state(state.model, version, watch)
                for version, watch in value.get("watches", {}).items()
            }
        if state.review is None and (legacy := self.store.get(LEGACY_REVIEWS, state.model)):
            state.review = review_from_state(legacy)
        state.windows_loaded = True

    def with_specs(self) -> list[str]:
        """The owned models whose spec the monitor knows, sorted (the ones it reviews)."""
        if not self._specs_loaded:
            for model, value in self.store.items(SPECS):
                if model not in self._models:
                    state = self._read_spec(model, value)
                    if self._ownable(state, self.owned):
                        self._models[model] = state
            self._specs_loaded = True
        return sorted(model for model, state in self._models.items() if state.profile is not None)

    def loaded(self) -> list[ModelState]:
        """The models in memory."""
        return list(self._models.values())

    def review(self, model: str) -> ReviewPeriod:
        """The model's open review period (started when the monitor first heard of it)."""
        state = self.get(model)
        if state.review is None:
            state.review = ReviewPeriod(start=self.clock())
            self.changed(model)
        return state.review

    # -- writing ----------------------------------------------------------------------------

    def changed(self, model: str) -> None:
        """The model's windows or review changed: the next checkpoint writes it."""
        self._dirty.add(model)

    def put_spec(self, model: str) -> None:
        """Write the model's profile, deployment and partition now (low-rate facts)."""
        state = self.get(model)
        value = {
            "partition": state.partition,
            "profile": state.profile.state() if state.profile is not None else None,
            "deployment": vars(state.deployment),
        }
        self.store.put(SPECS, model, value)

    async def save(self, model: str) -> None:
        """Write the model's windows and review now (a low-rate change, or an unpublished verdict)."""
        async with self._write_lock:
            state = self._models.get(model)
            if state is None or not self._ownable(state, self.owned):
                return
            self._dirty.discard(model)
            value = self._windows_value(state)
            await asyncio.to_thread(lambda: self.store.put(WINDOWS, model, jsonable(value)))

    async def checkpoint(self) -> int:
        """Write every owned model changed since the last checkpoint, in one batch."""
        return await self._checkpoint(self.owned)

    async def _checkpoint(self, owned: frozenset[int] | None) -> int:
        async with self._write_lock:
            models = sorted(self._dirty)
            self._dirty.clear()
            states = [self._models[m] for m in models if m in self._models]
            values = [(s.model, self._windows_value(s)) for s in states if self._ownable(s, owned)]
            if not values:
                return 0
            try:
                await asyncio.to_thread(
                    lambda: self.store.put_many(
                        WINDOWS, [(model, jsonable(value)) for model, value in values]
                    )
                )
            except BaseException:
                self._dirty.update(model for model, _ in values)
                raise
            return len(values)

    def _windows_value(self, state: ModelState) -> dict[str, Any]:
        # Built in the event loop, before any await: a consistent snapshot of the model (its
        # arrays copied), encoded to JSON in the writing thread.
        return {
            "partition": state.partition,
            "review": review_state(state.review) if state.review is not None else None,
            "watches": {version: watch_state(watch) for version, watch in state.watches.items()},
        }

    async def retire(self, model: str) -> None:
        """Forget a model that left the fleet, in memory and in the engine (after any checkpoint
        in progress, which could otherwise write it back)."""
        async with self._write_lock:
            self._models.pop(model, None)
            self._dirty.discard(model)
            for namespace in (SPECS, WINDOWS, LEGACY_REVIEWS):
                self.store.delete(namespace, model)
