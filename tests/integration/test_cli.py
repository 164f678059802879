"""`modelfleet` publishes real events that services consume."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import RetrainRequested
from modelfleet_contracts.topics import RETRAIN_REQUESTS

from .fleet import Kafka, ServiceProcess

pytestmark = pytest.mark.integration


async def test_modelfleet_retrain_publishes_a_request_the_trainer_consumes(
    start_service: Callable[..., ServiceProcess], kafka: Kafka, fleet_env: dict[str, str], topic_prefix: str
) -> None:
    trainer = start_service("trainer")
    done = subprocess.run(
        [sys.executable, "-m", "modelfleet_cli.main", "retrain", "churn-se", "--note", "new features"],
        env={**os.environ, **fleet_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    topic = TopicNamer(topic_prefix).topic(RETRAIN_REQUESTS)
    [record] = await kafka.read(topic, until=lambda records: len(records) >= 1)
    request = RetrainRequested.model_validate_json(record.value)
    assert (request.model, request.reason, request.detail) == ("churn-se", "manual", "new features")
    assert request.producer.startswith("cli:")
    trainer.wait_for_metric(
        "fleet_events_handled_total", 1, topic=topic, event_type="model.retrain.requested"
    )
