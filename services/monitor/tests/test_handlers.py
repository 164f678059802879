"""The monitor's handlers with a fake publisher and a fake clock."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from modelfleet_common.policies import load_policies
from modelfleet_contracts import (
    LabeledPrediction,
    ModelHealthReported,
    ModelSpec,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PredictionLogged,
    PredictionsLabeled,
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
        tracker=HealthTracker(dedupe_per_model=100, started_at=T0),
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


def labeled(
    model: str,
    labels: dict[str, JsonValue],
    *,
    version: str = "1",
    route: Route = "champion",
    prediction: JsonValue = 1,
    at: datetime = T0,
) -> PredictionsLabeled:
    """What ingest publishes once it joined these requests' predictions with their labels."""
    return PredictionsLabeled(
        producer="ingest",
        model=model,
        labeled=[
            LabeledPrediction(
                request_id=request_id,
                version=version,
                route=route,
                prediction=prediction,
                predicted_at=T0,
                label=label,
                observed_at=at,
            )
            for request_id, label in labels.items()
        ],
    )


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
    await handlers.record_labeled(labeled("churn", {"r0": 1, "r1": 0}), deps)

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert (report.labelled, report.live_metric, report.live_metric_value) == (2, "accuracy", 0.5)


async def test_a_regressor_is_scored_by_negated_mean_absolute_error() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.note_model_spec(submitted("price", "medium", "tabular-regressor"), deps)
    await handlers.record_predictions(logged("price", "1", "champion", 1), deps)
    await handlers.record_labeled(labeled("price", {"r0": 3.5}), deps)

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


async def test_a_label_hours_late_still_counts_for_the_challenger_whose_canary_is_judged() -> None:
    """The monitor once joined labels itself and forgot a prediction after an hour
    (`FLEET_MONITOR_LABEL_TTL_SECONDS`): a later label then counted for nobody. Ingest's durable join
    carries the version and route that predicted, so the label counts for them however late."""
    deps, _publisher, clock = make_deps()
    await handlers.note_model_spec(submitted("churn", "high"), deps)
    await handlers.record_predictions(logged("churn", "2", "challenger", 2, prefix="c"), deps)
    await handlers.report_health(clock.advance(10), deps)
    clock.advance(3 * 3600)  # three hours: past the monitor's old label TTL of one hour
    await handlers.record_predictions(logged("churn", "2", "challenger", 1, prefix="later"), deps)

    await handlers.record_labeled(
        labeled("churn", {"c0": 1, "c1": 0}, version="2", route="challenger", at=clock()), deps
    )
    events = await handlers.report_health(clock.advance(10), deps)

    [report] = [event for event in events if isinstance(event, ModelHealthReported)]
    assert (report.version, report.route) == ("2", "challenger")
    assert (report.requests, report.labelled, report.live_metric_value) == (1, 2, 0.5)


async def test_a_join_republished_by_ingest_counts_once() -> None:
    deps, _publisher, clock = make_deps()
    await handlers.record_predictions(logged("churn", "1", "champion", 2), deps)
    join = labeled("churn", {"r0": 1, "r1": 1})
    await handlers.handle_model_event(join, deps)
    await handlers.handle_model_event(join.model_copy(), deps)  # the same event id, after a crash

    (report,) = await handlers.report_health(clock.advance(10), deps)

    assert isinstance(report, ModelHealthReported)
    assert (report.labelled, report.live_metric_value) == (2, 1.0)


async def test_a_models_slos_are_its_risk_classs_overridden_by_the_fields_its_spec_sets() -> None:
    deps, _, _ = make_deps()
    event = submitted("churn", "high")
    body = event.spec.spec.model_copy(update={"monitoring": MonitoringPolicy(max_error_rate=0.2)})
    spec = event.spec.model_copy(update={"spec": body})
    await handlers.note_model_spec(event.model_copy(update={"spec": spec}), deps)

    slos = deps.slos("churn")

    high = deps.policies["high"].spec.monitoring
    assert (slos.max_error_rate, slos.max_latency_p99_ms) == (0.2, high.max_latency_p99_ms)
