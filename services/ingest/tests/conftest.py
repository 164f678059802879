"""Shared fixtures of the ingest tests: a store and state in tmp_path, a recording publisher."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_contracts import ColumnSpec, DatasetSpec, DatasetSpecSubmitted
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_ingest.feedback_state import SqliteFeedbackState
from modelfleet_ingest.handlers import IngestDeps, SpecWait, record_dataset_spec
from modelfleet_ingest.state import SqliteIngestState
from modelfleet_ingest.store import DatasetStore


class Opened:
    """The paths this process opens `during` a block, seen through Python's audit events (`open`
    is raised by `open()` and `os.open`, whatever library calls them)."""

    def __init__(self) -> None:
        self.recording = False
        self.paths: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.recording and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            self.paths.append(os.path.realpath(os.fsdecode(args[0])))

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        self.paths.clear()
        self.recording = True
        try:
            yield
        finally:
            self.recording = False


_OPENED = Opened()
sys.addaudithook(_OPENED)  # audit hooks cannot be removed: one for the session, switched on by `during`


@pytest.fixture
def opened() -> Opened:
    """Records the paths opened during a block of the test (`with opened.during(): ...`)."""
    return _OPENED


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
def uploads(tmp_path: Path) -> Path:
    """The store's upload area, where batches are written (ingest reads nothing outside the store)."""
    folder = tmp_path / "store" / "uploads"
    folder.mkdir(parents=True)
    return folder


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
