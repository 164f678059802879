"""monitor: wiring of the broker, subscribers, publishers and periodic tasks (dependencies: `bootstrap`).

Scaling out: one model's events meet in one replica
---------------------------------------------------
The monitor counts each prediction, and each prediction ingest joined with its label
(`PredictionsLabeled`: the fleet's one join, durable, however late the label), into the model's
windows, and judges those windows against the model's spec and deployment. With N replicas all of these must
reach the replica that holds the model's windows. They do because:

- every topic the monitor folds into a model's state (prediction-logs, labeled-predictions, model-specs,
  deployments, model-promotions, model-rollbacks, artifact-refusals) is keyed by model, and all
  of a fleet's topics are created with one partition count (`FLEET_KAFKA_PARTITIONS`, the
  Strimzi KafkaTopics of `modelfleet topics --strimzi`; `rebalance.check_copartitioned` refuses
  to start otherwise). The same key hashes to the same partition number in each;
- one subscriber consumes all seven topics in one consumer group
  (`<prefix>fleet.monitor.models.v1`) with aiokafka's `RangePartitionAssignor`, which gives each
  member the same range of partition numbers of every topic it subscribes to. (faststream's
  default, round-robin over all topic-partitions, would scatter them.) faststream takes several
  topics in one subscriber and decodes the body into the handler's union type, discriminated by
  `event_type`; the record's real partition comes from the message (`message.raw_message`),
  not from hashing the key again;
- the listener (`rebalance.Handover`) writes the models' windows to the state engine when the
  partitions are revoked and drops the models it lost when the new ones are assigned;
  `book.ModelBook` reads a model from the engine the first time this replica sees it.

Facts that are not a model's (dataset versions, runs, registered versions) are written by
whichever replica reads them, each topic in its own group, and read by any from the state engine.
"""

from functools import cache
from typing import Annotated

from aiokafka import ConsumerRecord
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream.kafka.annotations import KafkaMessage
from pydantic import Field

from modelfleet_common.service import FleetService
from modelfleet_contracts import (
    DatasetVersionCreated,
    ModelRegistered,
    TrainingFinished,
)
from modelfleet_contracts.topics import (
    ARTIFACT_REFUSALS,
    DATASET_VERSIONS,
    DEPLOYMENTS,
    DRIFT,
    LABELED_PREDICTIONS,
    MODEL_HEALTH,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_REVIEWS,
    MODEL_ROLLBACKS,
    MODEL_SPECS,
    PERFORMANCE_DEGRADATIONS,
    PREDICTION_LOGS,
    SLO_BREACHES,
    TRAINING_FINISHED,
)

from . import handlers
from .bootstrap import bootstrap
from .config import MonitorSettings
from .metrics import MonitorMetrics
from .rebalance import Handover, check_copartitioned

settings = MonitorSettings()
service = FleetService("monitor", settings)
publish = service.publisher(DRIFT, PERFORMANCE_DEGRADATIONS, SLO_BREACHES, MODEL_HEALTH, MODEL_REVIEWS)
metrics = MonitorMetrics(service.metrics.registry)

#: The topics keyed by model whose events reach the replica that owns the model.
MODEL_TOPICS = (
    PREDICTION_LOGS,
    LABELED_PREDICTIONS,
    MODEL_SPECS,
    DEPLOYMENTS,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
    ARTIFACT_REFUSALS,
)


@cache
def dependencies() -> handlers.MonitorDeps:
    """Built once, by the startup hook (or by the first event in tests)."""
    return bootstrap(settings, publish=publish, metrics=metrics)


@service.subscriber(
    *MODEL_TOPICS,
    group="models",
    partition_assignment_strategy=(RangePartitionAssignor,),
    listener=Handover(dependencies),
)
async def on_model_event(
    event: Annotated[handlers.ModelEvent, Field(discriminator="event_type")], message: KafkaMessage
) -> None:
    # One record per message (not a batch subscriber): the record Kafka delivered, and its partition.
    record: ConsumerRecord[bytes, bytes] = message.raw_message  # type: ignore[assignment]
    await handlers.handle_model_event(event, dependencies(), partition=record.partition)


@service.subscriber(DATASET_VERSIONS)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.note_dataset_version_created(event, dependencies())


@service.subscriber(TRAINING_FINISHED)
async def on_training_finished(event: TrainingFinished) -> None:
    await handlers.note_training_finished(event, dependencies())


@service.subscriber(MODEL_REGISTRATIONS)
async def on_model_registered(event: ModelRegistered) -> None:
    await handlers.note_model_registered(event, dependencies())


async def report() -> None:
    """Publish the health windows, due reviews and owed verdicts (`handlers.report_health`)."""
    deps = dependencies()
    await handlers.report_health(deps.clock(), deps)


async def checkpoint() -> None:
    """Write the windows changed since the last checkpoint to the state engine."""
    await dependencies().models.checkpoint()


service.every(settings.monitor_report_seconds, report, name="health-report")
service.every(settings.monitor_checkpoint_seconds, checkpoint, name="window-checkpoint")
app = service.app()


@app.on_startup
async def load_dependencies() -> None:
    """Before consuming: a missing or invalid policy file, an unreachable state engine or topics
    of different partition counts stop the service."""
    dependencies()
    await check_copartitioned(settings.kafka, [service.namer.topic(topic) for topic in MODEL_TOPICS])


@app.after_shutdown
async def write_windows() -> None:
    """After the last event was handled: the windows go to the state engine for the next owner."""
    if dependencies.cache_info().currsize:
        await dependencies().models.checkpoint()
