"""Handlers of monitor: one function per consumed event, plus the periodic report.

Predictions feed the health windows (`HealthTracker`, time-based, for the deployer's rollout) and
the count-based windows of every version (`VersionWatch`: input drift, prediction drift, decay).
A full drift or decay window is checked at once and published as `DriftDetected` or
`PerformanceDegraded` when it crossed its policy's bounds. `report_health` turns the health
windows into `ModelHealthReported` and `SloBreached`, and publishes the `ModelReviewed` of every
model whose review period is over.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelfleet_common.logs import log_event
from modelfleet_common.policies import Overrides, resolve_policy
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import (
    DatasetVersionCreated,
    DeploymentChanged,
    DriftDetected,
    FeatureDrift,
    GroundTruthObserved,
    ModelArtifactRefused,
    ModelHealthReported,
    ModelPromoted,
    ModelRegistered,
    ModelReviewed,
    ModelRolledBack,
    ModelSpecRetired,
    PerformanceDegraded,
    PredictionLogged,
    RiskPolicy,
    SloBreached,
    SpecEvent,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_contracts.specs import BusinessKpi, MonitoringPolicy, RiskClass

from .drift import FeatureResult, ProfileError
from .health import (
    HealthSummary,
    HealthTracker,
    LabelScore,
    LiveTask,
    live_task_of_template,
    slo_violations,
)
from .metrics import MonitorMetrics
from .references import FsspecProfiles, ReferenceCache, VersionFacts
from .review import ReviewPeriod, decide
from .watch import DecayFinding, DriftFinding, VersionWatch

logger = logging.getLogger("modelfleet.monitor")

PRODUCER = "monitor"

#: Risk class assumed for a model whose spec the monitor has not seen (yet).
DEFAULT_RISK_CLASS: RiskClass = "medium"

REVIEWS = "reviews"


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


@dataclass
class Deployment:
    """Where a model's versions are, from its latest routing table."""

    champion: str | None = None
    challenger: str | None = None
    stage: str | None = None


@dataclass
class MonitorDeps:
    """Everything the handlers use; tests pass a fake publisher, a fake clock and fake profiles."""

    tracker: HealthTracker
    publish: Callable[[Event], Awaitable[None]]
    policies: Mapping[RiskClass, RiskPolicy]
    clock: Callable[[], datetime]
    slo_min_requests: int = 1
    facts: VersionFacts = field(default_factory=lambda: VersionFacts(InMemoryKeyValueStore()))
    references: ReferenceCache = field(default_factory=lambda: ReferenceCache(FsspecProfiles()))
    metrics: MonitorMetrics = field(default_factory=MonitorMetrics)
    models: dict[str, ModelProfile] = field(default_factory=dict)
    watches: dict[tuple[str, str], VersionWatch] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    reviews: dict[str, ReviewPeriod] = field(default_factory=dict)

    def profile(self, model: str) -> ModelProfile:
        return self.models.get(model, ModelProfile())

    def slos(self, model: str) -> MonitoringPolicy:
        """The monitoring policy of a model: its risk class's, overridden by its spec."""
        profile = self.profile(model)
        overrides = Overrides(monitoring=profile.monitoring)
        return resolve_policy(self.policies[profile.risk_class], overrides, loosened="floor").monitoring

    def review(self, model: str) -> ReviewPeriod:
        """The model's open review period (started when the monitor first heard of it)."""
        period = self.reviews.get(model)
        if period is None:
            stored = self.facts.store.get(REVIEWS, model)
            start = datetime.fromisoformat(stored["since"]) if stored else self.clock()
            period = self.reviews[model] = ReviewPeriod(start=start)
            if stored is None:
                self.facts.store.put(REVIEWS, model, {"since": start.isoformat()})
        return period


