"""Consumer lag: how many messages each consumer of this replica is behind, per group and topic.

`fleet_consumer_lag{group,topic}` is the sum, over the partitions this replica's consumers are
assigned now, of the partition's end offset minus the consumer's position (the offset of the next
record its handler gets). Each replica exports only its own partitions, so `sum by (group, topic)`
over the replicas is the group's lag, and no extra consumer or group join is needed: the end
offsets come from the running consumers themselves (one ListOffsets request per consumer and
refresh), the positions from their memory.

Position, not the committed offset: a record being handled counts as done here, while Kafka's
own lag (and KEDA's) counts it until its offset is committed, at most one record per consumer
more. A partition whose position is not known yet (just assigned, its offset being reset) is left
out until it is; a consumer with no assignment yet (not started, or between rebalances) owns no
partition and contributes 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry, Gauge

logger = logging.getLogger("modelfleet.lag")

#: The `group` label of a consumer outside any group (serving's readers of the routing tables).
NO_GROUP = "none"

#: Longest wait for a partition's position before it is left out of this refresh.
POSITION_TIMEOUT_SECONDS = 1.0


class OffsetReader(Protocol):
    """What lag needs of a consumer: aiokafka's `AIOKafkaConsumer` has exactly these."""

    def assignment(self) -> set[TopicPartition]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def position(self, partition: TopicPartition) -> int: ...

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...


@dataclass(frozen=True)
class Consumers:
    """The running consumers of one subscriber: its group, topics and aiokafka consumers."""

    group: str | None
    topics: tuple[str, ...]
    consumers: tuple[OffsetReader, ...]


def lag_by_topic(
    end_offsets: Mapping[TopicPartition, int], positions: Mapping[TopicPartition, int | None]
) -> dict[str, int]:
    """Messages behind per topic: end offset minus position, summed over the partitions whose
    position is known (never negative: an end offset read before the position moved)."""
    lag: dict[str, int] = defaultdict(int)
    for partition, end in end_offsets.items():
        position = positions.get(partition)
        if position is not None:
            lag[partition.topic] += max(end - position, 0)
    return dict(lag)


async def measure(
    consumer: OffsetReader, *, position_timeout: float = POSITION_TIMEOUT_SECONDS
) -> dict[str, int]:
    """The lag of one consumer's assignment now, per topic (empty without an assignment)."""
    assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
    if not assigned:
        return {}
    ends = await consumer.end_offsets(assigned)
    positions: dict[TopicPartition, int | None] = {}
    for partition in assigned:
        try:
            positions[partition] = await asyncio.wait_for(
                consumer.position(partition), timeout=position_timeout
            )
        except (TimeoutError, IllegalStateError):
            # Not known yet, or revoked meanwhile: this refresh leaves it out.
            positions[partition] = None
    return lag_by_topic(ends, positions)


class ConsumerLag:
    """`fleet_consumer_lag{group,topic}` of one service, refreshed by `refresh`."""

    def __init__(
        self, registry: CollectorRegistry, *, position_timeout: float = POSITION_TIMEOUT_SECONDS
    ) -> None:
        self.position_timeout = position_timeout
        self.lag = Gauge(
            "fleet_consumer_lag",
            "Messages behind (end offset minus position), summed over the partitions this replica's "
            "consumers own; sum over replicas for a group's lag.",
            ["group", "topic"],
            registry=registry,
        )
        self._exported: set[tuple[str, str]] = set()

    async def refresh(self, subscribers: Iterable[Consumers]) -> dict[tuple[str, str], int]:
        """Measure every running consumer and export the sums; returns them.

        Every topic of a running subscriber is exported (0 while it owns none of its partitions);
        series of subscribers no longer running are removed. A consumer whose offsets cannot be
        read now keeps its previous values until the next refresh.
        """
        totals: dict[tuple[str, str], int] = {}
        kept: set[tuple[str, str]] = set()
        for subscriber in subscribers:
            group = subscriber.group or NO_GROUP
            if not subscriber.consumers:
                continue
            for topic in subscriber.topics:
                totals.setdefault((group, topic), 0)
            for consumer in subscriber.consumers:
                try:
                    measured = await measure(consumer, position_timeout=self.position_timeout)
                except (KafkaError, TimeoutError, OSError) as error:
                    logger.warning(
                        "consumer lag not measured this time",
                        extra={"group": group, "error": repr(error)},
                    )
                    kept.update((group, topic) for topic in subscriber.topics)
                    continue
                for topic, behind in measured.items():
                    totals[(group, topic)] = totals.get((group, topic), 0) + behind
        for key, value in totals.items():
            if key not in kept:
                self.lag.labels(*key).set(value)
        for key in self._exported - totals.keys():
            self.lag.remove(*key)
        self._exported = set(totals)
        return totals


def running_consumers(subscribers: Sequence[object]) -> list[Consumers]:
    """The consumers of faststream Kafka subscribers (`broker.subscribers`), started or not.

    A subscriber with `max_workers` runs several consumers in one group (`consumer_subgroup`);
    one not started (or stopped) has none.
    """
    found: list[Consumers] = []
    for subscriber in subscribers:
        subgroup = list(getattr(subscriber, "consumer_subgroup", None) or [])
        single = getattr(subscriber, "consumer", None)
        consumers = subgroup or ([single] if single is not None else [])
        topics = tuple(getattr(subscriber, "topics", ()) or ())
        found.append(
            Consumers(
                group=getattr(subscriber, "group_id", None),
                topics=tuple(str(getattr(topic, "name", topic)) for topic in topics),
                consumers=tuple(consumers),
            )
        )
    return found


@dataclass(frozen=True)
class Ownership:
    """The partitions of one topic this replica's consumers own now, out of how many."""

    owned: frozenset[int]
    partitions: int

    def owns(self, key: str) -> bool:
        """Whether records keyed `key` land in a partition this replica owns (Kafka's default
        partitioner: murmur2 of the key, the producers' and therefore every topic's of one count)."""
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions in self.owned


def ownership(subscribers: Iterable[Consumers], topic: str) -> Ownership | None:
    """What this replica owns of `topic` in its consumer group; None while no consumer of it
    runs in a group or its partition count is not known yet (then nothing says what is whose)."""
    for subscriber in subscribers:
        if subscriber.group is None or topic not in subscriber.topics or not subscriber.consumers:
            continue
        counts = {len(c.partitions_for_topic(topic) or ()) for c in subscriber.consumers}
        count = max(counts)
        if count == 0:
            return None
        owned = frozenset(
            tp.partition for c in subscriber.consumers for tp in c.assignment() if tp.topic == topic
        )
        return Ownership(owned, count)
    return None
