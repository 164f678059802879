"""The monitor's handlers with a fake publisher and a fake clock."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelfleet_common.policies import load_policies
from modelfleet_contracts import (
    GroundTruthObserved,
    ModelHealthReported,
    ModelSpec,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PredictionLogged,
    SloBreached,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord, Route
from modelfleet_contracts.specs import MonitoringPolicy, RiskClass
from modelfleet_monitor import handlers
from modelfleet_monitor.health import HealthTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICIES = load_policies(Path(os.environ["FLEET_POLICY_DIR"]))


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


def make_deps() -> tuple[handlers.MonitorDeps, FakePublisher, FakeClock]:
    publisher, clock = FakePublisher(), FakeClock()
    deps = handlers.MonitorDeps(
        tracker=HealthTracker(max_buffered_per_model=100, label_ttl_seconds=600, started_at=T0),
        publish=publisher,
        policies=POLICIES,
        clock=clock,
    )
    return deps, publisher, clock


def logged(
    model: str, version: str, route: Route, count: int, *, errors: int = 0, prefix: str = "r"
) -> PredictionLogged:
    records = [
        PredictionRecord(
            request_id=f"{prefix}{i}",
            version=version,
            route=route,
            features={"x": i},
            prediction=None if i < errors else 1,
            latency_ms=5.0,
            error="model failed" if i < errors else None,
            predicted_at=T0,
        )
        for i in range(count)
    ]
    return PredictionLogged(producer="serving", model=model, predictions=records)


def submitted(model: str, risk_class: RiskClass, template: str = "tabular-classifier") -> ModelSpecSubmitted:
    spec = ModelSpec.model_validate(
        {
            "metadata": {"name": model, "owner": "team@example.com", "risk_class": risk_class},
            "spec": {
                "dataset": {"name": "events"},
                "features": ["x"],
                "target": "y",
                "pipeline": {"template": template, "version": "1"},
            },
        }
    )
    return ModelSpecSubmitted(producer="cli:test", model=model, revision="r1", spec=spec)


async def test_one_report_is_published_per_version_with_traffic() -> None:
    deps, publisher, clock = make_deps()
    await handlers.record_predictions(logged("churn", "1", "champion", 8), deps)
    await handlers.record_predictions(logged("churn", "2", "challenger", 2, prefix="c"), deps)

    events = await handlers.report_health(clock.advance(10), deps)

    assert events == publisher.events
    reports = [e for e in events if isinstance(e, ModelHealthReported)]
    assert [(r.version, r.route, r.requests, r.errors) for r in reports] == [
        ("1", "champion", 8, 0),
        ("2", "challenger", 2, 0),
    ]
    assert all(r.window_start == T0 and r.window_end == clock.now for r in reports)
    assert all(r.latency_p99_ms == 5.0 and r.producer == "monitor" for r in reports)


async def test_nothing_is_published_for_silent_versions() -> None:
    deps, publisher, clock = make_deps()
    await handlers.record_predictions(logged("churn", "1", "champion", 3), deps)
    await handlers.report_health(clock.advance(10), deps)

    assert await handlers.report_health(clock.advance(10), deps) == []
    assert len(publisher.events) == 1


async def test_an_error_rate_above_the_default_medium_slo_is_a_breach() -> None:
    deps, _publisher, clock = make_deps()
    # 1 error in 10 is 10 %, above medium's 2 %.
    await handlers.record_predictions(logged("churn", "1", "champion", 10, errors=1), deps)

    report, breach = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert isinstance(breach, SloBreached)
    assert (breach.model, breach.version, breach.slo) == ("churn", "1", "error_rate")
    assert (breach.objective, breach.observed) == (0.02, 0.1)
    assert breach.causation_id == report.event_id
    assert breach.correlation_id == report.correlation_id
    assert (breach.window_start, breach.window_end) == (report.window_start, report.window_end)


async def test_the_slo_follows_the_risk_class_of_the_models_spec() -> None:
    deps, _publisher, clock = make_deps()
    # 1 error in 25 is 4 %: a breach for medium (2 %), within low's 5 %.
    await handlers.note_model_spec(submitted("churn", "low"), deps)
    await handlers.record_predictions(logged("churn", "1", "champion", 25, errors=1), deps)

    events = await handlers.report_health(clock.advance(10), deps)

    assert [type(e) for e in events] == [ModelHealthReported]


async def test_a_redelivered_batch_is_reported_once() -> None:
    deps, _publisher, clock = make_deps()
    batch = logged("churn", "1", "champion", 4)
    await handlers.record_predictions(batch, deps)
    await handlers.record_predictions(batch, deps)

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert report.requests == 4


async def test_labels_give_the_report_its_live_accuracy() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.record_predictions(logged("churn", "1", "champion", 4), deps)
    for request_id, label in [("r0", 1), ("r1", 0)]:
        await handlers.record_ground_truth(
            GroundTruthObserved(producer="serving", model="churn", request_id=request_id, label=label), deps
        )

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert (report.labelled, report.live_metric, report.live_metric_value) == (2, "accuracy", 0.5)


async def test_a_regressor_is_scored_by_negated_mean_absolute_error() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.note_model_spec(submitted("price", "medium", "tabular-regressor"), deps)
    await handlers.record_predictions(logged("price", "1", "champion", 1), deps)
    await handlers.record_ground_truth(
        GroundTruthObserved(producer="serving", model="price", request_id="r0", label=3.5), deps
    )

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert (report.live_metric, report.live_metric_value) == ("neg_mae", -2.5)


async def test_a_retired_model_is_no_longer_reported() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.note_model_spec(submitted("churn", "high"), deps)
    await handlers.record_predictions(logged("churn", "1", "champion", 3), deps)
    await handlers.note_model_spec(
        ModelSpecRetired(producer="cli:test", model="churn", reason="replaced"), deps
    )

    assert await handlers.report_health(clock.advance(10), deps) == []
    assert "churn" not in deps.models.with_specs()


async def test_a_label_that_comes_before_its_prediction_counts_when_the_prediction_arrives() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.record_ground_truth(
        GroundTruthObserved(producer="serving", model="churn", request_id="r0", label=1), deps
    )
    assert deps.tracker.early_labels("churn") == 1
    await handlers.record_predictions(logged("churn", "1", "champion", 2), deps)

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert (report.labelled, report.live_metric_value) == (1, 1.0)
    assert deps.tracker.early_labels("churn") == 0


async def test_a_models_slos_are_its_risk_classs_overridden_by_the_fields_its_spec_sets() -> None:
    deps, _, _ = make_deps()
    event = submitted("churn", "high")
    body = event.spec.spec.model_copy(update={"monitoring": MonitoringPolicy(max_error_rate=0.2)})
    spec = event.spec.model_copy(update={"spec": body})
    await handlers.note_model_spec(event.model_copy(update={"spec": spec}), deps)

    slos = deps.slos("churn")

    high = deps.policies["high"].spec.monitoring
    assert (slos.max_error_rate, slos.max_latency_p99_ms) == (0.2, high.max_latency_p99_ms)