async def record_predictions(event: PredictionLogged, deps: MonitorDeps) -> None:
    """Count a batch in the health windows and the drift windows; redeliveries count once."""
    now = deps.clock()
    fresh = deps.tracker.add_predictions(event.model, event.predictions, now=now.timestamp())
    if len(fresh) < len(event.predictions):
        logger.info(
            "ignored predictions already counted",
            extra={"model": event.model, "duplicates": len(event.predictions) - len(fresh)},
        )
    await _score_labels(
        event.model, deps.tracker.settle_early_labels(event.model, fresh, now=now.timestamp()), event, deps
    )
    by_version: dict[str, list[PredictionRecord]] = defaultdict(list)
    for record in fresh:
        # Shadows see the champion's inputs again; their drift is the champion's.
        if record.route != "shadow" and record.error is None:
            by_version[record.version].append(record)
    for version, records in by_version.items():
        watch = _watch(event.model, version, records[0].dataset_version, deps)
        with deps.metrics.drift_check_seconds.time():
            finding = watch.add(
                [r.features for r in records], [r.prediction for r in records], deps.slos(event.model), now
            )
        if finding is not None:
            await _report_drift(finding, event, deps)


async def record_ground_truth(event: GroundTruthObserved, deps: MonitorDeps) -> None:
    """Score the predictions a label belongs to: live metric per health window, and decay.

    A label whose prediction has not arrived yet waits for it; `record_predictions` scores it.
    """
    profile = deps.profile(event.model)
    now = deps.clock().timestamp()
    await _score_labels(
        event.model,
        deps.tracker.add_label(event.model, event.request_id, event.label, profile.live_task, now=now),
        event,
        deps,
    )


async def _score_labels(model: str, scores: list[LabelScore], cause: Event, deps: MonitorDeps) -> None:
    """Add label scores to their versions' decay windows; publish decay when one crossed its bound."""
    profile, now = deps.profile(model), deps.clock()
    for score in scores:
        if score.route == "shadow":
            continue
        watch = _watch(model, score.version, None, deps)
        baseline = deps.facts.baseline(model, score.version, profile.live_task)
        finding = watch.add_scores([score.score], baseline, deps.slos(model), now)
        if finding is not None and finding.decayed:
            await _report_decay(finding, cause, deps)


async def note_model_spec(event: SpecEvent, deps: MonitorDeps) -> None:
    """Learn a model's features, risk class, SLO overrides and KPI; forget a retired model."""
    if isinstance(event, ModelSpecRetired):
        deps.models.pop(event.model, None)
        deps.tracker.forget(event.model)
        for key in [key for key in deps.watches if key[0] == event.model]:
            del deps.watches[key]
        deps.deployments.pop(event.model, None)
        deps.reviews.pop(event.model, None)
        deps.facts.store.delete(REVIEWS, event.model)
        log_event(logger, "model retired: stopped monitoring it", event)
        return
    spec = event.spec
    previous = deps.models.get(event.model)
    profile = ModelProfile(
        risk_class=spec.metadata.risk_class,
        monitoring=spec.spec.monitoring,
        live_task=live_task_of_template(spec.spec.pipeline.template),
        features=tuple(spec.spec.features),
        business_kpi=spec.spec.business_kpi,
        where=tuple(sorted(spec.spec.dataset.where.items())),
    )
    deps.models[event.model] = profile
    if previous is not None and (previous.features, previous.where) != (profile.features, profile.where):
        # Versions of the new spec get their references with the new features as they appear.
        for key in [key for key in deps.watches if key[0] == event.model]:
            del deps.watches[key]
    deps.review(event.model)


async def note_dataset_version_created(event: DatasetVersionCreated, deps: MonitorDeps) -> None:
    """Remember where a dataset version's reference profile is."""
    if event.profile_uri is None:
        log_event(logger, "dataset version without a reference profile: no drift against it", event)
        return
    deps.facts.note_dataset_version(event.version, event.profile_uri, event.uri)


async def note_training_finished(event: TrainingFinished, deps: MonitorDeps) -> None:
    """Remember a run's holdout metrics: a version's live metric is held against them."""
    deps.facts.note_run(event.run_id, dict(event.metrics))


async def note_model_registered(event: ModelRegistered, deps: MonitorDeps) -> None:
    """Remember which run and dataset version a registered version comes from."""
    deps.facts.note_model_version(
        event.model, event.version, event.run_id, event.lineage.get("dataset_version")
    )


async def note_deployment_changed(event: DeploymentChanged, deps: MonitorDeps) -> None:
    """Follow where a model's versions are: the review's decision depends on it."""
    challenger = event.challenger or (event.shadows[0] if event.shadows else None) or event.candidate
    deps.deployments[event.model] = Deployment(
        champion=event.champion.version if event.champion else None,
        challenger=challenger.version if challenger else None,
        stage=event.stage,
    )


