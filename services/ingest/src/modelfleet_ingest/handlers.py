"""Handlers of ingest: one function per consumed event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter
from tenacity import AsyncRetrying, retry_if_result, stop_before_delay, wait_exponential

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_common.state import KeyLocks, StateEngine
from modelfleet_common.telemetry import Evidence, current_traceparent, root_span
from modelfleet_contracts import (
    ColumnInfo,
    DataBatchSubmitted,
    DataProblem,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
    GroundTruthObserved,
    LabeledPrediction,
    ModelSpecRetired,
    ModelSpecSubmitted,
    PredictionLogged,
    PredictionsLabeled,
)
from modelfleet_contracts.data import DATASET_NAME_PATTERN
from modelfleet_contracts.envelope import Event

from .domain import infer_format, reference_profile
from .feedback import ROUTE_RANK, FeedbackBinding, feedback_problems, quarantine_parquet, split_feedback
from .feedback_state import Arrival, Claim, FeedbackState, LabeledOutbox, WaitingPrediction
from .state import DeclaredSpec, IngestState, VersionRecord
from .store import BatchInaccessible, BatchMissing, BatchRefused, DatasetStore
from .validation import (
    APPEND_BASE_INCOMPATIBLE,
    INVALID_DATASET_NAME,
    UNDECLARED_DATASET,
    UNREADABLE,
    UnreadableBatch,
    parse_batch,
    validate_batch,
)

logger = logging.getLogger("modelfleet.ingest")
SERVICE = "ingest"


@dataclass(frozen=True)
class SpecWait:
    """How long a batch waits for the spec of its dataset (bounded exponential backoff)."""

    total_seconds: float = 5.0
    first_interval_seconds: float = 0.1
    max_interval_seconds: float = 1.0


@dataclass(frozen=True)
class FeedbackPolicy:
    """How live feedback waits and when it becomes a version."""

    ttl_seconds: float = 7 * 24 * 3600.0
    max_waiting_per_model: int = 50_000
    min_rows: int = 1


class FeedbackMetrics:
    """Prometheus counters of live feedback (labelled by kind and reason only: bounded sets)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.dropped = Counter(
            "fleet_ingest_feedback_dropped_total",
            "Predictions or labels that stopped waiting for their other half without joining it.",
            ["kind", "reason"],
            registry=registry,
        )
        self.joined = Counter(
            "fleet_ingest_feedback_joined_total",
            "Predictions joined with their label into a feedback row.",
            registry=registry,
        )


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class IngestDeps:
    """What the handlers work with (built by `bootstrap`); tests pass a store and state in tmp_path
    and a recording publisher.

    `locks` hold a dataset around reading its latest version and recording the next one: the state
    engine's locks, shared by the replicas on PostgreSQL. `records_ttl_seconds` is how long applied
    spec events and batch outcomes guard against redeliveries. `state_engine` is the engine `state`,
    `feedback` and `handled` live in, when `bootstrap` opened it (closed at shutdown).
    """

    store: DatasetStore
    state: IngestState
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]
    feedback: FeedbackState
    spec_wait: SpecWait = field(default_factory=SpecWait)
    feedback_policy: FeedbackPolicy = field(default_factory=FeedbackPolicy)
    feedback_metrics: FeedbackMetrics = field(default_factory=FeedbackMetrics)
    clock: Callable[[], datetime] = utc_now
    locks: KeyLocks = field(default_factory=KeyLocks)
    records_ttl_seconds: float = 14 * 86400.0
    state_engine: StateEngine | None = None
    #: The spans each model's joins were made in (the prediction-log flush or the `/feedback`
    #: request that completed them), the newest kept: what the periodic publications, which summarise
    #: many joins, link to. In memory, per replica.
    join_evidence: dict[str, Evidence] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    """Why a batch did not become a version, and where its bytes were kept."""

    problems: list[DataProblem]
    rows_rejected: int | None
    quarantine_uri: str


async def record_dataset_spec(event: DatasetSpecSubmitted, deps: IngestDeps) -> None:
    """Keep the dataset's latest declared spec; a redelivered event changes nothing."""
    if event.spec.metadata.name != event.dataset:
        raise PermanentError(
            f"dataset spec event for {event.dataset!r} carries the spec of {event.spec.metadata.name!r}: "
            "`dataset` must equal `spec.metadata.name`"
        )
    recorded = deps.state.put_spec(
        event.dataset, event.revision, event.spec, str(event.event_id), event.occurred_at.isoformat()
    )
    log_event(logger, "dataset spec recorded" if recorded else "dataset spec already recorded", event)


