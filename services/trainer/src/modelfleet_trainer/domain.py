"""Pure rules of the trainer: what a training is, when a spec trains, how failures are classified."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from modelfleet_contracts import DriftDetected, ModelSpec, PerformanceDegraded
from modelfleet_contracts.specs import DatasetBinding, RetrainPolicy

LATEST = "latest"


class PermanentTrainingError(Exception):
    """Training cannot succeed until someone changes the spec or the data: never retried.

    `error_type` names the problem in `TrainingFailed.error_type`; it is the class name unless a
    failure reported by another process is re-raised here under its original name.
    """

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type or type(self).__name__


class UnknownTemplate(PermanentTrainingError):
    """The spec names a template or template version that does not exist."""


class InvalidHyperparameters(PermanentTrainingError):
    """A hyperparameter is unknown, of the wrong type, or out of range."""


class MissingColumns(PermanentTrainingError):
    """Columns the spec names are not in the dataset version."""


class UnsupportedColumnType(PermanentTrainingError):
    """A feature or target column has a type the template cannot learn from."""


class NotEnoughData(PermanentTrainingError):
    """Too few rows (after the row filter), or a target with a single class."""


class UnreadableDataset(PermanentTrainingError):
    """The bound dataset version does not exist at its URI or cannot be read."""


class DatasetNotReady(PermanentTrainingError):
    """The spec's dataset binding resolves to no version the trainer knows of."""


class UnknownModel(PermanentTrainingError):
    """A retrain was requested for a model without a (current) spec."""


class TrainingDataError(PermanentTrainingError):
    """The template's estimator refused the data (e.g. a target of the wrong kind)."""


class TransientTrainingError(Exception):
    """A failure that another try may not have (MLflow, network, a crashed Ray worker)."""

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class KnownSpec:
    """The current spec of one model, as the trainer remembers it."""

    model: str
    revision: str
    spec: ModelSpec
    submitted_at: datetime

    @property
    def binding(self) -> DatasetBinding:
        return self.spec.spec.dataset


@dataclass(frozen=True)
class DatasetVersionRef:
    """One immutable dataset version: its content hash and where it is stored."""

    dataset: str
    version: str
    uri: str
    #: When ingest announced it (unknown for versions recorded before this was kept).
    announced_at: datetime | None = None


@dataclass(frozen=True)
class TrainingJob:
    """One training: a spec revision on one dataset version, and why it was asked for."""

    model: str
    spec_revision: str
    spec: ModelSpec
    data: DatasetVersionRef
    #: Why it trains: `spec`, `new_data`, or a `RetrainRequested.reason` (`manual`, `drift`, ...).
    trigger: str
    correlation_id: str

    @property
    def template(self) -> str:
        return self.spec.spec.pipeline.template

    @property
    def template_version(self) -> str:
        return self.spec.spec.pipeline.version

    @property
    def natural_key(self) -> str:
        """Same model, spec revision and data: the same training, whatever asked for it."""
        return training_key(self.model, self.spec_revision, self.data.version)

    def run_tags(self) -> dict[str, str]:
        """The lineage tags of its MLflow run (`docs/assembly-line.md`)."""
        return {
            "modelfleet.model": self.model,
            "modelfleet.spec_revision": self.spec_revision,
            "modelfleet.dataset": self.data.dataset,
            "modelfleet.dataset_version": self.data.version,
            "modelfleet.template": self.template,
            "modelfleet.template_version": self.template_version,
            "modelfleet.correlation_id": self.correlation_id,
            "modelfleet.trigger": self.trigger,
        }


def training_key(model: str, spec_revision: str, dataset_version: str) -> str:
    """Idempotency key of a spec- or data-triggered training."""
    return f"train:{model}:{spec_revision}:{dataset_version}"


def resolve_version(binding: DatasetBinding, latest: str | None) -> str | None:
    """The dataset version a binding means now: its pinned hash, or the latest known version."""
    if binding.version == LATEST:
        return latest
    return binding.version


def specs_to_train_on(specs: Iterable[KnownSpec], dataset: str, version: str) -> list[KnownSpec]:
    """Specs a new version of `dataset` trains: those following `latest`, and those pinned to it."""
    return [
        known
        for known in specs
        if known.binding.name == dataset and known.binding.version in (LATEST, version)
    ]


def is_stale(known: KnownSpec | None, submitted_at: datetime) -> bool:
    """A submission older than the spec already known is a late redelivery: it must not win."""
    return known is not None and submitted_at < known.submitted_at


@dataclass(frozen=True)
class LastRetrain:
    """The latest automatic retrain of a model: when, and which event asked for it."""

    at: datetime
    event_id: str


@dataclass(frozen=True)
class RetrainVerdict:
    """Whether a drift or decay event retrains the model, and why (or why not)."""

    retrain: bool
    reason: str


def automatic_retrain(
    trigger: DriftDetected | PerformanceDegraded,
    retrain: RetrainPolicy,
    last: LastRetrain | None,
) -> RetrainVerdict:
    """Decide whether a drift or decay event retrains its model.

    `retrain` is the model's effective retraining policy (`modelfleet_common.policies.resolve_policy`):
    it retrains on a trigger only if both the risk class and the spec allow it (a spec cannot
    retrain a model its risk class keeps under human control), with the spec's cooldown, else the
    risk class's. Within the cooldown after an automatic retrain, further events do not retrain: a
    burst of drift windows is one incident. Times are the events' own, so a replay decides the same
    way; the event that caused the last retrain is always allowed again (its request may not have
    been published).
    """
    drift = isinstance(trigger, DriftDetected)
    if not (retrain.on_drift if drift else retrain.on_decay):
        return RetrainVerdict(False, f"retraining on {'drift' if drift else 'decay'} is off for this model")
    if last is not None and last.event_id != str(trigger.event_id):
        cooldown = retrain.cooldown_seconds
        elapsed = (trigger.occurred_at - last.at).total_seconds()
        if cooldown is not None and 0 <= elapsed < cooldown:
            return RetrainVerdict(
                False,
                f"in cooldown: retrained {elapsed:.0f}s ago, the cooldown is {cooldown}s "
                f"(until {(last.at.timestamp() + cooldown):.0f})",
            )
    return RetrainVerdict(True, trigger_detail(trigger))


def trigger_detail(trigger: DriftDetected | PerformanceDegraded) -> str:
    """The numbers behind a drift or decay event, for the retrain request and the audit trail."""
    if isinstance(trigger, PerformanceDegraded):
        return (
            f"v{trigger.version} live {trigger.metric} {trigger.observed:.3g} < {trigger.threshold:.3g} "
            f"(evaluated {trigger.baseline:.3g}) over {trigger.labelled_rows} labels"
        )
    drifted = [
        f"{f.feature} {f.method} {f.statistic:.3g} vs {f.threshold:g}" for f in trigger.features if f.drifted
    ]
    threshold = (
        f" (threshold {trigger.drift_share_threshold:.2f})"
        if trigger.drift_share_threshold is not None
        else ""
    )
    return (
        f"v{trigger.version} drift share {trigger.drift_share:.2f}{threshold} over {trigger.rows} rows: "
        + (", ".join(drifted) or "predictions drifted")
    )
