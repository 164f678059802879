"""The CLI reads only topics its Kafka principal may read, and writes only the human requests."""

from __future__ import annotations

from modelfleet_cli.audit import AUDIT_TOPICS
from modelfleet_cli.fleet_state import LIFECYCLE_TOPICS
from modelfleet_contracts import (
    ApprovalGranted,
    DataBatchSubmitted,
    DatasetSpecSubmitted,
    ModelSpecRetired,
    ModelSpecSubmitted,
    RetrainRequested,
    RollbackRequested,
)
from modelfleet_contracts.topics import CLI, HUMAN_REQUESTS, topic_of, topics_consumed_by


def test_every_topic_a_cli_command_reads_is_one_the_cli_principal_may_read() -> None:
    readable = set(topics_consumed_by(CLI))
    for topics in (AUDIT_TOPICS, LIFECYCLE_TOPICS):
        assert set(topics) <= readable, sorted(t.name for t in set(topics) - readable)


def test_every_event_a_cli_command_publishes_goes_to_a_human_request_topic() -> None:
    published = (
        ModelSpecSubmitted,
        ModelSpecRetired,
        DatasetSpecSubmitted,
        DataBatchSubmitted,
        ApprovalGranted,
        RetrainRequested,
        RollbackRequested,
    )
    assert {topic_of(event) for event in published} == set(HUMAN_REQUESTS)
