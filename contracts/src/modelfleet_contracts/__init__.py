"""modelfleet event contracts, v1.

Every event is a frozen pydantic v2 model with the envelope of `Event`. `topics` says which topic
carries which event and how it is keyed; `snapshots` guards the contracts against breaking changes.
"""

from .data import (
    ColumnInfo,
    ColumnSpec,
    DataBatchSubmitted,
    DataProblem,
    DatasetSpec,
    DatasetSpecSubmitted,
    DatasetVersionCreated,
    DatasetVersionRejected,
)
from .envelope import Contract, Event
from .evaluation import GateResult, ModelEvaluated
from .monitoring import (
    DriftDetected,
    FeatureDrift,
    ModelHealthReported,
    ModelReviewed,
    PerformanceDegraded,
    SloBreached,
)
from .policies import GateDefaults, RiskPolicy
from .registry import ModelArtifactRefused, ModelPromoted, ModelRegistered, ModelRolledBack
from .rollout import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    DeploymentChanged,
    RollbackRequested,
    RouteTarget,
)
from .serving import (
    GroundTruthObserved,
    LabeledPrediction,
    PredictionLogged,
    PredictionRecord,
    PredictionsLabeled,
)
from .specs import (
    ModelFleet,
    ModelSpec,
    ModelSpecRetired,
    ModelSpecSubmitted,
    RiskClass,
    SpecEvent,
)
from .training import RetrainRequested, TrainingFailed, TrainingFinished, TrainingStarted

__all__ = [
    "ApprovalGranted",
    "ApprovalRejected",
    "ApprovalRequested",
    "ColumnInfo",
    "ColumnSpec",
    "Contract",
    "DataBatchSubmitted",
    "DataProblem",
    "DatasetSpec",
    "DatasetSpecSubmitted",
    "DatasetVersionCreated",
    "DatasetVersionRejected",
    "DeploymentChanged",
    "DriftDetected",
    "Event",
    "FeatureDrift",
    "GateDefaults",
    "GateResult",
    "GroundTruthObserved",
    "LabeledPrediction",
    "ModelArtifactRefused",
    "ModelEvaluated",
    "ModelFleet",
    "ModelHealthReported",
    "ModelPromoted",
    "ModelRegistered",
    "ModelReviewed",
    "ModelRolledBack",
    "ModelSpec",
    "ModelSpecRetired",
    "ModelSpecSubmitted",
    "PerformanceDegraded",
    "PredictionLogged",
    "PredictionRecord",
    "PredictionsLabeled",
    "RetrainRequested",
    "RiskClass",
    "RiskPolicy",
    "RollbackRequested",
    "RouteTarget",
    "SloBreached",
    "SpecEvent",
    "TrainingFailed",
    "TrainingFinished",
    "TrainingStarted",
]