async def ingest_batch(event: DataBatchSubmitted, deps: IngestDeps) -> None:
    """Validate the batch against its dataset's declared spec and store the result as a version
    (the batch itself, or the latest version plus the batch for `append`), announced once per
    content hash; or reject it with every problem and quarantine its bytes. A batch ingest may not
    read (outside the allowed roots, not a regular file, too large) is rejected unopened, with a
    note in the quarantine instead of its bytes."""
    produced = deps.state.batch_outcome(str(event.event_id))
    if produced is not None:
        # Redelivered after its version was stored: announce it if that was cut short, but never
        # build it again (an `append` would append twice).
        await _announce(event, produced, deps)
        return
    if deps.handled.seen(_rejected_key(event)):
        log_event(logger, "batch already rejected; nothing to do", event)
        return
    declared = await _wait_for_spec(event.dataset, deps) if _valid_name(event.dataset) else None
    # Live feedback appends to the same dataset from a periodic task, and after a rebalance two
    # replicas may hold batches of one dataset: one change of a dataset's latest version at a time
    # across replicas, or one of two appends would be lost from the lineage.
    outcome: VersionRecord | Rejection | None
    async with deps.locks.hold(event.dataset):
        # Looked up again under the lock: another replica may have handled this very event meanwhile.
        outcome = deps.state.batch_outcome(str(event.event_id))
        if outcome is None:
            latest = deps.state.latest_version(event.dataset) if event.mode == "append" and declared else None
            # Reading, validating and writing data is blocking work: keep the event loop (and with
            # it the consumer's heartbeats) free.
            outcome = await asyncio.to_thread(_make_version, event, declared, latest, deps)
            if not isinstance(outcome, Rejection):
                deps.state.record_version(outcome, event_id=str(event.event_id), mode=event.mode)
    if isinstance(outcome, Rejection):
        rejection = outcome
        await once(deps.handled, _rejected_key(event), lambda: _reject(event, rejection, deps))
        return
    await _announce(event, outcome, deps)


async def _wait_for_spec(dataset: str, deps: IngestDeps) -> DeclaredSpec | None:
    """The dataset's spec; `modelfleet apply` publishes it right before the first batch, on another
    topic, so give it a few seconds to arrive before calling the dataset undeclared."""

    async def lookup() -> DeclaredSpec | None:
        return deps.state.spec(dataset)

    wait = deps.spec_wait
    retrying = AsyncRetrying(
        stop=stop_before_delay(wait.total_seconds),
        wait=wait_exponential(multiplier=wait.first_interval_seconds, max=wait.max_interval_seconds),
        retry=retry_if_result(lambda spec: spec is None),
        retry_error_callback=lambda state: None,
    )
    declared: DeclaredSpec | None = await retrying(lookup)
    return declared


def _make_version(
    event: DataBatchSubmitted, declared: DeclaredSpec | None, latest: VersionRecord | None, deps: IngestDeps
) -> VersionRecord | Rejection:
    """Blocking part of `ingest_batch`: read, validate, combine with `latest`, store and profile."""
    read = _read_batch(event, declared, deps)
    if isinstance(read, Rejection):
        return read
    raw, table, spec = read
    store = deps.store
    checked = validate_batch(table, spec.spec.spec)
    if checked.table is None:
        quarantined = store.quarantine(event.dataset, event.uri, raw)
        return Rejection(checked.problems, checked.rows_rejected, quarantined)
    stored = _store_version(event.dataset, checked.table, spec, latest, store)
    if isinstance(stored, list):
        return Rejection(stored, None, store.quarantine(event.dataset, event.uri, raw))
    return stored


def _store_version(
    dataset: str, rows: pa.Table, declared: DeclaredSpec, latest: VersionRecord | None, store: DatasetStore
) -> VersionRecord | list[DataProblem]:
    """Store `rows` (validated and cast) as a version of `dataset`, after the rows of `latest` when
    appending, with its reference profile; or the problems of a `latest` that no longer fits the
    declared spec. Shared by `append` batches and live feedback."""
    if latest is not None:
        base = validate_batch(store.read_version(dataset, latest.version), declared.spec.spec)
        if base.table is None:
            return [_base_problem(latest, declared, problem) for problem in base.problems]
        rows = pa.concat_tables([base.table, rows])
    stored = store.put_version(dataset, rows)
    profile = reference_profile(rows, dataset=dataset, version=stored.version)
    return VersionRecord(
        dataset=dataset,
        version=stored.version,
        uri=stored.uri,
        profile_uri=store.put_profile(dataset, stored.version, profile),
        row_count=rows.num_rows,
        columns=[(column.name, str(column.type)) for column in rows.schema],
        spec_revision=declared.revision,
    )


