"""What the trainer knows about the fleet: each model's current spec and each dataset's versions.

Kept durable in a `KeyValueStore`, because consumed events are not read again after a restart:
a spec submitted last week, waiting for its first dataset version, must still train when that
version arrives today.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelfleet_common.state import KeyValueStore
from modelfleet_contracts import DatasetVersionCreated, ModelSpec, ModelSpecSubmitted
from modelfleet_contracts.specs import DatasetBinding

from .domain import DatasetVersionRef, KnownSpec, LastRetrain, resolve_version

SPECS = "trainer.specs"
VERSIONS = "trainer.dataset_versions"
LATEST_VERSIONS = "trainer.latest_dataset_versions"
AUTOMATIC_RETRAINS = "trainer.automatic_retrains"


class TrainerCatalog:
    """Specs by model; dataset versions by (dataset, version); the latest version by dataset."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store

    def spec(self, model: str) -> KnownSpec | None:
        """The current spec of `model`, or None if it has none (never submitted, or retired)."""
        value = self.store.get(SPECS, model)
        return None if value is None else _known_spec(model, value)

    def specs(self) -> list[KnownSpec]:
        """Every current spec, by model name."""
        return [_known_spec(model, value) for model, value in self.store.items(SPECS)]

    def remember_spec(self, event: ModelSpecSubmitted) -> KnownSpec:
        """Make the submitted spec the model's current one."""
        known = KnownSpec(
            model=event.model,
            revision=event.revision,
            spec=event.spec,
            submitted_at=event.occurred_at,
        )
        self.store.put(
            SPECS,
            event.model,
            {
                "revision": known.revision,
                "spec": known.spec.model_dump(mode="json", by_alias=True),
                "submitted_at": known.submitted_at.isoformat(),
            },
        )
        return known

    def forget_model(self, model: str) -> None:
        """The model is retired: nothing trains it any more."""
        self.store.delete(SPECS, model)

    def record_version(self, event: DatasetVersionCreated) -> DatasetVersionRef:
        """Remember a new dataset version and make it the dataset's latest."""
        ref = DatasetVersionRef(event.dataset, event.version, event.uri, announced_at=event.occurred_at)
        self.store.put(
            VERSIONS,
            _version_key(event.dataset, event.version),
            {"uri": event.uri, "announced_at": event.occurred_at.isoformat()},
        )
        self.store.put(LATEST_VERSIONS, event.dataset, event.version)
        return ref

    def last_automatic_retrain(self, model: str) -> LastRetrain | None:
        """The latest retrain drift or decay asked for, which starts the model's cooldown."""
        value = self.store.get(AUTOMATIC_RETRAINS, model)
        return None if value is None else LastRetrain(datetime.fromisoformat(value["at"]), value["event_id"])

    def record_automatic_retrain(self, model: str, retrain: LastRetrain) -> None:
        self.store.put(
            AUTOMATIC_RETRAINS, model, {"at": retrain.at.isoformat(), "event_id": retrain.event_id}
        )

    def latest_version(self, dataset: str) -> str | None:
        value = self.store.get(LATEST_VERSIONS, dataset)
        return None if value is None else str(value)

    def version(self, dataset: str, version: str) -> DatasetVersionRef | None:
        """A version the trainer has seen announced, or None."""
        value = self.store.get(VERSIONS, _version_key(dataset, version))
        if value is None:
            return None
        announced = value.get("announced_at")
        return DatasetVersionRef(
            dataset, version, str(value["uri"]), datetime.fromisoformat(announced) if announced else None
        )

    def resolve(self, binding: DatasetBinding) -> DatasetVersionRef | None:
        """The known version a binding means now (pinned, or latest), or None if there is none yet."""
        version = resolve_version(binding, self.latest_version(binding.name))
        return None if version is None else self.version(binding.name, version)


def _version_key(dataset: str, version: str) -> str:
    return f"{dataset}@{version}"


def _known_spec(model: str, value: dict[str, Any]) -> KnownSpec:
    return KnownSpec(
        model=model,
        revision=value["revision"],
        spec=ModelSpec.model_validate(value["spec"]),
        submitted_at=datetime.fromisoformat(value["submitted_at"]),
    )