async def note_model_promoted(event: ModelPromoted, deps: MonitorDeps) -> None:
    """A new champion answers an owed retrain."""
    deps.review(event.model).add_promotion()


async def note_model_rolled_back(event: ModelRolledBack, deps: MonitorDeps) -> None:
    deps.review(event.model).add_rollback(
        f"rollback v{event.from_version} -> v{event.to_version}: {event.reason}"
    )


async def note_artifact_refused(event: ModelArtifactRefused, deps: MonitorDeps) -> None:
    deps.review(event.model).add_incident(f"artifact of v{event.version} refused: {event.reason}")


async def report_health(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Publish the health of every version that saw traffic since the last report, its breaches,
    and the reviews that are due.

    Returns the events published, in order: each version's `ModelHealthReported`, followed by a
    `SloBreached` per SLO it broke (caused by the report); then the `ModelReviewed`s.
    """
    published: list[Event] = []
    for summary in deps.tracker.drain(now):
        model = summary.key.model
        report = _health_report(summary, now, deps.profile(model))
        await deps.publish(report)
        published.append(report)
        deps.review(model).add_health(
            summary.requests,
            summary.errors,
            summary.labelled,
            summary.live_score_sum,
            summary.latency_sum_ms,
            report.business_value,
        )
        for violation in slo_violations(summary, deps.slos(model), min_requests=deps.slo_min_requests):
            breach = SloBreached(
                producer=PRODUCER,
                occurred_at=now,
                **report.caused(),
                model=model,
                version=summary.key.version,
                window_start=summary.window_start,
                window_end=summary.window_end,
                slo=violation.slo,
                objective=violation.objective,
                observed=violation.observed,
            )
            await deps.publish(breach)
            published.append(breach)
            deps.metrics.slo_breaches.labels(deps.profile(model).risk_class, violation.slo).inc()
            numbers = f"{violation.observed:g} > {violation.objective:g}"
            deps.review(model).add_incident(
                f"SLO {violation.slo} breached by v{summary.key.version}: {numbers}"
            )
            log_event(
                logger,
                f"SLO {violation.slo} breached: {violation.observed:g} > {violation.objective:g}",
                breach,
            )
    published += await review_models(now, deps)
    deps.metrics.models_watched.set(len(deps.models))
    return published


async def review_models(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Publish the review of every model whose period is over, and open the next period."""
    published: list[Event] = []
    for model in sorted(deps.models):
        period = deps.review(model)
        interval = deps.slos(model).review_interval_seconds
        if interval is None or now - period.start < timedelta(seconds=interval):
            continue
        deployment = deps.deployments.get(model, Deployment())
        decision, reason = decide(period, challenger=deployment.challenger, stage=deployment.stage, end=now)
        profile = deps.profile(model)
        kpi = profile.business_kpi
        review = ModelReviewed(
            producer=PRODUCER,
            occurred_at=now,
            model=model,
            risk_class=profile.risk_class,
            period_start=period.start,
            period_end=now,
            champion=deployment.champion,
            challenger=deployment.challenger,
            requests=period.requests,
            errors=period.errors,
            labelled=period.labelled,
            live_metric=("accuracy" if profile.live_task == "classification" else "neg_mae")
            if period.labelled
            else None,
            live_metric_value=period.live_metric_value(),
            drift_events=period.drift_events,
            max_drift_share=period.max_drift_share,
            incidents=period.incidents[-20:],
            compute_seconds=period.compute_ms / 1000,
            business_kpi=f"{kpi.name} ({kpi.unit})" if kpi and kpi.unit else kpi.name if kpi else None,
            business_value=period.business_value,
            decision=decision,
            reason=reason,
        )
        await deps.publish(review)
        published.append(review)
        deps.metrics.reviews.labels(profile.risk_class, decision).inc()
        log_event(logger, f"model reviewed: {decision} ({reason})", review)
        follow_up = ReviewPeriod(start=now, needs_retrain=period.needs_retrain)
        deps.reviews[model] = follow_up
        deps.facts.store.put(REVIEWS, model, {"since": now.isoformat()})
    return published


def _watch(model: str, version: str, dataset_version: str | None, deps: MonitorDeps) -> VersionWatch:
    """The version's windows; its reference is looked up until it is found."""
    key = (model, version)
    watch = deps.watches.get(key)
    profile = deps.profile(model)
    if watch is None:
        watch = deps.watches[key] = VersionWatch(model, version, profile.live_task)
    if watch.reference is None and profile.features:
        dataset_version = dataset_version or deps.facts.dataset_version(model, version)
        profile_uri = deps.facts.profile_uri(dataset_version) if dataset_version else None
        data_uri = deps.facts.data_uri(dataset_version) if dataset_version else None
        if profile_uri is not None and dataset_version is not None:
            try:
                if profile.where and data_uri is not None:
                    reference = deps.references.slice_reference(
                        data_uri, dict(profile.where), profile.features, dataset_version=dataset_version
                    )
                else:
                    reference = deps.references.reference(profile_uri, profile.features)
                watch.use_reference(reference)
            except ProfileError as error:
                deps.metrics.reference_errors.inc()
                logger.warning(
                    "no drift reference for this version",
                    extra={"model": model, "version": version, "error": str(error)},
                )
    return watch


async def _report_drift(finding: DriftFinding, cause: Event, deps: MonitorDeps) -> None:
    risk_class = deps.profile(finding.model).risk_class
    deps.metrics.drift_checks.labels(risk_class).inc()
    if not finding.drifted:
        return
    deps.metrics.drift_detected.labels(risk_class).inc()
    # Features without a live value in the window were not compared: they have no statistic.
    compared = [
        r for r in [*finding.features, finding.prediction] if r is not None and not math.isnan(r.statistic)
    ]
    event = DriftDetected(
        producer=PRODUCER,
        model=finding.model,
        version=finding.version,
        window_start=finding.window_start,
        window_end=finding.window_end,
        dataset_version=finding.dataset_version,
        rows=finding.rows,
        drift_share=finding.share,
        features=[_feature(result) for result in compared],
        drift_share_threshold=finding.share_threshold,
        prediction_drifted=finding.prediction.drifted if finding.prediction else None,
        # A drift incident is the root of its own chain (retrain, evaluation, canary, promotion).
        causation_id=cause.event_id,
    )
    await deps.publish(event)
    deps.review(finding.model).add_drift(finding.share, finding.summary())
    log_event(logger, f"drift detected: {finding.summary()}", event)


async def _report_decay(finding: DecayFinding, cause: Event, deps: MonitorDeps) -> None:
    deps.metrics.decay_detected.labels(deps.profile(finding.model).risk_class).inc()
    event = PerformanceDegraded(
        producer=PRODUCER,
        model=finding.model,
        version=finding.version,
        window_start=finding.window_start,
        window_end=finding.window_end,
        metric=finding.metric,
        baseline=finding.baseline,
        observed=finding.observed,
        threshold=finding.threshold,
        labelled_rows=finding.labelled,
        causation_id=cause.event_id,
    )
    await deps.publish(event)
    summary = (
        f"v{finding.version} live {finding.metric} {finding.observed:.3g} < {finding.threshold:.3g} "
        f"(evaluated {finding.baseline:.3g}) over {finding.labelled} labels"
    )
    deps.review(finding.model).add_decay(summary)
    log_event(logger, f"performance degraded: {summary}", event)


def _feature(result: FeatureResult) -> FeatureDrift:
    return FeatureDrift(
        feature=result.feature,
        method=result.method,
        statistic=result.statistic,
        threshold=result.threshold,
        drifted=result.drifted,
    )


def _health_report(summary: HealthSummary, now: datetime, profile: ModelProfile) -> ModelHealthReported:
    kpi = profile.business_kpi
    value = None
    if kpi is not None and kpi.value_per_correct_prediction is not None and summary.live_metric == "accuracy":
        value = summary.live_score_sum * kpi.value_per_correct_prediction
    return ModelHealthReported(
        producer=PRODUCER,
        occurred_at=now,
        model=summary.key.model,
        version=summary.key.version,
        route=summary.key.route,
        window_start=summary.window_start,
        window_end=summary.window_end,
        requests=summary.requests,
        errors=summary.errors,
        latency_p50_ms=summary.latency_p50_ms,
        latency_p95_ms=summary.latency_p95_ms,
        latency_p99_ms=summary.latency_p99_ms,
        labelled=summary.labelled,
        live_metric=summary.live_metric,
        live_metric_value=summary.live_metric_value,
        live_metric_std=summary.live_metric_std,
        business_value=value,
    )