def _read_batch(
    event: DataBatchSubmitted, declared: DeclaredSpec | None, deps: IngestDeps
) -> tuple[bytes, pa.Table, DeclaredSpec] | Rejection:
    """The batch's bytes and rows with its dataset's spec, or a rejection listing every reason it
    cannot be validated at all (bad name, undeclared dataset, unreadable file)."""
    problems = _undeclared_problems(event.dataset, declared, deps.spec_wait)
    raw: bytes | None = None
    table: pa.Table | None = None
    try:
        raw = deps.store.fetch_batch(event.uri)
        columns = [column.name for column in declared.spec.spec.columns] if declared else []
        table = parse_batch(raw, infer_format(event.uri, event.format), columns)
    except BatchRefused as error:
        # Not opened: the message names the URI and the rule, never a byte of the file.
        problems.append(DataProblem(code=error.refusal.code, message=error.refusal.message))
    except BatchMissing as error:
        problems.append(
            DataProblem(code=UNREADABLE, message=f"{error} (or ingest cannot see it): check the URI")
        )
    except BatchInaccessible as error:
        problems.append(DataProblem(code=UNREADABLE, message=f"{error}: make it a readable file"))
    except (ValueError, UnreadableBatch) as error:
        problems.append(DataProblem(code=UNREADABLE, message=str(error)))
    if problems or raw is None or table is None or declared is None:
        rows = table.num_rows if table is not None else None
        reason = problems[-1].message if problems else ""
        return Rejection(problems, rows, deps.store.quarantine(event.dataset, event.uri, raw, reason))
    return raw, table, declared


def _undeclared_problems(dataset: str, declared: DeclaredSpec | None, wait: SpecWait) -> list[DataProblem]:
    if not _valid_name(dataset):
        message = (
            f"{dataset!r} is not a valid dataset name (lowercase letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit): fix `dataset` and resubmit"
        )
        return [DataProblem(code=INVALID_DATASET_NAME, message=message)]
    if declared is None:
        message = (
            f"dataset {dataset!r} has no declared schema: ingest waited {wait.total_seconds:g}s for its "
            "Dataset spec; apply it (`modelfleet apply <file>`), then resubmit the batch"
        )
        return [DataProblem(code=UNDECLARED_DATASET, message=message)]
    return []


def _base_problem(latest: VersionRecord, declared: DeclaredSpec, problem: DataProblem) -> DataProblem:
    return DataProblem(
        column=problem.column,
        code=APPEND_BASE_INCOMPATIBLE,
        message=(
            f"cannot append to version {latest.version[:12]} of {latest.dataset!r}: it does not fit "
            f"spec revision {declared.revision[:12]} ({problem.code}: {problem.message}). Resubmit "
            "every row with mode `replace`, or restore the previous spec"
        ),
    )


async def _announce(event: DataBatchSubmitted, record: VersionRecord, deps: IngestDeps) -> None:
    async def announce() -> None:
        await deps.publish(
            DatasetVersionCreated(
                producer=SERVICE,
                dataset=record.dataset,
                version=record.version,
                uri=record.uri,
                row_count=record.row_count,
                columns=[ColumnInfo(name=name, dtype=dtype) for name, dtype in record.columns],
                source_uri=event.uri,
                profile_uri=record.profile_uri,
                **event.caused(),
            )
        )
        log_event(logger, "dataset version created", event)

    # Natural key: the same data arriving twice (or redelivered) is one version, announced once.
    if not await once(deps.handled, f"version:{record.dataset}:{record.version}", announce):
        log_event(logger, "dataset version already exists; nothing to do", event)


async def _reject(event: DataBatchSubmitted, rejection: Rejection, deps: IngestDeps) -> None:
    await deps.publish(
        DatasetVersionRejected(
            producer=SERVICE,
            dataset=event.dataset,
            source_uri=event.uri,
            quarantine_uri=rejection.quarantine_uri,
            problems=rejection.problems,
            rows_rejected=rejection.rows_rejected,
            **event.caused(),
        )
    )
    log_event(logger, "batch rejected and quarantined", event)


