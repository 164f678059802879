"""The monitor's state outlives its process and moves with its partitions; verdicts are published,
then marked, so a failed publish loses nothing.

A "replica" here is what `bootstrap` builds on a state engine; a restart is a new bootstrap on the
same SQLite file (a kill skips the final checkpoint), a rebalance is the listener's revoke and
assign on two replicas sharing one store (as they share PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import TopicPartition

from modelfleet_common.state import KeyValueStore, StateEngine
from modelfleet_contracts import (
    DriftDetected,
    ModelHealthReported,
    ModelReviewed,
    ModelSpecRetired,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.specs import MonitoringPolicy
from modelfleet_monitor import handlers
from modelfleet_monitor.bootstrap import bootstrap
from modelfleet_monitor.config import MonitorSettings
from modelfleet_monitor.drift import DriftWindow
from modelfleet_monitor.rebalance import Handover
from modelfleet_monitor.references import ReferenceCache
from modelfleet_monitor.snapshots import jsonable, watch_from_state, watch_state
from modelfleet_monitor.watch import VersionWatch

from .profiles import profile_of
from .test_handlers import T0, FakeClock, labeled, logged, make_deps, submitted
from .test_signals import WINDOW, drift_events, pump_profiles, tell_about_pump, traffic

SETTINGS = MonitorSettings(policy_dir=Path(__file__).resolve().parents[3] / "policies")


class Publisher:
    """Keeps what it published; refuses the events `refuses` picks, `times` times in all."""

    def __init__(self, refuses: Callable[[Event], bool] = lambda event: False, times: int = 1) -> None:
        self.events: list[Event] = []
        self.refused: list[Event] = []
        self._refuses = refuses
        self._left = times

    async def __call__(self, event: Event) -> None:
        if self._left > 0 and self._refuses(event):
            self._left -= 1
            self.refused.append(event)
            raise ConnectionError("broker unreachable")
        self.events.append(event)


def replica(
    state: KeyValueStore, publisher: Publisher | None = None, clock: FakeClock | None = None
) -> tuple[handlers.MonitorDeps, Publisher, FakeClock]:
    publisher, clock = publisher or Publisher(), clock or FakeClock()
    deps = bootstrap(SETTINGS, publish=publisher, state=state, profiles=pump_profiles(), clock=clock)
    return deps, publisher, clock


@pytest.fixture
def engine_file(tmp_path: Path) -> Path:
    return tmp_path / "monitor-state.sqlite"


def open_state(path: Path) -> KeyValueStore:
    """The monitor's store as a (re)started process opens it."""
    return StateEngine.sqlite(path, scope="monitor").key_values()


@pytest.mark.parametrize("stop", ["graceful", "kill"])
async def test_after_a_restart_on_the_same_state_drift_is_still_detected(
    engine_file: Path, stop: str
) -> None:
    before, published_before, _ = replica(open_state(engine_file))
    await tell_about_pump(before)
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), before)
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="hot-"), before)
    if stop == "graceful":
        await before.models.checkpoint()

    # The consumer group committed the spec, dataset version, run and registration: after the
    # restart only predictions come.
    after, published_after, _ = replica(open_state(engine_file))
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="hotter-", seed=7), after)

    assert len(drift_events(published_before)) == 1
    [drift] = drift_events(published_after)
    assert (drift.model, drift.version, drift.dataset_version, drift.rows) == ("pump", "1", "v1", WINDOW)
    assert after.profile("pump").features == ("temperature", "vibration", "site")
    assert after.review("pump").drift_events == 2  # the review period came back too


async def test_a_regression_model_is_still_scored_by_its_error_after_a_restart(engine_file: Path) -> None:
    before, _, _ = replica(open_state(engine_file))
    await handlers.note_model_spec(submitted("price", "medium", "tabular-regressor"), before)

    after, _, clock = replica(open_state(engine_file))
    await handlers.record_predictions(logged("price", "1", "champion", 1), after)
    await handlers.record_labeled(labeled("price", {"r0": 3.5}), after)
    [report] = await handlers.report_health(clock.advance(10), after)

    assert isinstance(report, ModelHealthReported)
    assert (report.live_metric, report.live_metric_value) == ("neg_mae", -2.5)


async def test_half_a_window_checkpointed_before_a_restart_is_filled_by_the_rows_after_it(
    engine_file: Path,
) -> None:
    before, _, _ = replica(open_state(engine_file))
    await tell_about_pump(before)
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), before)
    await handlers.record_predictions(traffic(WINDOW // 2, temperature=95.0, prefix="hot-"), before)
    assert await before.models.checkpoint() == 1

    after, published, _ = replica(open_state(engine_file))
    await handlers.record_predictions(traffic(WINDOW // 2, temperature=95.0, prefix="more-", seed=3), after)

    [drift] = drift_events(published)
    assert drift.rows == WINDOW
    assert drift.prediction_drifted is not None  # the prediction reference came back with it


async def test_a_drift_whose_publish_failed_stays_due_and_is_published_by_the_next_report() -> None:
    publisher = Publisher(refuses=lambda event: isinstance(event, DriftDetected))
    deps, _, clock = make_deps()
    deps.publish = publisher
    deps.references = ReferenceCache(pump_profiles())
    await tell_about_pump(deps)
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), deps)
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="hot-"), deps)

    watch = deps.models.get("pump").watches["1"]
    assert (len(publisher.refused), drift_events(publisher)) == (1, [])
    assert watch.rows == WINDOW  # not reset before a successful publish
    assert deps.review("pump").drift_events == 0
    assert deps.metrics.drift_detected.labels("medium")._value.get() == 0

    published = await handlers.report_health(clock.advance(10), deps)

    [drift] = drift_events(publisher)
    assert drift in published
    assert drift.rows == WINDOW
    assert watch.rows == 0
    assert deps.review("pump").drift_events == 1


