"""Rebuild the deployer's local state from the compacted topics, before it consumes anything.

The local key-value store is a cache. The source of truth is two compacted topics keyed by model:
`deployments` (the latest `DeploymentChanged`, which carries the durable rollout state, see
`rollout`) and `model-specs` (the latest spec, whose risk class and overrides make the policy).
A deployer that lost its volume would otherwise forget every champion, last known good version
and pending approval, and treat the next registered version as a model's first.

Only models missing from the store are rebuilt by default: a stored state is at least as fresh
as the topic (events are published before the state is stored) and still holds the step counters
and the ids of recently applied inputs, which the topic does not carry. `mode="all"` replaces
every stored state anyway, for a store known to be stale (e.g. restored from an old backup).

Revisions follow the one rule of `modelfleet_common.revisions`: per model, the first table in the
log is taken, then only revision +1. A table that skips ahead (a forged revision +1000) is ignored
with a warning and counted, so the deployer continues from its own last table. Either way the
deployer continues from the revision it rebuilt (or stored), so its next table is exactly the +1
serving waits for. A store older than the topic (a backup) publishes revisions serving has seen
already, which it ignores as stale until the deployer passes its revision: use `mode="all"` then.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from modelfleet_common.consumer import PermanentError
from modelfleet_common.revisions import check_revision, is_accepted
from modelfleet_contracts import DeploymentChanged, ModelSpecRetired, ModelSpecSubmitted
from modelfleet_contracts.topics import DEPLOYMENTS, MODEL_SPECS, Topic

from .handlers import ROLLOUTS, SPECS, DeployerDeps, policy_of, submitted_spec_record
from .metrics import STAGES, stage_record
from .rollout import ModelRollout, rollout_from_table

logger = logging.getLogger("modelfleet.deployer")

#: Reads every message value of a (logical) topic from its beginning to its end now.
SnapshotReader = Callable[[Topic], Awaitable[list[bytes]]]

RebuildMode = Literal["missing", "all"]


@dataclass(frozen=True)
class RebuiltState:
    """Which models got their rollout state and their spec back from the topics."""

    rollouts: tuple[str, ...]
    specs: tuple[str, ...]
    #: Specs on the topic whose rollout makes no sense (the deployer refused them when they came).
    refused_specs: tuple[str, ...] = ()
    #: Messages that are not valid events of their topic (the dead-letter topic's business).
    malformed: int = 0
    #: Tables that skipped ahead of their model's last revision (ignored), by model.
    jumped_tables: tuple[str, ...] = ()


class RebuildMetrics:
    """Tables the rebuild ignored, by reason (`stale` or `jump`): bounded labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ignored = Counter(
            "fleet_deployer_rebuild_tables_ignored",
            "DeploymentChanged the rebuild did not take: stale (not newer) or jump (not last + 1).",
            ["reason"],
            registry=registry,
        )


@dataclass(frozen=True)
class LatestTables:
    """What the deployments topic says per model, read by the revision rule."""

    #: Per model, the last table of its +1 chain.
    tables: dict[str, DeploymentChanged]
    malformed: int = 0
    #: Tables not newer than their model's last one (redeliveries, records the cleaner kept).
    stale: int = 0
    #: Tables more than one revision ahead: ignored, never the deployer's next table.
    jumped: tuple[DeploymentChanged, ...] = ()


def latest_tables(values: Iterable[bytes]) -> LatestTables:
    """Per model, the first table in the log, then each table of exactly the next revision.

    A compacted topic keeps older records until the log cleaner runs, so several may be present,
    or only the latest: the first is taken at any revision (see `modelfleet_common.revisions`).
    """
    tables: dict[str, DeploymentChanged] = {}
    malformed = stale = 0
    jumped: list[DeploymentChanged] = []
    for value in values:
        try:
            event = DEPLOYMENTS.parse(value)
        except ValidationError:
            malformed += 1
            continue
        assert isinstance(event, DeploymentChanged)
        current = tables.get(event.model)
        check = check_revision(None if current is None else current.revision, event.revision)
        if is_accepted(check):
            tables[event.model] = event
        elif check == "stale":
            stale += 1
        else:
            jumped.append(event)
    return LatestTables(tables, malformed, stale, tuple(jumped))