def _rejected_key(event: DataBatchSubmitted) -> str:
    return f"rejected:{event.event_id}"


def _valid_name(dataset: str) -> bool:
    return re.fullmatch(DATASET_NAME_PATTERN, dataset) is not None


# --- Live feedback: served predictions joined with their labels become rows of their dataset ---


class FeedbackFlushFailed(Exception):
    """Some datasets' feedback could not be materialized this time (their rows stay claimed)."""


@dataclass(frozen=True)
class FeedbackOutcome:
    """What one claim of feedback rows became: a version and/or a rejection of some rows."""

    version: VersionRecord | None
    feedback_uri: str | None
    feedback_rows: int
    rejection: Rejection | None


async def note_model_spec(event: ModelSpecSubmitted | ModelSpecRetired, deps: IngestDeps) -> None:
    """Remember which dataset, target column and row filter a model's feedback rows belong to (and
    join what waited for it); forget a retired model and what waited for it."""
    if isinstance(event, ModelSpecRetired):
        dropped = deps.feedback.forget_model(event.model)
        deps.feedback_metrics.dropped.labels("waiting", "retired").inc(dropped)
        log_event(logger, f"model retired: its feedback is forgotten ({dropped} waiting rows dropped)", event)
        return
    binding = FeedbackBinding.of(event.spec)
    arrival = deps.feedback.put_binding(event.model, binding, event.revision, now=deps.clock().timestamp())
    _count(arrival, "waiting", deps)
    log_event(logger, f"feedback of the model goes to dataset {binding.dataset!r}", event)
    await _publish_joins(event.model, arrival, deps)


async def record_predictions(event: PredictionLogged, deps: IngestDeps) -> None:
    """Keep the batch's successful predictions until their labels arrive (one per request, the
    route that answered rather than a shadow), joining those already labelled."""
    now = deps.clock().timestamp()
    oldest = now - deps.feedback_policy.ttl_seconds
    answered = [record for record in event.predictions if record.error is None]
    fresh = [
        WaitingPrediction(
            request_id=record.request_id,
            route_rank=ROUTE_RANK[record.route],
            version=record.version,
            features=record.features,
            predicted_at=record.predicted_at.timestamp(),
            route=record.route,
            prediction=record.prediction,
        )
        for record in answered
        if record.predicted_at.timestamp() >= oldest
    ]
    # A prediction older than the TTL would be expired at once, and its tombstone may be gone.
    deps.feedback_metrics.dropped.labels("prediction", "expired").inc(len(answered) - len(fresh))
    arrival = deps.feedback.add_predictions(
        event.model, fresh, now=now, max_waiting=deps.feedback_policy.max_waiting_per_model
    )
    _count(arrival, "prediction", deps)
    await _publish_joins(event.model, arrival, deps)


async def record_ground_truth(event: GroundTruthObserved, deps: IngestDeps) -> None:
    """Join the label with its prediction, or keep it until the prediction arrives (serving
    batches its logs, so a label can come first)."""
    now = deps.clock().timestamp()
    observed = event.occurred_at.timestamp()
    if observed < now - deps.feedback_policy.ttl_seconds:
        deps.feedback_metrics.dropped.labels("label", "expired").inc()
        log_event(logger, "label older than the feedback TTL; not joined", event)
        return
    arrival = deps.feedback.add_label(
        event.model,
        event.request_id,
        event.label,
        observed_at=observed,
        now=now,
        max_waiting=deps.feedback_policy.max_waiting_per_model,
    )
    _count(arrival, "label", deps)
    await _publish_joins(event.model, arrival, deps)


async def publish_labeled(deps: IngestDeps, model: str | None = None, *, page: int = 100) -> int:
    """Publish the joins waiting in the outbox (of one model, or every model) as
    `PredictionsLabeled`, each marked published only after its publish returned; returns how many
    were published. A failed publish raises and leaves that join (and the later ones) waiting.

    Every replica runs it periodically, and the handler that joined runs it for its model at once;
    two replicas may publish one join twice, under the same event id (the monitor counts it once).
    """
    published = 0
    while True:
        waiting = deps.feedback.unpublished(model, limit=page)
        for outbox in waiting:
            event = labeled_event(outbox)
            # From a handler it stays in the trace of the event that joined it; the periodic
            # publish starts a trace linked to the model's recent joins.
            with (
                contextlib.nullcontext()
                if model is not None
                else root_span(
                    "predictions labeled",
                    evidence=deps.join_evidence.get(outbox.model, ()),
                    attributes={"modelfleet.model": outbox.model, "modelfleet.event_type": event.event_type},
                )
            ):
                await deps.publish(event)
            deps.feedback.mark_published(outbox.id)
            published += 1
        if len(waiting) < page:
            return published


