"""Shared fixtures of the ingest tests: a store and state in tmp_path, a recording publisher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import ColumnSpec, DatasetSpec, DatasetSpecSubmitted
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.feedback_state import SqliteFeedbackState
from modelfleet_ingest.handlers import IngestDeps, SpecWait, record_dataset_spec
from modelfleet_ingest.state import SqliteIngestState
from modelfleet_ingest.store import DatasetStore


class Published(list[Event]):
    """Records what a handler publishes."""

    async def __call__(self, event: Event) -> None:
        self.append(event)


def spec_event(schema: DatasetSchema, dataset: str, revision: str) -> DatasetSpecSubmitted:
    spec = DatasetSpec(metadata=DatasetMetadata(name=dataset), spec=schema)
    return DatasetSpecSubmitted(producer="test", dataset=dataset, revision=revision, spec=spec)


@pytest.fixture
def machines() -> DatasetSchema:
    """The declared schema of the `machines` test dataset (rows like `MACHINES_CSV`)."""
    return DatasetSchema(
        columns=[
            ColumnSpec(name="machine", type="string", categories=["m1", "m2", "m3"]),
            ColumnSpec(name="temperature", type="float", min=-50, max=150),
            ColumnSpec(name="failed", type="bool"),
        ]
    )


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def deps(tmp_path: Path, published: Published) -> IngestDeps:
    return IngestDeps(
        store=DatasetStore(str(tmp_path / "store")),
        state=SqliteIngestState(tmp_path / "state" / "ingest-state.sqlite"),
        handled=InMemoryIdempotencyStore(),
        publish=published,
        feedback=SqliteFeedbackState(tmp_path / "state" / "ingest-feedback.sqlite"),
        # Tiny waits: the tests are about what happens, not how long it takes.
        spec_wait=SpecWait(total_seconds=0.05, first_interval_seconds=0.01),
    )


@pytest.fixture
def declare(deps: IngestDeps, machines: DatasetSchema) -> Callable[..., Awaitable[None]]:
    """Record a dataset spec as if it had arrived on the dataset-specs topic (default: `machines`)."""

    async def declare(
        schema: DatasetSchema | None = None, dataset: str = "machines", revision: str = "r1"
    ) -> None:
        await record_dataset_spec(spec_event(schema or machines, dataset, revision), deps)

    return declare
