"""The monitor joins its group only on co-partitioned topics, waiting for topics not created yet."""

from __future__ import annotations

import re

import pytest

from modelfleet_common.settings import KafkaSettings
from modelfleet_monitor.rebalance import TopicsMissing, TopicsNotCopartitioned, check_copartitioned

TOPICS = ["fleet.prediction-logs.v1", "fleet.deployments.v1"]


class Brokers:
    """Answers each describe with the next of `answers` (the last one repeats)."""

    def __init__(self, *answers: dict[str, int]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    async def __call__(self, names: list[str]) -> dict[str, int]:
        self.calls.append(names)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def test_topics_of_one_partition_count_pass() -> None:
    counts = await check_copartitioned(
        KafkaSettings(), TOPICS, partition_counts=Brokers(dict.fromkeys(TOPICS, 6))
    )
    assert counts == dict.fromkeys(TOPICS, 6)


async def test_a_topic_another_service_has_not_created_yet_is_waited_for() -> None:
    broker = Brokers({TOPICS[0]: 6, TOPICS[1]: 0}, {TOPICS[0]: 6, TOPICS[1]: 0}, dict.fromkeys(TOPICS, 6))
    counts = await check_copartitioned(KafkaSettings(), TOPICS, wait_seconds=30, partition_counts=broker)
    assert counts == dict.fromkeys(TOPICS, 6)
    assert len(broker.calls) == 3


async def test_a_topic_that_never_appears_is_named_after_the_wait() -> None:
    broker = Brokers({TOPICS[0]: 6, TOPICS[1]: 0})
    with pytest.raises(TopicsMissing, match=r"fleet\.deployments\.v1 do not exist.*modelfleet provision"):
        await check_copartitioned(KafkaSettings(), TOPICS, wait_seconds=0.2, partition_counts=broker)


async def test_different_partition_counts_stop_the_service_at_once() -> None:
    broker = Brokers({TOPICS[0]: 6, TOPICS[1]: 3})
    with pytest.raises(
        TopicsNotCopartitioned, match=re.escape("fleet.deployments.v1: 3, fleet.prediction-logs.v1: 6")
    ):
        await check_copartitioned(KafkaSettings(), TOPICS, wait_seconds=30, partition_counts=broker)
    assert len(broker.calls) == 1