def latest_specs(values: Iterable[bytes]) -> tuple[dict[str, ModelSpecSubmitted | ModelSpecRetired], int]:
    """The latest spec event of each model (in log order), and how many messages were malformed.

    One model's events share a key, hence a partition, so log order is the order they happened.
    """
    specs: dict[str, ModelSpecSubmitted | ModelSpecRetired] = {}
    malformed = 0
    for value in values:
        try:
            event = MODEL_SPECS.parse(value)
        except ValidationError:
            malformed += 1
            continue
        assert isinstance(event, ModelSpecSubmitted | ModelSpecRetired)
        specs[event.model] = event
    return specs, malformed


async def rebuild_state(
    deps: DeployerDeps,
    read_snapshot: SnapshotReader,
    *,
    mode: RebuildMode = "missing",
    metrics: RebuildMetrics | None = None,
) -> RebuiltState:
    """Seed the store with the rollout state and spec of every model it lacks (all, with `"all"`).

    A retired model's spec is not remembered (retirement forgets it), but its retired rollout
    state is, so its passing versions stay known. Must run before the deployer consumes events.
    """
    latest = latest_tables(await read_snapshot(DEPLOYMENTS))
    tables, bad_tables = latest.tables, latest.malformed
    for jumped in latest.jumped:
        logger.warning(
            "routing table ignored: revision %d of %s skips ahead of the table before it in the "
            "deployments topic; the deployer continues from its own last table",
            jumped.revision,
            jumped.model,
            extra={
                "model": jumped.model,
                "revision": jumped.revision,
                "event_id": str(jumped.event_id),
                "producer": jumped.producer,
            },
        )
    if metrics is not None:
        metrics.ignored.labels("stale").inc(latest.stale)
        metrics.ignored.labels("jump").inc(len(latest.jumped))
    specs, bad_specs = latest_specs(await read_snapshot(MODEL_SPECS))
    staged = {model for model, _ in deps.state.items(STAGES)}
    stored_rollouts: set[str] = set()
    unstaged: list[tuple[str, dict[str, object]]] = []
    for model, value in deps.state.items(ROLLOUTS):
        stored_rollouts.add(model)
        if model not in staged:
            # Stored before the stage records existed: the metrics read those.
            unstaged.append((model, stage_record(ModelRollout.from_json(value))))
    if unstaged:
        deps.state.put_many(STAGES, unstaged)
    stored_specs = {model for model, _ in deps.state.items(SPECS)}

    rebuilt_rollouts: list[str] = []
    for model, table in sorted(tables.items()):
        if mode == "missing" and model in stored_rollouts:
            continue
        rollout = rollout_from_table(table)
        deps.state.put(ROLLOUTS, model, rollout.to_json())
        deps.state.put(STAGES, model, stage_record(rollout))
        rebuilt_rollouts.append(model)

    rebuilt_specs: list[str] = []
    refused: list[str] = []
    for model, event in sorted(specs.items()):
        if mode == "missing" and model in stored_specs:
            continue
        if isinstance(event, ModelSpecRetired):
            # Retirement forgets the spec; a stale store may still remember it.
            deps.state.delete(SPECS, model)
            continue
        record = submitted_spec_record(event)
        try:
            policy_of(deps, model, record)
        except PermanentError as error:
            # Refused when it arrived too; the model keeps the safe default until a valid spec.
            logger.warning("spec not rebuilt: %s", error, extra={"model": model, "revision": event.revision})
            refused.append(model)
            continue
        deps.state.put(SPECS, model, record)
        rebuilt_specs.append(model)

    rebuilt = RebuiltState(
        tuple(rebuilt_rollouts),
        tuple(rebuilt_specs),
        tuple(refused),
        bad_tables + bad_specs,
        tuple(event.model for event in latest.jumped),
    )
    logger.info(
        "rebuilt the rollout state of %d and the spec of %d models from the compacted topics",
        len(rebuilt.rollouts),
        len(rebuilt.specs),
        extra={
            "mode": mode,
            "rebuilt_rollouts": list(rebuilt.rollouts),
            "rebuilt_specs": list(rebuilt.specs),
            "kept_rollouts": len(stored_rollouts & tables.keys()) if mode == "missing" else 0,
            "refused_specs": list(rebuilt.refused_specs),
            "malformed_messages": rebuilt.malformed,
        },
    )
    return rebuilt
