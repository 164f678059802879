"""Handing models over between monitor replicas when their partitions move.

`Handover` is the rebalance listener of the monitor's consumer of the topics keyed by model.
aiokafka's rebalance is eager: every partition is revoked from every member, then the new
assignment is given out, and no member is given a partition before all have returned theirs.
So on revocation a replica writes the windows of its models to the state engine (and owns
nothing until the assignment); on assignment it drops the models of the partitions it lost, and
reads the others' from the engine when it first sees them.

`check_copartitioned` stops the service when those topics have different partition counts: the
join of a model's events rests on one key falling in the same partition number of each. A topic
that does not exist yet is waited for (a fleet's services create the topics they use as they
start, in any order), up to a bound.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from modelfleet_common.kafka import connection_options
from modelfleet_common.settings import KafkaSettings

from .handlers import MonitorDeps

logger = logging.getLogger("modelfleet.monitor")


class TopicsNotCopartitioned(RuntimeError):
    """The topics of one model's events differ in partition count: they cannot meet in one replica."""


class TopicsMissing(RuntimeError):
    """Topics of one model's events do not exist (yet)."""


PartitionCounts = Callable[[list[str]], Awaitable[dict[str, int]]]


class Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Writes the owned models on revocation, drops the lost ones on assignment."""

    def __init__(self, dependencies: Callable[[], MonitorDeps]) -> None:
        self._dependencies = dependencies

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        deps = self._dependencies()
        written = await deps.models.revoke()
        logger.info(
            "partitions revoked: windows written to the state engine",
            extra={"partitions": sorted({tp.partition for tp in revoked}), "models_written": written},
        )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        deps = self._dependencies()
        by_topic: dict[str, set[int]] = defaultdict(set)
        for tp in assigned:
            by_topic[tp.topic].add(tp.partition)
        numbers = set().union(*by_topic.values()) if by_topic else set()
        uneven = {topic: sorted(numbers - mine) for topic, mine in by_topic.items() if numbers - mine}
        if uneven:
            # The range assignor gives every member the same numbers of co-partitioned topics.
            logger.error(
                "this replica was given different partition numbers of the topics of one model: "
                "their events will not meet (is the group's assignor RangePartitionAssignor?)",
                extra={"missing": uneven},
            )
        dropped = deps.models.assign(numbers)
        for model in dropped:
            deps.tracker.forget(model)
        # Their drill-down series go with them: the new owner exports them from its next report.
        owned = {state.model for state in deps.models.loaded()}
        for model in deps.metrics.model.models() - owned:
            deps.metrics.model.forget(model)
        logger.info(
            "partitions assigned",
            extra={"partitions": sorted(numbers), "models_handed_over": len(dropped)},
        )


async def describe_partition_counts(settings: KafkaSettings, names: list[str]) -> dict[str, int]:
    """The partition count of each topic as the brokers describe it (0: no such topic)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {str(topic["topic"]): len(topic["partitions"]) for topic in described}


async def check_copartitioned(
    settings: KafkaSettings,
    topics: Iterable[str],
    *,
    wait_seconds: float = 120.0,
    partition_counts: PartitionCounts | None = None,
) -> dict[str, int]:
    """The partition count of each topic; raises `TopicsNotCopartitioned` when they differ.

    Topics not created yet are waited for up to `wait_seconds` (with backoff, logged), then
    `TopicsMissing` names them.
    """
    names = list(topics)
    describe = partition_counts or (lambda names: describe_partition_counts(settings, names))
    counts: dict[str, int] = {}
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TopicsMissing),
        wait=wait_exponential(multiplier=0.5, max=5.0),
        stop=stop_after_delay(wait_seconds),
        before_sleep=lambda state: logger.warning(
            "waiting for topics to be created before joining the monitor's group",
            extra={"error": str(state.outcome.exception()) if state.outcome else None},
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            counts = await describe(names)
            missing = sorted(name for name in names if counts.get(name, 0) == 0)
            if missing:
                raise TopicsMissing(
                    f"topics {', '.join(missing)} do not exist (waited up to {wait_seconds:.0f} s): "
                    "provision the fleet's topics (`modelfleet provision`, or the KafkaTopic "
                    "resources of `modelfleet topics --strimzi`)"
                )
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        raise TopicsNotCopartitioned(
            f"the monitor joins one model's events by partition number, so these topics need the "
            f"same number of partitions ({listed}); give them one count (FLEET_KAFKA_PARTITIONS "
            f"when provisioned, or their KafkaTopic resources)"
        )
    return counts