def labeled_event(outbox: LabeledOutbox) -> PredictionsLabeled:
    """The `PredictionsLabeled` of a join: the same one each time it is published."""
    return PredictionsLabeled(
        producer=SERVICE,
        event_id=outbox.event_id,
        correlation_id=str(outbox.event_id),
        occurred_at=datetime.fromtimestamp(outbox.joined_at, UTC),
        model=outbox.model,
        labeled=[
            LabeledPrediction(
                request_id=str(entry["request_id"]),
                version=str(entry["version"]),
                route=entry["route"],  # type: ignore[arg-type]
                prediction=entry["prediction"],
                predicted_at=datetime.fromtimestamp(float(entry["predicted_at"]), UTC),  # type: ignore[arg-type]
                label=entry["label"],
                observed_at=datetime.fromtimestamp(float(entry["observed_at"]), UTC),  # type: ignore[arg-type]
            )
            for entry in outbox.labeled
        ],
    )


async def _publish_joins(model: str, arrival: Arrival, deps: IngestDeps) -> None:
    """Publish the model's joins at once; when that fails they wait for the periodic publish."""
    if not arrival.joined:
        return
    deps.join_evidence.setdefault(model, Evidence()).add(current_traceparent())
    try:
        await publish_labeled(deps, model)
    except Exception:
        logger.warning(
            "joined labels not published yet: the periodic publish sends them",
            exc_info=True,
            extra={"model": model},
        )


async def materialize_feedback(now: datetime, deps: IngestDeps) -> None:
    """Append every dataset's joined feedback rows to its latest version as a new `feedback`
    version, and quarantine (and announce the rejection of) the rows that break its schema.

    Every replica runs it: each dataset's rows are claimed by one flusher (`FeedbackState.claim`)
    and appended under the dataset's lock. Expired waiting rows, and redelivery guards older than
    their TTL, are dropped first. A dataset that fails (an I/O error, say) keeps its claim for the
    next run and does not hold back the others; `FeedbackFlushFailed` names it.
    """
    policy = deps.feedback_policy
    expired = deps.feedback.expire(now.timestamp() - policy.ttl_seconds)
    deps.feedback_metrics.dropped.labels("prediction", "expired").inc(expired.predictions)
    deps.feedback_metrics.dropped.labels("label", "expired").inc(expired.labels)
    deps.state.prune(now.timestamp() - deps.records_ttl_seconds)
    failed: list[str] = []
    for dataset, pending in sorted(deps.feedback.pending().items()):
        if pending < policy.min_rows:
            continue
        declared = deps.state.spec(dataset)
        if declared is None:
            logger.warning(
                "feedback rows wait: their dataset has no declared spec to validate them against; "
                "apply its Dataset spec (`modelfleet apply`)",
                extra={"dataset": dataset, "rows": pending},
            )
            continue
        try:
            async with deps.locks.hold(dataset):
                claim = deps.feedback.claim(dataset, now=now.timestamp())
                if claim is not None:
                    await _materialize_claim(claim, declared, now, deps)
        except Exception:
            logger.exception("feedback of a dataset could not be materialized", extra={"dataset": dataset})
            failed.append(dataset)
    if failed:
        raise FeedbackFlushFailed(
            f"feedback of datasets {failed} could not be materialized; retried next time"
        )


async def _materialize_claim(claim: Claim, declared: DeclaredSpec, now: datetime, deps: IngestDeps) -> None:
    # Replaying a claim whose version is already recorded must not append its rows a second time.
    produced = deps.state.batch_outcome(claim.flush)
    latest = None if produced is not None else deps.state.latest_version(claim.dataset)
    outcome = await asyncio.to_thread(_build_feedback_version, claim, declared, latest, produced, deps.store)
    if outcome.version is not None and outcome.feedback_uri is not None:
        if produced is None:
            deps.state.record_version(outcome.version, event_id=claim.flush, mode="feedback")
        await _announce_feedback(claim, outcome.version, outcome.feedback_uri, outcome.feedback_rows, deps)
    if outcome.rejection is not None:
        rejection = outcome.rejection
        await once(deps.handled, f"rejected:{claim.flush}", lambda: _reject_feedback(claim, rejection, deps))
    # Only now: a crash before this replays the claim, and every step above is idempotent.
    deps.feedback.settle(claim.flush, now=now.timestamp())


