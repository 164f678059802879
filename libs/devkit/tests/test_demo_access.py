"""The demo reads Kafka as the CLI's principal: only topics that principal may read."""

from __future__ import annotations

from modelfleet_contracts.topics import CLI, topics_consumed_by
from modelfleet_devkit.demo import DEMO_TOPICS


def test_every_topic_the_demo_reads_is_one_the_cli_principal_may_read() -> None:
    readable = set(topics_consumed_by(CLI))
    assert set(DEMO_TOPICS) <= readable, sorted(t.name for t in set(DEMO_TOPICS) - readable)