async def test_a_drift_whose_publish_failed_is_not_lost_by_a_kill(engine_file: Path) -> None:
    refusing = Publisher(refuses=lambda event: isinstance(event, DriftDetected), times=99)
    before, _, _ = replica(open_state(engine_file), refusing)
    await tell_about_pump(before)
    await handlers.record_predictions(traffic(WINDOW, prefix="base-"), before)
    await handlers.record_predictions(traffic(WINDOW, temperature=95.0, prefix="hot-"), before)
    assert refusing.refused
    assert not drift_events(refusing)

    # Killed: no checkpoint. The next process owes the verdict and publishes it in its first report.
    after, published, clock = replica(open_state(engine_file))
    await handlers.report_health(clock.advance(10), after)

    [drift] = drift_events(published)
    assert drift.rows == WINDOW


async def test_one_failed_health_report_loses_no_other_models_window() -> None:
    publisher = Publisher(refuses=lambda e: isinstance(e, ModelHealthReported) and e.model == "churn")
    deps, _, clock = make_deps()
    deps.publish = publisher
    await handlers.record_predictions(logged("churn", "1", "champion", 3), deps)
    await handlers.record_predictions(logged("pump", "1", "champion", 5), deps)

    first = await handlers.report_health(clock.advance(10), deps)
    await handlers.record_predictions(logged("churn", "1", "champion", 2, prefix="later-"), deps)
    second = await handlers.report_health(clock.advance(10), deps)

    # churn sorts first: before, its failure dropped pump's window with it.
    assert [(e.model, e.requests) for e in first if isinstance(e, ModelHealthReported)] == [("pump", 5)]
    [churn] = [e for e in second if isinstance(e, ModelHealthReported)]
    assert (churn.model, churn.requests, churn.window_start, churn.window_end) == ("churn", 5, T0, clock.now)
    assert deps.review("churn").requests == 5


async def test_a_breach_whose_publish_failed_is_sent_again_next_cycle() -> None:
    publisher = Publisher(refuses=lambda event: isinstance(event, SloBreached))
    deps, _, clock = make_deps()
    deps.publish = publisher
    await handlers.record_predictions(logged("churn", "1", "champion", 10, errors=1), deps)

    first = await handlers.report_health(clock.advance(10), deps)
    second = await handlers.report_health(clock.advance(10), deps)

    [refused] = publisher.refused
    assert [type(e) for e in first] == [ModelHealthReported]
    assert second == [refused]  # the same event (same id), not a new decision
    assert deps.metrics.slo_breaches.labels("medium", "error_rate")._value.get() == 1


async def test_a_review_that_failed_to_publish_is_published_next_cycle_without_holding_back_others() -> None:
    publisher = Publisher(refuses=lambda e: isinstance(e, ModelReviewed) and e.model == "churn")
    deps, _, clock = make_deps()
    deps.publish = publisher
    for model in ("churn", "pump"):
        event = submitted(model, "medium")
        body = event.spec.spec.model_copy(update={"monitoring": MonitoringPolicy(review_interval_seconds=60)})
        await handlers.note_model_spec(
            event.model_copy(update={"spec": event.spec.model_copy(update={"spec": body})}), deps
        )

    first = await handlers.report_health(clock.advance(61), deps)
    second = await handlers.report_health(clock.advance(1), deps)

    assert [e.model for e in first if isinstance(e, ModelReviewed)] == ["pump"]
    [churn] = [e for e in second if isinstance(e, ModelReviewed)]
    assert (churn.model, churn.period_start, churn.period_end) == ("churn", T0, clock.now)


