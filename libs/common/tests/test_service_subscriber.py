"""`FleetService.subscriber`: one topic in its own group, or several topics in one named group."""

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from modelfleet_common.service import CatalogViolation, FleetService
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts.topics import LABELED_PREDICTIONS, MODEL_EVALUATIONS, MODEL_SPECS, PREDICTION_LOGS


def test_several_topics_share_one_named_group_and_the_options_given() -> None:
    service = FleetService("monitor", ServiceSettings(topic_prefix="t1."))

    @service.subscriber(
        PREDICTION_LOGS,
        LABELED_PREDICTIONS,
        group="models",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    async def handle(event: bytes) -> None:  # pragma: no cover - never called
        del event

    [subscriber] = service.broker.subscribers
    assert [topic.name for topic in subscriber.topics] == [
        "t1.fleet.prediction-logs.v1",
        "t1.fleet.labeled-predictions.v1",
    ]
    assert subscriber.group_id == "t1.fleet.monitor.models.v1"
    assert subscriber._connection_args["partition_assignment_strategy"] == (RangePartitionAssignor,)


def test_several_topics_need_a_group_name_and_every_one_must_be_readable() -> None:
    service = FleetService("monitor", ServiceSettings())
    with pytest.raises(ValueError, match="name of its consumer group"):
        service.subscriber(PREDICTION_LOGS, MODEL_SPECS)
    with pytest.raises(CatalogViolation, match="model-evaluations"):
        service.subscriber(PREDICTION_LOGS, MODEL_EVALUATIONS, group="models")


def test_one_topic_keeps_its_own_group() -> None:
    service = FleetService("monitor", ServiceSettings())

    @service.subscriber(MODEL_SPECS)
    async def handle(event: bytes) -> None:  # pragma: no cover - never called
        del event

    [subscriber] = service.broker.subscribers
    assert subscriber.group_id == "fleet.monitor.model-specs.v1"
