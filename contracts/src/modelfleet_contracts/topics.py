"""The topic catalog: every topic, the contract(s) it carries, its key and its retention.

This is the one registry of what flows where. Physical names (prefix, version suffix) and
consumer-group names are built from it by the namer in `modelfleet_common.naming`.
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
from .registry import ModelArchived, ModelArtifactRefused, ModelPromoted, ModelRegistered, ModelRolledBack
from .rollout import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    RollbackRequested,
)
from .serving import GroundTruthObserved, PredictionLogged
from .specs import ModelSpecRetired, ModelSpecSubmitted
from .training import RetrainRequested, TrainingFailed, TrainingFinished, TrainingStarted


@dataclass(frozen=True)
class Topic:
    """A logical topic: its name, the events it carries and how it is keyed and retained."""

    name: str
    contracts: tuple[type[Event], ...]
    description: str
    compacted: bool = False
    version: int = 1
    key_field: str = field(init=False)

    def __post_init__(self) -> None:
        keys = {contract.key_field for contract in self.contracts}
        if len(keys) != 1:
            raise ValueError(f"topic {self.name!r} mixes key fields {sorted(keys)}")
        object.__setattr__(self, "key_field", keys.pop())

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


MODEL_SPECS = Topic(
    "model-specs",
    (ModelSpecSubmitted, ModelSpecRetired),
    "Desired state of every model: its latest spec, or its retirement.",
    compacted=True,
)
DATASET_SPECS = Topic(
    "dataset-specs",
    (DatasetSpecSubmitted,),
    "Declared schema of every dataset: the latest one holds.",
    compacted=True,
)
DATA_BATCHES = Topic("data-batches", (DataBatchSubmitted,), "Batches of rows waiting for ingest.")
DATASET_VERSIONS = Topic(
    "dataset-versions", (DatasetVersionCreated,), "Immutable, content-addressed dataset versions."
)
DATASET_REJECTIONS = Topic(
    "dataset-rejections", (DatasetVersionRejected,), "Batches refused by ingest, with reasons."
)
RETRAIN_REQUESTS = Topic("retrain-requests", (RetrainRequested,), "Requests to retrain a model.")
TRAINING_STARTED = Topic("training-started", (TrainingStarted,), "Training runs that began.")
TRAINING_FINISHED = Topic("training-finished", (TrainingFinished,), "Candidates produced by training.")
TRAINING_FAILED = Topic("training-failed", (TrainingFailed,), "Training runs that failed, classified.")
MODEL_EVALUATIONS = Topic("model-evaluations", (ModelEvaluated,), "Gate-by-gate evaluations.")
MODEL_REGISTRATIONS = Topic(
    "model-registrations", (ModelRegistered,), "Registry versions with lineage and signature."
)
MODEL_PROMOTIONS = Topic("model-promotions", (ModelPromoted,), "New champions.")
MODEL_ROLLBACKS = Topic("model-rollbacks", (ModelRolledBack,), "Rollbacks to last known good.")
MODEL_ARCHIVALS = Topic("model-archivals", (ModelArchived,), "Archived versions.")
ARTIFACT_REFUSALS = Topic(
    "artifact-refusals", (ModelArtifactRefused,), "Versions whose files failed verification: never loaded."
)
ROLLBACK_REQUESTS = Topic("rollback-requests", (RollbackRequested,), "Rollbacks asked for by people.")
APPROVAL_REQUESTS = Topic("approval-requests", (ApprovalRequested,), "Versions awaiting approval.")
APPROVALS_GRANTED = Topic("approvals-granted", (ApprovalGranted,), "Signed approvals.")
APPROVALS_REJECTED = Topic("approvals-rejected", (ApprovalRejected,), "Refused or invalid approvals.")
DEPLOYMENTS = Topic(
    "deployments",
    (DeploymentChanged,),
    "Routing table of every model: champion, challenger and weight, shadows.",
    compacted=True,
)
PREDICTION_LOGS = Topic("prediction-logs", (PredictionLogged,), "Batches of served predictions.")
GROUND_TRUTH = Topic("ground-truth", (GroundTruthObserved,), "Labels of earlier predictions.")
DRIFT = Topic("drift", (DriftDetected,), "Data and prediction drift findings.")
PERFORMANCE_DEGRADATIONS = Topic(
    "performance-degradations", (PerformanceDegraded,), "Live performance below its bound."
)
SLO_BREACHES = Topic("slo-breaches", (SloBreached,), "Breached serving SLOs.")
MODEL_HEALTH = Topic("model-health", (ModelHealthReported,), "Periodic live health per version.")
MODEL_REVIEWS = Topic(
    "model-reviews", (ModelReviewed,), "Periodic review reports per model, part of its audit trail."
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
    MODEL_ARCHIVALS,
    ARTIFACT_REFUSALS,
    ROLLBACK_REQUESTS,
    APPROVAL_REQUESTS,
    APPROVALS_GRANTED,
    APPROVALS_REJECTED,
    DEPLOYMENTS,
    PREDICTION_LOGS,
    GROUND_TRUTH,
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