def _build_feedback_version(
    claim: Claim,
    declared: DeclaredSpec,
    latest: VersionRecord | None,
    produced: VersionRecord | None,
    store: DatasetStore,
) -> FeedbackOutcome:
    """Blocking part of `materialize_feedback`: validate the claim's rows, store the valid ones
    appended to `latest` (unless `produced` says that was done), quarantine the others."""
    schema = declared.spec.spec
    split = split_feedback(claim.rows, schema)
    version = produced
    problems = list(split.problems)
    rejected = split.rejected
    if split.accepted is not None and version is None:
        stored = _store_version(claim.dataset, split.accepted, declared, latest, store)
        if isinstance(stored, list):
            # The latest version no longer fits the spec: nothing can be appended to it, so every
            # row is quarantined (as an `append` batch would be) and numbered as in that file.
            rejected = list(claim.rows)
            problems = stored + feedback_problems(rejected, schema)[1]
        else:
            version = stored
    feedback_uri = None
    if version is not None and split.accepted is not None:
        feedback_uri = store.put_feedback(claim.dataset, split.accepted)
    rejection = None
    if rejected:
        source = _feedback_source(claim)
        quarantined = store.quarantine(
            claim.dataset, f"{source}.parquet", quarantine_parquet(rejected, schema)
        )
        rejection = Rejection(problems, len(rejected), quarantined)
    accepted_rows = len(split.accepted_rows) if feedback_uri is not None else 0
    return FeedbackOutcome(version, feedback_uri, accepted_rows, rejection)


async def _announce_feedback(
    claim: Claim, record: VersionRecord, feedback_uri: str, feedback_rows: int, deps: IngestDeps
) -> None:
    models = sorted({row.model for row in claim.rows})

    async def announce() -> None:
        # A root event: no single event caused it, the rows come from many requests and labels.
        with root_span(
            "feedback version created",
            evidence=[parent for model in models for parent in deps.join_evidence.get(model, ())],
            attributes={"modelfleet.dataset": record.dataset, "modelfleet.rows": feedback_rows},
        ):
            await _publish_feedback_version(record, feedback_uri, feedback_rows, deps)
        logger.info(
            "feedback version created",
            extra={"dataset": record.dataset, "version": record.version, "feedback_rows": feedback_rows},
        )

    if not await once(deps.handled, f"version:{record.dataset}:{record.version}", announce):
        logger.info(
            "feedback version already announced", extra={"dataset": record.dataset, "flush": claim.flush}
        )


async def _publish_feedback_version(
    record: VersionRecord, feedback_uri: str, feedback_rows: int, deps: IngestDeps
) -> None:
    await deps.publish(
        DatasetVersionCreated(
            producer=SERVICE,
            dataset=record.dataset,
            version=record.version,
            uri=record.uri,
            row_count=record.row_count,
            columns=[ColumnInfo(name=name, dtype=dtype) for name, dtype in record.columns],
            source_uri=feedback_uri,
            profile_uri=record.profile_uri,
            origin="feedback",
            feedback_rows=feedback_rows,
        )
    )


async def _reject_feedback(claim: Claim, rejection: Rejection, deps: IngestDeps) -> None:
    await deps.publish(
        DatasetVersionRejected(
            producer=SERVICE,
            dataset=claim.dataset,
            source_uri=_feedback_source(claim),
            quarantine_uri=rejection.quarantine_uri,
            problems=rejection.problems,
            rows_rejected=rejection.rows_rejected,
        )
    )
    logger.warning(
        "feedback rows rejected and quarantined",
        extra={
            "dataset": claim.dataset,
            "rows": rejection.rows_rejected,
            "quarantine_uri": rejection.quarantine_uri,
        },
    )


def _feedback_source(claim: Claim) -> str:
    """What a rejection of feedback rows names as its source: the dataset and the claim's rows."""
    return f"feedback://{claim.dataset}/rows-{claim.range}"


def _count(arrival: Arrival, kind: str, deps: IngestDeps) -> None:
    deps.feedback_metrics.joined.inc(arrival.joined)
    deps.feedback_metrics.dropped.labels(kind, "bound").inc(arrival.evicted)