async def test_a_models_windows_move_with_its_partition_to_another_replica(engine_file: Path) -> None:
    shared = open_state(engine_file)  # as two pods share PostgreSQL
    a, published_a, _ = replica(shared)
    b, published_b, _ = replica(shared)
    topic = "fleet.prediction-logs.v1"
    a.models.assign([0])
    b.models.assign([1])
    await tell_about_pump(a)
    await handlers.handle_model_event(traffic(WINDOW, prefix="base-"), a, partition=0)
    await handlers.handle_model_event(traffic(WINDOW // 2, temperature=95.0, prefix="hot-"), a, partition=0)

    # B joins the group: everything is revoked, then partition 0 goes to B.
    await Handover(lambda: a).on_partitions_revoked({TopicPartition(topic, 0)})
    await Handover(lambda: b).on_partitions_revoked({TopicPartition(topic, 1)})
    await Handover(lambda: b).on_partitions_assigned({TopicPartition(topic, 0), TopicPartition(topic, 1)})
    await Handover(lambda: a).on_partitions_assigned(set())

    assert [state.model for state in a.models.loaded()] == []
    assert "pump" not in a.tracker.models()
    # An event A fetched before the rebalance is left to B (it was not committed).
    await handlers.handle_model_event(traffic(WINDOW, temperature=95.0, prefix="late-"), a, partition=0)
    assert a.models.loaded() == []

    await handlers.handle_model_event(
        traffic(WINDOW // 2, temperature=95.0, prefix="more-", seed=3), b, partition=0
    )

    assert drift_events(published_a) == []
    [drift] = drift_events(published_b)
    assert drift.rows == WINDOW
    assert b.profile("pump").features == ("temperature", "vibration", "site")


async def test_a_replica_writes_only_the_models_of_its_own_partitions() -> None:
    deps, _, _ = make_deps()
    deps.models.assign([0])
    await handlers.handle_model_event(logged("churn", "1", "champion", 3), deps, partition=0)
    deps.models.get("pump", 1)  # e.g. read before a rebalance took partition 1 away
    deps.models.changed("pump")

    assert await deps.models.checkpoint() == 1
    assert deps.models.store.get("windows", "pump") is None


def test_a_windows_state_as_json_gives_back_the_same_verdict() -> None:
    rng = np.random.default_rng(2)
    profile = profile_of({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000).tolist()})
    reference = ReferenceCache(_Profiles(profile)).reference("p", ["x", "c"])
    policy = MonitoringPolicy(window_size=300)
    watch = VersionWatch("m", "1", "classification")
    watch.use_reference(reference)
    rows = [{"x": float(v), "c": "a"} for v in rng.normal(0.5, 1, 250)]
    watch.add(rows, [int(v > 0) for v in rng.normal(0, 1, 250)], policy, T0)  # the prediction baseline
    watch.add(rows[:100], [1] * 100, policy, T0)  # the baseline is full: predictions are compared
    watch.add(rows[:20], [0] * 20, policy, T0)
    watch.add_scores([1.0, 0.0, 1.0], T0)

    copy = watch_from_state("m", "1", json.loads(json.dumps(jsonable(watch_state(watch)))))
    copy.use_reference(reference)

    assert (copy.rows, copy.labelled, copy.score_sum) == (watch.rows, 3, 2.0)
    finding = watch.drift_finding(policy, T0)
    assert finding is not None
    assert finding.prediction is not None
    assert finding.prediction.drifted
    assert copy.drift_finding(policy, T0) == finding


def test_a_window_counted_against_another_reference_is_not_taken_back() -> None:
    rng = np.random.default_rng(3)
    old = ReferenceCache(_Profiles(profile_of({"x": rng.normal(0, 1, 500)}, version="v1")))
    new = ReferenceCache(_Profiles(profile_of({"x": rng.normal(0, 1, 500)}, version="v2")))
    watch = VersionWatch("m", "1", "classification")
    watch.use_reference(old.reference("p", ["x"]))
    watch.add([{"x": 0.1}] * 10, [1] * 10, MonitoringPolicy(), T0)

    copy = watch_from_state("m", "1", watch_state(watch))
    copy.use_reference(new.reference("p", ["x"]))

    assert copy.rows == 0


async def test_a_review_period_started_by_an_older_monitor_is_kept() -> None:
    deps, _, _ = make_deps()
    deps.models.store.put("reviews", "churn", {"since": "2025-12-01T00:00:00+00:00"})

    assert deps.review("churn").start.isoformat() == "2025-12-01T00:00:00+00:00"


async def test_a_retired_model_leaves_nothing_in_the_state_engine() -> None:
    deps, _, _ = make_deps()
    await handlers.note_model_spec(submitted("churn", "low"), deps)
    await handlers.record_predictions(logged("churn", "1", "champion", 3), deps)
    await deps.models.checkpoint()
    retired = ModelSpecRetired(producer="cli:test", model="churn", reason="replaced")

    await handlers.note_model_spec(retired, deps)
    await deps.models.checkpoint()

    assert [deps.models.store.get(ns, "churn") for ns in ("specs", "windows", "reviews")] == [None] * 3


class _Profiles:
    def __init__(self, profile: dict[str, Any]) -> None:
        self.profile = profile

    def read(self, uri: str) -> dict[str, Any]:
        return self.profile

    def read_table(self, uri: str) -> Any:
        raise OSError("no table")


def test_restored_counts_of_another_shape_are_refused() -> None:
    rng = np.random.default_rng(4)
    reference = ReferenceCache(_Profiles(profile_of({"x": rng.normal(0, 1, 500)}))).reference("p", ["x"])
    window = DriftWindow(reference)
    assert not window.restore(
        5, {"counts": np.zeros((2, 3)), "sums": np.zeros((2, 3)), "categorical": np.zeros((0, 1))}
    )
    assert window.rows == 0
