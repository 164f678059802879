"""Handlers of ingest: one function per consumed event."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pyarrow as pa
from tenacity import AsyncRetrying, retry_if_result, stop_before_delay, wait_exponential

from modelfleet_common.consumer import PermanentError
from modelfleet_common.idempotency import IdempotencyStore, once
from modelfleet_common.logs import log_event
from modelfleet_contracts import (
    ColumnInfo,
    DataBatchSubmitted,
    DataProblem,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
)
from modelfleet_contracts.data import DATASET_NAME_PATTERN
from modelfleet_contracts.envelope import Event

from .domain import infer_format, reference_profile
from .state import DeclaredSpec, IngestState, VersionRecord
from .store import BatchInaccessible, BatchMissing, DatasetStore
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


@dataclass
class IngestDeps:
    """What the handlers work with; tests pass a store and state in tmp_path and a recording publisher."""

    store: DatasetStore
    state: IngestState
    handled: IdempotencyStore
    publish: Callable[[Event], Awaitable[None]]
    spec_wait: SpecWait = field(default_factory=SpecWait)


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
    content hash; or reject it with every problem and quarantine its bytes."""
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
    latest = deps.state.latest_version(event.dataset) if event.mode == "append" and declared else None
    # Reading, validating and writing data is blocking work: keep the event loop (and with it the
    # consumer's heartbeats) free.
    outcome = await asyncio.to_thread(_make_version, event, declared, latest, deps)
    if isinstance(outcome, Rejection):
        rejection = outcome
        await once(deps.handled, _rejected_key(event), lambda: _reject(event, rejection, deps))
        return
    deps.state.record_version(outcome, event_id=str(event.event_id), mode=event.mode)
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
    rows = checked.table
    if latest is not None:
        base = validate_batch(store.read_version(event.dataset, latest.version), spec.spec.spec)
        if base.table is None:
            problems = [_base_problem(latest, spec, problem) for problem in base.problems]
            return Rejection(problems, None, store.quarantine(event.dataset, event.uri, raw))
        rows = pa.concat_tables([base.table, rows])

    stored = store.put_version(event.dataset, rows)
    profile = reference_profile(rows, dataset=event.dataset, version=stored.version)
    return VersionRecord(
        dataset=event.dataset,
        version=stored.version,
        uri=stored.uri,
        profile_uri=store.put_profile(event.dataset, stored.version, profile),
        row_count=rows.num_rows,
        columns=[(column.name, str(column.type)) for column in rows.schema],
        spec_revision=spec.revision,
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
