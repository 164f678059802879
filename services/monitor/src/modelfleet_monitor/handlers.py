"""Handlers of monitor: one function per consumed event, plus the periodic report.

Predictions feed the health windows (`HealthTracker`, time-based, for the deployer's rollout) and
the count-based windows of every version (`VersionWatch`: input drift, prediction drift, decay).
A full drift or decay window is judged at once and, when it crossed its policy's bounds, published
as `DriftDetected` or `PerformanceDegraded`. `report_health` turns the health windows into
`ModelHealthReported` and `SloBreached`, publishes the `ModelReviewed` of every model whose review
period is over, and the verdicts a failed publish left owed.

Publish, then mark: a window is closed (and its verdict counted in the review) only after its
event was published. A publish that fails leaves the window as it is, due: the next report cycle
judges and publishes it again, and it is saved to the state engine at once, so neither a failed
publish nor a kill after it loses the verdict. In a report cycle each window and each model is
published on its own: one failed publish puts that health window back for the next report and
loses nothing of the others.

What the monitor knows of each model lives in `deps.book` (`book.ModelBook`): the models of the
partitions this replica owns, in memory, written to the state engine.

Tracing: every verdict the monitor publishes summarises many requests, so it starts a trace of its
own (`modelfleet_common.telemetry.root_span`) that links to the request spans of its evidence, at
most `MAX_LINKS`, the newest: a `DriftDetected` to its window's rows, a `ModelHealthReported` (and
the `SloBreached` it causes, in its trace) to its window's requests, a `ModelReviewed` to the
period's health, drift and decay spans. The consumed event that closed a window, if any, is linked
too. The retrain, training, evaluation, registration and rollout it causes continue its trace
through the Kafka headers.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelfleet_common.humanize import slo_value
from modelfleet_common.logs import log_event
from modelfleet_common.policies import Overrides, resolve_policy
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_common.telemetry import Evidence, current_traceparent, root_span
from modelfleet_contracts import (
    DatasetVersionCreated,
    DeploymentChanged,
    DriftDetected,
    FeatureDrift,
    ModelArtifactRefused,
    ModelHealthReported,
    ModelPromoted,
    ModelRegistered,
    ModelReviewed,
    ModelRolledBack,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PerformanceDegraded,
    PredictionLogged,
    PredictionsLabeled,
    RiskPolicy,
    SloBreached,
    SpecEvent,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.serving import PredictionRecord
from modelfleet_contracts.specs import MonitoringPolicy, RiskClass

from .book import Deployment, ModelBook, ModelProfile
from .drift import FeatureResult, ProfileError
from .health import (
    Drained,
    HealthSummary,
    HealthTracker,
    LabelScore,
    live_task_of_template,
    slo_violations,
)
from .metrics import MonitorMetrics
from .references import FsspecProfiles, ReferenceCache, VersionFacts
from .review import ReviewPeriod, decide
from .watch import DriftFinding, VersionWatch

logger = logging.getLogger("modelfleet.monitor")

PRODUCER = "monitor"


#: Events of the topics keyed by model that the monitor folds into a model's state; they all reach
#: the replica that owns the model (`app`).
ModelEvent = (
    PredictionLogged
    | PredictionsLabeled
    | ModelSpecSubmitted
    | ModelSpecRetired
    | DeploymentChanged
    | ModelPromoted
    | ModelRolledBack
    | ModelArtifactRefused
)


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
    book: ModelBook | None = None
    #: Breaches decided with a published report whose own publish failed: sent again next cycle.
    unsent: list[Event] = field(default_factory=list)
    #: Spans of the health reports, drift and decay published in each model's open review period
    #: (what its `ModelReviewed` links to; in memory only).
    review_evidence: dict[str, Evidence] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.book is None:
            self.book = ModelBook(InMemoryKeyValueStore(), clock=self.clock)

    @property
    def models(self) -> ModelBook:
        assert self.book is not None
        return self.book

    def profile(self, model: str) -> ModelProfile:
        return self.models.get(model).profile or ModelProfile()

    def slos(self, model: str) -> MonitoringPolicy:
        """The monitoring policy of a model: its risk class's, overridden by its spec (resolved
        once per spec: every batch asks for it)."""
        state = self.models.get(model)
        if state.policy is None or state.policy[0] is not state.profile:
            profile = state.profile or ModelProfile()
            overrides = Overrides(monitoring=profile.monitoring)
            resolved = resolve_policy(self.policies[profile.risk_class], overrides, loosened="floor")
            state.policy = (state.profile, resolved.monitoring)
        return state.policy[1]

    def review(self, model: str) -> ReviewPeriod:
        """The model's open review period (started when the monitor first heard of it)."""
        return self.models.review(model)


