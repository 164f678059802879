"""The topic catalog: every topic, the contract(s) it carries, its key, its retention and who may
write and read it.

This is the one registry of what flows where. Physical names (prefix, version suffix) and
consumer-group names are built from it by the namer in `modelfleet_common.naming`; the Kafka ACLs
of every principal (`modelfleet acls`, the Strimzi `KafkaUser`s) are derived from its `producers`
and `consumers`, and a service can only declare the publishers and subscribers it lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from .data import (
    DataBatchSubmitted,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
)
from .envelope import Event
from .evaluation import ModelEvaluated
from .monitoring import (
    DriftDetected,
    ModelHealthReported,
    ModelReviewed,
    PerformanceDegraded,
    SloBreached,
)
from .registry import ModelArtifactRefused, ModelPromoted, ModelRegistered, ModelRolledBack
from .rollout import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    RollbackRequested,
)
from .serving import GroundTruthObserved, PredictionLogged, PredictionsLabeled
from .specs import ModelSpecRetired, ModelSpecSubmitted
from .training import RetrainRequested, TrainingFailed, TrainingFinished, TrainingStarted

#: The services of the fleet: each one is a Kafka principal of its own (`User:<name>`).
SERVICES: tuple[str, ...] = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")
#: The human door (`modelfleet`): a principal allowed only the human requests.
CLI = "cli"
PRINCIPALS: tuple[str, ...] = (*SERVICES, CLI)


@dataclass(frozen=True)
class Topic:
    """A logical topic: the events it carries, how it is keyed and retained, who writes and reads it.

    `producers` are the principals allowed to publish to it; `consumers` the ones allowed to read it
    (services in their own consumer groups, the CLI without a group).
    """

    name: str
    contracts: tuple[type[Event], ...]
    description: str
    producers: frozenset[str]
    consumers: frozenset[str]
    compacted: bool = False
    version: int = 1
    key_field: str = field(init=False)

    def __post_init__(self) -> None:
        keys = {contract.key_field for contract in self.contracts}
        if len(keys) != 1:
            raise ValueError(f"topic {self.name!r} mixes key fields {sorted(keys)}")
        object.__setattr__(self, "key_field", keys.pop())
        if not self.producers:
            raise ValueError(f"topic {self.name!r} names no producer")
        unknown = sorted((self.producers | self.consumers) - set(PRINCIPALS))
        if unknown:
            raise ValueError(f"topic {self.name!r} names unknown principals {unknown}")

    @property
    def payload_type(self) -> Any:
        """The type a subscriber declares: the contract, or a union discriminated by `event_type`."""
        if len(self.contracts) == 1:
            return self.contracts[0]
        return Annotated[Union[self.contracts], Field(discriminator="event_type")]  # noqa: UP007

    @cached_property
    def adapter(self) -> TypeAdapter[Any]:
        """Validates raw JSON bytes of this topic into an event."""
        return TypeAdapter(self.payload_type)

    def parse(self, raw: bytes | str) -> Event:
        """Decode and validate one message value; raises `pydantic.ValidationError`."""
        event: Event = self.adapter.validate_json(raw)
        return event


def _principals(*names: str) -> frozenset[str]:
    return frozenset(names)


# Decisions are read by the CLI (status, audit); live traffic (prediction logs, labels) is not.
MODEL_SPECS = Topic(
    "model-specs",
    (ModelSpecSubmitted, ModelSpecRetired),
    "Desired state of every model: its latest spec, or its retirement.",
    producers=_principals(CLI),
    consumers=_principals("ingest", "trainer", "deployer", "monitor", CLI),
    compacted=True,
)
DATASET_SPECS = Topic(
    "dataset-specs",
    (DatasetSpecSubmitted,),
    "Declared schema of every dataset: the latest one holds.",
    producers=_principals(CLI),
    consumers=_principals("ingest", CLI),
    compacted=True,
)
DATA_BATCHES = Topic(
    "data-batches",
    (DataBatchSubmitted,),
    "Batches of rows waiting for ingest.",
    producers=_principals(CLI),
    consumers=_principals("ingest"),
)
DATASET_VERSIONS = Topic(
    "dataset-versions",
    (DatasetVersionCreated,),
    "Immutable, content-addressed dataset versions.",
    producers=_principals("ingest"),
    consumers=_principals("trainer", "monitor", CLI),
)
DATASET_REJECTIONS = Topic(
    "dataset-rejections",
    (DatasetVersionRejected,),
    "Batches refused by ingest, with reasons.",
    producers=_principals("ingest"),
    consumers=_principals(CLI),
)
RETRAIN_REQUESTS = Topic(
    "retrain-requests",
    (RetrainRequested,),
    "Requests to retrain a model.",
    producers=_principals("trainer", CLI),
    consumers=_principals("trainer", CLI),
)
TRAINING_STARTED = Topic(
    "training-started",
    (TrainingStarted,),
    "Training runs that began.",
    producers=_principals("trainer"),
    consumers=_principals(CLI),
)
TRAINING_FINISHED = Topic(
    "training-finished",
    (TrainingFinished,),
    "Candidates produced by training.",
    producers=_principals("trainer"),
    consumers=_principals("evaluator", "monitor", CLI),
)
TRAINING_FAILED = Topic(
    "training-failed",
    (TrainingFailed,),
    "Training runs that failed, classified.",
    producers=_principals("trainer"),
    consumers=_principals(CLI),
)
MODEL_EVALUATIONS = Topic(
    "model-evaluations",
    (ModelEvaluated,),
    "Gate-by-gate evaluations.",
    producers=_principals("evaluator"),
    consumers=_principals("registry", CLI),
)
MODEL_REGISTRATIONS = Topic(
    "model-registrations",
    (ModelRegistered,),
    "Registry versions with lineage and signature.",
    producers=_principals("registry"),
    consumers=_principals("deployer", "monitor", CLI),
)
MODEL_PROMOTIONS = Topic(
    "model-promotions",
    (ModelPromoted,),
    "New champions.",
    producers=_principals("deployer"),
    consumers=_principals("registry", "monitor", CLI),
)
MODEL_ROLLBACKS = Topic(
    "model-rollbacks",
    (ModelRolledBack,),
    "Rollbacks to last known good.",
    producers=_principals("deployer"),
    consumers=_principals("registry", "monitor", CLI),
)
ARTIFACT_REFUSALS = Topic(
    "artifact-refusals",
    (ModelArtifactRefused,),
    "Versions whose files failed verification: never loaded.",
    producers=_principals("serving"),
    consumers=_principals("monitor", CLI),
)
ROLLBACK_REQUESTS = Topic(
    "rollback-requests",
    (RollbackRequested,),
    "Rollbacks asked for by people.",
    producers=_principals(CLI),
    consumers=_principals("deployer", CLI),
)
APPROVAL_REQUESTS = Topic(
    "approval-requests",
    (ApprovalRequested,),
    "Versions awaiting approval.",
    producers=_principals("deployer"),
    consumers=_principals(CLI),
)
APPROVALS_GRANTED = Topic(
    "approvals-granted",
    (ApprovalGranted,),
    "Signed approvals.",
    producers=_principals(CLI),
    consumers=_principals("deployer", CLI),
)
APPROVALS_REJECTED = Topic(
    "approvals-rejected",
    (ApprovalRejected,),
    "Refused or invalid approvals.",
    producers=_principals("deployer"),
    consumers=_principals("deployer", CLI),
)
DEPLOYMENTS = Topic(
    "deployments",
    (DeploymentChanged,),
    "Routing table of every model: champion, challenger and weight, shadows.",
    producers=_principals("deployer"),
    # The deployer reads its own tables back when it rebuilds its state.
    consumers=_principals("deployer", "monitor", "serving", CLI),
    compacted=True,
)
PREDICTION_LOGS = Topic(
    "prediction-logs",
    (PredictionLogged,),
    "Batches of served predictions.",
    producers=_principals("serving"),
    consumers=_principals("ingest", "monitor"),
)
GROUND_TRUTH = Topic(
    "ground-truth",
    (GroundTruthObserved,),
    "Labels of earlier predictions.",
    producers=_principals("serving"),
    consumers=_principals("ingest"),
)
LABELED_PREDICTIONS = Topic(
    "labeled-predictions",
    (PredictionsLabeled,),
    "Predictions joined with their labels, once, by ingest (however late the label): what the "
    "monitor scores.",
    producers=_principals("ingest"),
    consumers=_principals("monitor"),
)
DRIFT = Topic(
    "drift",
    (DriftDetected,),
    "Data and prediction drift findings.",
    producers=_principals("monitor"),
    consumers=_principals("trainer", CLI),
)
PERFORMANCE_DEGRADATIONS = Topic(
    "performance-degradations",
    (PerformanceDegraded,),
    "Live performance below its bound.",
    producers=_principals("monitor"),
    consumers=_principals("trainer", CLI),
)
SLO_BREACHES = Topic(
    "slo-breaches",
    (SloBreached,),
    "Breached serving SLOs.",
    producers=_principals("monitor"),
    consumers=_principals("deployer", CLI),
)
MODEL_HEALTH = Topic(
    "model-health",
    (ModelHealthReported,),
    "Periodic live health per version.",
    producers=_principals("monitor"),
    consumers=_principals("deployer", CLI),
)
MODEL_REVIEWS = Topic(
    "model-reviews",
    (ModelReviewed,),
    "Periodic review reports per model, part of its audit trail.",
    producers=_principals("monitor"),
    consumers=_principals(CLI),
)

ALL_TOPICS: tuple[Topic, ...] = (
    MODEL_SPECS,
    DATASET_SPECS,
    DATA_BATCHES,
    DATASET_VERSIONS,
    DATASET_REJECTIONS,
    RETRAIN_REQUESTS,
    TRAINING_STARTED,
    TRAINING_FINISHED,
    TRAINING_FAILED,
    MODEL_EVALUATIONS,
    MODEL_REGISTRATIONS,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
    ARTIFACT_REFUSALS,
    ROLLBACK_REQUESTS,
    APPROVAL_REQUESTS,
    APPROVALS_GRANTED,
    APPROVALS_REJECTED,
    DEPLOYMENTS,
    PREDICTION_LOGS,
    GROUND_TRUTH,
    LABELED_PREDICTIONS,
    DRIFT,
    PERFORMANCE_DEGRADATIONS,
    SLO_BREACHES,
    MODEL_HEALTH,
    MODEL_REVIEWS,
)

ALL_EVENTS: tuple[type[Event], ...] = tuple(c for t in ALL_TOPICS for c in t.contracts)

_TOPIC_OF_EVENT: dict[type[Event], Topic] = {c: t for t in ALL_TOPICS for c in t.contracts}


def topic_of(event_type: type[Event]) -> Topic:
    """The topic an event class is published to."""
    try:
        return _TOPIC_OF_EVENT[event_type]
    except KeyError:
        raise KeyError(f"{event_type.__name__} is not in the topic catalog") from None


#: The human requests: the only topics the CLI principal may write.
HUMAN_REQUESTS: tuple[Topic, ...] = tuple(t for t in ALL_TOPICS if CLI in t.producers)


def topics_produced_by(principal: str) -> tuple[Topic, ...]:
    """The topics `principal` may publish to, in catalog order."""
    return tuple(t for t in ALL_TOPICS if principal in t.producers)


def topics_consumed_by(principal: str) -> tuple[Topic, ...]:
    """The topics `principal` may read, in catalog order."""
    return tuple(t for t in ALL_TOPICS if principal in t.consumers)
