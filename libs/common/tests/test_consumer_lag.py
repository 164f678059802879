"""`fleet_consumer_lag{group,topic}`: end offsets minus positions of the partitions a replica owns."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import TestKafkaBroker
from prometheus_client import CollectorRegistry

from modelfleet_common.lag import ConsumerLag, Consumers, lag_by_topic, ownership, running_consumers
from modelfleet_common.service import FleetService
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts.topics import MODEL_SPECS

SPECS = "fleet.model-specs.v1"
LOGS = "fleet.prediction-logs.v1"


class FakeConsumer:
    """An aiokafka consumer as far as lag is concerned: an assignment, end offsets, positions."""

    def __init__(
        self,
        ends: dict[TopicPartition, int],
        positions: dict[TopicPartition, int | None],
        *,
        partitions: int = 3,
        broken: bool = False,
    ) -> None:
        self.ends = ends
        self.positions = positions
        self.partitions = partitions
        self.broken = broken

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.broken:
            raise KafkaTimeoutError("no broker")
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, partition: TopicPartition) -> int:
        position = self.positions[partition]
        if position is None:
            await asyncio.sleep(10)  # aiokafka waits while the position is being reset
            raise AssertionError("unreachable: the wait is cut short")
        if position < 0:
            raise IllegalStateError("revoked meanwhile")
        return position

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions))


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["group"], s.labels["topic"]): s.value
        for metric in registry.collect()
        if metric.name == "fleet_consumer_lag"
        for s in metric.samples
    }


def test_lag_is_end_offset_minus_position_summed_per_topic() -> None:
    ends = {TopicPartition(SPECS, 0): 10, TopicPartition(SPECS, 2): 7, TopicPartition(LOGS, 0): 100}
    positions = {TopicPartition(SPECS, 0): 4, TopicPartition(SPECS, 2): 7, TopicPartition(LOGS, 0): 60}
    assert lag_by_topic(ends, positions) == {SPECS: 6, LOGS: 40}


def test_a_partition_without_a_known_position_is_left_out_and_lag_is_never_negative() -> None:
    ends = {TopicPartition(SPECS, 0): 10, TopicPartition(SPECS, 1): 5}
    assert lag_by_topic(ends, {TopicPartition(SPECS, 0): None, TopicPartition(SPECS, 1): 9}) == {SPECS: 0}


async def test_each_replica_exports_the_lag_of_the_partitions_it_owns() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag(registry)
    consumer = FakeConsumer(
        {TopicPartition(SPECS, 0): 10, TopicPartition(SPECS, 1): 3},
        {TopicPartition(SPECS, 0): 8, TopicPartition(SPECS, 1): 0},
    )
    await lag.refresh([Consumers("fleet.deployer.model-specs.v1", (SPECS,), (consumer,))])
    assert samples(registry) == {("fleet.deployer.model-specs.v1", SPECS): 5.0}


async def test_a_subscriber_without_an_assignment_yet_exports_zero_and_one_not_started_nothing() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag(registry)
    waiting = FakeConsumer({}, {})
    await lag.refresh(
        [
            Consumers("fleet.trainer.drift.v1", ("fleet.drift.v1",), (waiting,)),
            Consumers("fleet.trainer.model-specs.v1", (SPECS,), ()),
        ]
    )
    assert samples(registry) == {("fleet.trainer.drift.v1", "fleet.drift.v1"): 0.0}


async def test_a_position_being_reset_is_waited_for_briefly_then_left_out() -> None:
    registry = CollectorRegistry()
    consumer = FakeConsumer(
        {TopicPartition(SPECS, 0): 10, TopicPartition(SPECS, 1): 4, TopicPartition(SPECS, 2): 9},
        {TopicPartition(SPECS, 0): None, TopicPartition(SPECS, 1): 1, TopicPartition(SPECS, 2): -1},
    )
    assert await ConsumerLag(registry, position_timeout=0.01).refresh(
        [Consumers("g", (SPECS,), (consumer,))]
    ) == {("g", SPECS): 3}


async def test_workers_of_one_group_add_up_and_readers_outside_a_group_are_labelled_none() -> None:
    registry = CollectorRegistry()
    one = FakeConsumer({TopicPartition(SPECS, 0): 5}, {TopicPartition(SPECS, 0): 1})
    two = FakeConsumer({TopicPartition(SPECS, 1): 5}, {TopicPartition(SPECS, 1): 2})
    reader = FakeConsumer({TopicPartition(LOGS, 0): 9}, {TopicPartition(LOGS, 0): 9})
    await ConsumerLag(registry).refresh(
        [Consumers("workers", (SPECS,), (one, two)), Consumers(None, (LOGS,), (reader,))]
    )
    assert samples(registry) == {("workers", SPECS): 7.0, ("none", LOGS): 0.0}


async def test_an_unreachable_broker_keeps_the_last_values_and_a_stopped_subscriber_loses_its_series() -> (
    None
):
    registry = CollectorRegistry()
    lag = ConsumerLag(registry)
    consumer = FakeConsumer({TopicPartition(SPECS, 0): 10}, {TopicPartition(SPECS, 0): 4})
    other = FakeConsumer({TopicPartition(LOGS, 0): 3}, {TopicPartition(LOGS, 0): 0})
    await lag.refresh([Consumers("g", (SPECS,), (consumer,)), Consumers("h", (LOGS,), (other,))])
    consumer.broken = True
    consumer.positions[TopicPartition(SPECS, 0)] = 10
    await lag.refresh([Consumers("g", (SPECS,), (consumer,))])
    assert samples(registry) == {("g", SPECS): 6.0}


def test_ownership_is_the_assigned_partitions_of_the_topic_out_of_its_count() -> None:
    consumer = FakeConsumer({TopicPartition(SPECS, 0): 1, TopicPartition(SPECS, 2): 1}, {}, partitions=4)
    owned = ownership([Consumers("g", (SPECS,), (consumer,))], SPECS)
    assert owned is not None
    assert (owned.owned, owned.partitions) == (frozenset({0, 2}), 4)
    # Kafka's default partitioner (murmur2), as aiokafka's producer places a key.
    placed = {
        key: DefaultPartitioner()(key.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) for key in ("a", "churn-se", "m7")
    }
    assert {key: owned.owns(key) for key in placed} == {key: placed[key] in {0, 2} for key in placed}
    assert ownership([Consumers(None, (SPECS,), (consumer,))], SPECS) is None
    assert ownership([Consumers("g", (SPECS,), ())], SPECS) is None


async def test_a_service_exports_its_lag_and_faststreams_metrics_under_the_fleet_prefix() -> None:
    service = FleetService("deployer", ServiceSettings())

    @service.subscriber(MODEL_SPECS)
    async def handle(event: bytes) -> None:
        del event

    # Not started: no consumer, nothing measured, nothing broken.
    assert running_consumers(service.broker.subscribers)[0].consumers == ()
    await service.refresh_lag()
    assert service.ownership(MODEL_SPECS) is None
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(b"{}", SPECS)
        await service.refresh_lag()
    names = {metric.name for metric in service.metrics.registry.collect()}
    assert {"fleet_consumer_lag", "fleet_received_messages", "fleet_received_processed_messages"} <= names
    assert not any(name.startswith("faststream") for name in names)