async def handle_model_event(event: ModelEvent, deps: MonitorDeps, *, partition: int | None = None) -> None:
    """Fold an event of a model into its state, if this replica owns the model's partition.

    An event of a partition revoked while it waited is left alone: it was not committed, so the
    partition's new owner gets it again.
    """
    if not deps.models.owns(partition):
        logger.debug(
            "event of a partition this replica no longer owns: left to its new owner",
            extra={"model": event.model, "partition": partition},
        )
        return
    if isinstance(event, PredictionLogged):
        await record_predictions(event, deps, partition=partition)
    elif isinstance(event, PredictionsLabeled):
        await record_labeled(event, deps, partition=partition)
    elif isinstance(event, ModelSpecSubmitted | ModelSpecRetired):
        await note_model_spec(event, deps, partition=partition)
    elif isinstance(event, DeploymentChanged):
        await note_deployment_changed(event, deps, partition=partition)
    elif isinstance(event, ModelPromoted):
        await note_model_promoted(event, deps, partition=partition)
    elif isinstance(event, ModelRolledBack):
        await note_model_rolled_back(event, deps, partition=partition)
    else:
        await note_artifact_refused(event, deps, partition=partition)


async def record_predictions(
    event: PredictionLogged, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    """Count a batch in the health windows and the drift windows; redeliveries count once."""
    now = deps.clock()
    model = event.model
    deps.models.get(model, partition)
    fresh = deps.tracker.add_predictions(model, event.predictions, now=now.timestamp())
    if len(fresh) < len(event.predictions):
        logger.info(
            "ignored predictions already counted",
            extra={"model": model, "duplicates": len(event.predictions) - len(fresh)},
        )
    if not fresh:
        return
    # Everything of the batch is counted before the first await (a publish): a checkpoint or a
    # rebalance in between sees the batch whole or not at all.
    deps.models.changed(model)
    by_version: dict[str, list[PredictionRecord]] = defaultdict(list)
    for record in fresh:
        # Shadows see the champion's inputs again; their drift is the champion's.
        if record.route != "shadow" and record.error is None:
            by_version[record.version].append(record)
    policy = deps.slos(model)
    due: list[tuple[VersionWatch, DriftFinding]] = []
    for version, records in by_version.items():
        watch = _watch(model, version, records[0].dataset_version, deps)
        with deps.metrics.drift_check_seconds.time():
            owed = watch.drift_due(policy)
            watch.add(
                [r.features for r in records],
                [r.prediction for r in records],
                policy,
                now,
                traceparents=[r.traceparent for r in records],
            )
            # A window already due before this batch waits for the report cycle to publish it.
            finding = watch.drift_finding(policy, now) if not owed else None
        if finding is not None:
            due.append((watch, finding))
    for watch, finding in due:
        await _settle_drift(watch, finding, event, deps)


async def record_labeled(
    event: PredictionsLabeled, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    """Score predictions ingest joined with their labels: the live metric of the health window of
    the version and route that made each, and the decay window of that version.

    The join is ingest's (durable, however late the label): a label that comes hours after its
    prediction still counts for the version that made it, e.g. a challenger whose canary is still
    being judged. A republished join (same event id) counts once.
    """
    profile = deps.models.get(event.model, partition).profile or ModelProfile()
    scores = deps.tracker.add_labeled(event.model, event.event_id, event.labeled, profile.live_task)
    if not scores:
        return
    for watch in _count_scores(event.model, scores, deps):
        await _settle_decay(watch, event, deps)


def _count_scores(model: str, scores: list[LabelScore], deps: MonitorDeps) -> list[VersionWatch]:
    """Add label scores to their versions' decay windows; returns the windows they made due (a
    window due before them waits for the report cycle to publish it)."""
    if not scores:
        return []
    deps.models.changed(model)
    policy, now = deps.slos(model), deps.clock()
    due: list[VersionWatch] = []
    for score in scores:
        if score.route == "shadow":
            continue
        watch = _watch(model, score.version, None, deps)
        owed = watch.decay_due(policy)
        watch.add_scores([score.score], now)
        if not owed and watch.decay_due(policy):
            due.append(watch)
    return due


async def note_model_spec(event: SpecEvent, deps: MonitorDeps, *, partition: int | None = None) -> None:
    """Learn a model's features, risk class, SLO overrides and KPI; forget a retired model."""
    if isinstance(event, ModelSpecRetired):
        await deps.models.retire(event.model)
        deps.tracker.forget(event.model)
        deps.metrics.model.forget(event.model)
        log_event(logger, "model retired: stopped monitoring it", event)
        return
    spec = event.spec
    state = deps.models.get(event.model, partition)
    previous = state.profile
    profile = ModelProfile(
        risk_class=spec.metadata.risk_class,
        monitoring=spec.spec.monitoring,
        live_task=live_task_of_template(spec.spec.pipeline.template),
        features=tuple(spec.spec.features),
        business_kpi=spec.spec.business_kpi,
        where=tuple(sorted(spec.spec.dataset.where.items())),
    )
    state.profile = profile
    deps.models.put_spec(event.model)
    if previous is not None and (previous.features, previous.where) != (profile.features, profile.where):
        # Versions of the new spec get their references with the new features as they appear.
        state.watches.clear()
    deps.review(event.model)
    await deps.models.save(event.model)


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


async def note_deployment_changed(
    event: DeploymentChanged, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    """Follow where a model's versions are: the review's decision depends on it."""
    challenger = event.challenger or (event.shadows[0] if event.shadows else None) or event.candidate
    deps.models.get(event.model, partition).deployment = Deployment(
        champion=event.champion.version if event.champion else None,
        challenger=challenger.version if challenger else None,
        stage=event.stage,
    )
    deps.models.put_spec(event.model)
    # The drill-down series of routes the table no longer has go; a new champion's holdout is shown.
    routes = (
        {"champion"}
        | ({"challenger"} if event.challenger else set())
        | ({"shadow"} if event.shadows else set())
    )
    deps.metrics.model.keep_routes(event.model, routes)
    if event.model in deps.metrics.model.models():
        deps.metrics.model.show_holdout(event.model, champion_holdout(event.model, deps))


async def note_model_promoted(
    event: ModelPromoted, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    """A new champion answers an owed retrain."""
    deps.models.get(event.model, partition)
    deps.review(event.model).add_promotion()
    await deps.models.save(event.model)


async def note_model_rolled_back(
    event: ModelRolledBack, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    deps.models.get(event.model, partition)
    deps.review(event.model).add_rollback(
        f"rollback v{event.from_version} -> v{event.to_version}: {event.reason}"
    )
    await deps.models.save(event.model)


async def note_artifact_refused(
    event: ModelArtifactRefused, deps: MonitorDeps, *, partition: int | None = None
) -> None:
    deps.models.get(event.model, partition)
    deps.review(event.model).add_incident(f"artifact of v{event.version} refused: {event.reason}")
    await deps.models.save(event.model)


async def report_health(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Publish the health of every version that saw traffic since the last report, its breaches,
    the reviews that are due and the drift and decay verdicts still owed.

    Returns the events published, in order: each version's `ModelHealthReported`, followed by a
    `SloBreached` per SLO it broke (caused by the report); then the `ModelReviewed`s, then the
    owed verdicts. A report that cannot be published puts its window back (it is reported next
    time, from its own start); a breach that cannot be is sent again next cycle. Neither stops
    the others.
    """
    published = await _send_unsent(deps)
    for drained in deps.tracker.take(now):
        summary = drained.summary
        model = summary.key.model
        report = _health_report(summary, now, deps.profile(model))
        with root_span(
            "model health reported",
            evidence=drained.window.evidence,
            attributes=_span_attributes(report, requests=summary.requests, route=summary.key.route),
        ):
            if await _publish_health(report, drained, deps):
                published.append(report)
                published += await _publish_breaches(report, summary, now, deps)
    published += await review_models(now, deps)
    published += await settle_owed_verdicts(now, deps)
    deps.metrics.models_watched.set(len(deps.models.with_specs()))
    return published


async def _publish_health(report: ModelHealthReported, drained: Drained, deps: MonitorDeps) -> bool:
    """Publish a window's report and count it in the review; put the window back if that fails."""
    summary = drained.summary
    model = summary.key.model
    try:
        await deps.publish(report)
    except Exception:
        deps.tracker.restore(drained)
        logger.warning(
            "health report not published: its window is reported next time",
            exc_info=True,
            extra={"model": model, "version": summary.key.version, "route": summary.key.route},
        )
        return False
    deps.review(model).add_health(
        summary.requests,
        summary.errors,
        summary.labelled,
        summary.live_score_sum,
        summary.latency_sum_ms,
        report.business_value,
    )
    _note_for_review(model, deps)
    deps.models.changed(model)
    deps.metrics.model.show(report)
    deps.metrics.model.show_holdout(model, champion_holdout(model, deps))
    return True


def champion_holdout(model: str, deps: MonitorDeps) -> float | None:
    """The champion's live metric as its holdout measured it, when the monitor knows it."""
    champion = deps.models.get(model).deployment.champion
    return None if champion is None else deps.facts.baseline(model, champion, deps.profile(model).live_task)


async def _publish_breaches(
    report: ModelHealthReported, summary: HealthSummary, now: datetime, deps: MonitorDeps
) -> list[Event]:
    """Publish a `SloBreached` (caused by the report) per SLO its window broke."""
    model = summary.key.model
    published: list[Event] = []
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
        deps.metrics.slo_breaches.labels(deps.profile(model).risk_class, violation.slo).inc()
        observed, objective = (slo_value(violation.slo, v) for v in (violation.observed, violation.objective))
        numbers = f"{observed} > {objective}"
        deps.review(model).add_incident(f"SLO {violation.slo} breached by v{summary.key.version}: {numbers}")
        log_event(logger, f"SLO {violation.slo} breached: {numbers}", breach)
        if await _publish_or_keep(breach, deps):
            published.append(breach)
    return published


def _note_for_review(model: str, deps: MonitorDeps) -> None:
    """The current span (a published verdict's) is evidence of the model's next review."""
    deps.review_evidence.setdefault(model, Evidence()).add(current_traceparent())


def _span_attributes(event: Event, **more: str | int | float) -> dict[str, str | int | float]:
    return {
        "modelfleet.model": event.key,
        "modelfleet.event_type": event.event_type,
        "modelfleet.event_id": str(event.event_id),
        **more,
    }


async def _publish_or_keep(event: Event, deps: MonitorDeps) -> bool:
    """Publish a decided event; keep it to send again next cycle if that fails."""
    try:
        await deps.publish(event)
    except Exception:
        deps.unsent.append(event)
        logger.warning(
            "event not published: sent again next cycle",
            exc_info=True,
            extra={"event_type": event.event_type, "event_id": str(event.event_id)},
        )
        return False
    return True


async def _send_unsent(deps: MonitorDeps) -> list[Event]:
    waiting, deps.unsent = deps.unsent, []
    return [event for event in waiting if await _publish_or_keep(event, deps)]


async def review_models(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Publish the review of every owned model whose period is over, and open the next period.

    A review that cannot be published leaves its period open: it is published next cycle.
    """
    published: list[Event] = []
    for model in deps.models.with_specs():
        period = deps.review(model)
        interval = deps.slos(model).review_interval_seconds
        if interval is None or now - period.start < timedelta(seconds=interval):
            continue
        deployment = deps.models.get(model).deployment
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
        try:
            with root_span(
                "model reviewed",
                evidence=deps.review_evidence.get(model, ()),
                attributes=_span_attributes(review, decision=decision),
            ):
                await deps.publish(review)
        except Exception:
            logger.warning(
                "review not published: the period stays open and is reviewed next cycle",
                exc_info=True,
                extra={"model": model},
            )
            continue
        published.append(review)
        deps.metrics.reviews.labels(profile.risk_class, decision).inc()
        log_event(logger, f"model reviewed: {decision} ({reason})", review)
        deps.models.get(model).review = ReviewPeriod(start=now, needs_retrain=period.needs_retrain)
        deps.review_evidence.pop(model, None)
        await deps.models.save(model)
    return published


async def settle_owed_verdicts(now: datetime, deps: MonitorDeps) -> list[Event]:
    """Judge and publish every due window of the owned models: those whose publish failed, and
    those loaded full from the state engine. One model's failure does not stop the others."""
    published: list[Event] = []
    for state in deps.models.loaded():
        if not deps.models.owns(state.partition) or not state.watches:
            continue
        try:
            policy = deps.slos(state.model)
            for version in list(state.watches):
                watch = _watch(state.model, version, None, deps)
                if watch.drift_due(policy):
                    finding = watch.drift_finding(policy, now)
                    if finding is not None:
                        published += await _settle_drift(watch, finding, None, deps)
                if watch.decay_due(policy):
                    published += await _settle_decay(watch, None, deps)
        except Exception:
            logger.exception("owed verdicts of a model not settled", extra={"model": state.model})
    return published


def _watch(model: str, version: str, dataset_version: str | None, deps: MonitorDeps) -> VersionWatch:
    """The version's windows; its reference is looked up until it is found."""
    state = deps.models.get(model)
    watch = state.watches.get(version)
    profile = state.profile or ModelProfile()
    if watch is None:
        watch = state.watches[version] = VersionWatch(model, version, profile.live_task)
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


async def _settle_drift(
    watch: VersionWatch, finding: DriftFinding, cause: Event | None, deps: MonitorDeps
) -> list[Event]:
    """Publish a due input window's drift, then close it; a failed publish leaves it due and saved."""
    model, now = finding.model, finding.window_end
    risk_class = deps.profile(model).risk_class
    published: list[Event] = []
    if finding.drifted:
        event = _drift_event(finding, cause)
        try:
            # The incident starts its own trace, linked to the requests of its window.
            with root_span(
                "drift detected",
                evidence=watch.evidence,
                attributes=_span_attributes(event, version=finding.version, rows=finding.rows),
            ):
                await deps.publish(event)
                _note_for_review(model, deps)
                # In the incident's span: the log line carries its trace id.
                log_event(logger, f"drift detected: {finding.summary()}", event)
        except Exception:
            logger.warning(
                "drift not published: the window stays due and is published next cycle",
                exc_info=True,
                extra={"model": model, "version": finding.version},
            )
            await deps.models.save(model)
            return []
        published.append(event)
        deps.metrics.drift_detected.labels(risk_class).inc()
        deps.review(model).add_drift(finding.share, finding.summary())
    deps.metrics.drift_checks.labels(risk_class).inc()
    watch.close_drift_window(now)
    deps.models.changed(model)
    if published:
        await deps.models.save(model)
    return published


async def _settle_decay(watch: VersionWatch, cause: Event | None, deps: MonitorDeps) -> list[Event]:
    """Judge a due label window against the version's evaluation; publish decay, then close it."""
    model, version, now = watch.model, watch.version, deps.clock()
    baseline = deps.facts.baseline(model, version, watch.live_task)
    finding = watch.decay_finding(baseline, deps.slos(model), now)
    published: list[Event] = []
    if finding is not None and finding.decayed:
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
            causation_id=cause.event_id if cause is not None else None,
        )
        try:
            with root_span(
                "performance degraded",
                attributes=_span_attributes(event, version=version, labelled=finding.labelled),
            ):
                await deps.publish(event)
                _note_for_review(model, deps)
        except Exception:
            logger.warning(
                "decay not published: the label window stays due and is published next cycle",
                exc_info=True,
                extra={"model": model, "version": version},
            )
            await deps.models.save(model)
            return []
        published.append(event)
        deps.metrics.decay_detected.labels(deps.profile(model).risk_class).inc()
        summary = (
            f"v{finding.version} live {finding.metric} {finding.observed:.3g} < {finding.threshold:.3g} "
            f"(evaluated {finding.baseline:.3g}) over {finding.labelled} labels"
        )
        deps.review(model).add_decay(summary)
        log_event(logger, f"performance degraded: {summary}", event)
    watch.close_label_window(now)
    deps.models.changed(model)
    if published:
        await deps.models.save(model)
    return published


def _drift_event(finding: DriftFinding, cause: Event | None) -> DriftDetected:
    # Features without a live value in the window were not compared: they have no statistic.
    compared = [
        r for r in [*finding.features, finding.prediction] if r is not None and not math.isnan(r.statistic)
    ]
    return DriftDetected(
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
        causation_id=cause.event_id if cause is not None else None,
    )


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
