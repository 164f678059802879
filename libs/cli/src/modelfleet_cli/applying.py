"""`modelfleet apply`: diff declared documents against the fleet's desired state, then publish.

Like `kubectl apply`, each document is `created`, `configured` (changed) or `unchanged`; only
the first two are published. A dataset's declared `source` is submitted as its first batch
right after its spec, so ingest validates it against that spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelfleet_contracts import DataBatchSubmitted, DatasetSpecSubmitted, ModelSpecSubmitted
from modelfleet_contracts.envelope import Event

from .fleet_state import DesiredState
from .manifests import Manifest

Change = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True)
class PlannedChange:
    """One line of the plan: what, which, and the events that make it so."""

    kind: str
    name: str
    change: Change
    revision: str
    origin: str
    events: tuple[Event, ...]


def plan(manifest: Manifest, state: DesiredState, producer: str) -> list[PlannedChange]:
    """The changes applying `manifest` makes to `state`: datasets first, then models."""
    changes: list[PlannedChange] = []
    for dataset in manifest.datasets:
        name = dataset.spec.metadata.name
        current = state.datasets.get(name)
        change: Change = (
            "created"
            if current is None
            else "unchanged"
            if current.revision == dataset.revision
            else "configured"
        )
        events: list[Event] = []
        if change != "unchanged":
            submitted = DatasetSpecSubmitted(
                producer=producer, dataset=name, revision=dataset.revision, spec=dataset.spec
            )
            events.append(submitted)
            if dataset.source_uri:
                events.append(
                    DataBatchSubmitted(
                        producer=producer, dataset=name, uri=dataset.source_uri, **submitted.caused()
                    )
                )
        changes.append(
            PlannedChange("Dataset", name, change, dataset.revision, dataset.file.name, tuple(events))
        )
    for model in manifest.models:
        name = model.spec.metadata.name
        current_revision = state.model_revision(name)
        change = (
            "created"
            if name not in state.models
            else "unchanged"
            if current_revision == model.revision
            else "configured"
        )
        events = []
        if change != "unchanged":
            events.append(
                ModelSpecSubmitted(producer=producer, model=name, revision=model.revision, spec=model.spec)
            )
        changes.append(PlannedChange("ModelSpec", name, change, model.revision, model.origin, tuple(events)))
    return changes
