"""Shared fixtures of the ingest tests: a store and state in tmp_path, a recording publisher, and
state engines of one ingest state for the tests of replicas: SQLite, and PostgreSQL when one is
there: `FLEET_TEST_POSTGRES_URL` (a role that may create schemas), else the local server of
`make postgres` (under `FLEET_LOCAL_HOME`, default `.local`), as its superuser. Each test gets a
schema of its own, dropped afterwards; without a server those cases are skipped."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelfleet_common.idempotency import SqlIdempotencyStore
from modelfleet_common.postgres_roles import SUPERUSER, state_url
from modelfleet_common.settings import StateSettings
from modelfleet_common.state import StateEngine
from modelfleet_contracts import ColumnSpec, DatasetSpec, DatasetSpecSubmitted
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_devkit import postgres as local_postgres
from modelfleet_ingest.feedback_state import SqlFeedbackState
from modelfleet_ingest.handlers import IngestDeps, SpecWait, record_dataset_spec
from modelfleet_ingest.state import SqlIngestState
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


#: A PostgreSQL server for the state tests (e.g. postgresql+psycopg://postgres:pw@127.0.0.1:5432/modelfleet).
POSTGRES_URL_ENV = "FLEET_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parents[3]


def postgres_url() -> str | None:
    """A PostgreSQL whose role may create schemas: the variable's, or the local server's superuser."""
    if url := os.environ.get(POSTGRES_URL_ENV):
        return url
    home = Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local"))
    if local_postgres.endpoint(home) is None:
        return None
    password = local_postgres.password_file(home, SUPERUSER).read_text(encoding="utf-8").strip()
    url = sa.make_url(state_url(SUPERUSER, local_postgres.HOST, local_postgres.server_port(home)))
    return url.set(password=password).render_as_string(hide_password=False)


@dataclass
class Engines:
    """State engines of one ingest state. `open()` is another replica's engine on the same state:
    on PostgreSQL a new engine on the same schema (its locks are the server's, shared); on SQLite,
    the embedded engine of one replica, a new engine on the same file (its locks are its own)."""

    kind: str
    _open: Callable[[], StateEngine]
    opened: list[StateEngine] = field(default_factory=list)

    def open(self) -> StateEngine:
        engine = self._open()
        self.opened.append(engine)
        return engine

    @property
    def shared_locks(self) -> bool:
        """Whether engines from separate `open()` calls share their locks (replicas can)."""
        return self.kind == "postgresql"


@pytest.fixture(params=["sqlite", "postgresql"])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engines]:
    """One ingest state, on each engine a service can keep it in."""
    if request.param == "sqlite":
        path = tmp_path / "state" / "ingest-state.sqlite"
        engines = Engines("sqlite", lambda: StateEngine.sqlite(path, scope="ingest"))
        yield engines
        for engine in engines.opened:
            engine.close()
        return
    url = postgres_url()
    if not url:
        pytest.skip(f"no PostgreSQL for the state tests: `make postgres`, or set {POSTGRES_URL_ENV}")
    schema = f"ingest_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    settings = StateSettings(url=url, schema_name=schema)
    engines = Engines("postgresql", lambda: StateEngine.open(settings, service="ingest", state_dir=tmp_path))
    try:
        yield engines
    finally:
        for engine in engines.opened:
            engine.close()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StateEngine]:
    """The embedded state engine of one replica, in tmp_path."""
    engine = StateEngine.sqlite(tmp_path / "state" / "ingest-state.sqlite", scope="ingest")
    yield engine
    engine.close()


def deps_on(
    engine: StateEngine, store: DatasetStore, publish: Callable[[Event], Awaitable[None]]
) -> IngestDeps:
    """The handlers' dependencies of one replica on `engine` and `store`."""
    return IngestDeps(
        store=store,
        state=SqlIngestState(engine),
        handled=SqlIdempotencyStore(engine, ttl_seconds=14 * 86400.0),
        publish=publish,
        feedback=SqlFeedbackState(engine),
        # Tiny waits: the tests are about what happens, not how long it takes.
        spec_wait=SpecWait(total_seconds=0.05, first_interval_seconds=0.01),
        locks=engine.locks,
    )


@pytest.fixture
def deps(tmp_path: Path, published: Published, engine: StateEngine) -> IngestDeps:
    return deps_on(engine, DatasetStore(str(tmp_path / "store")), published)


@pytest.fixture
def declare(deps: IngestDeps, machines: DatasetSchema) -> Callable[..., Awaitable[None]]:
    """Record a dataset spec as if it had arrived on the dataset-specs topic (default: `machines`)."""

    async def declare(
        schema: DatasetSchema | None = None, dataset: str = "machines", revision: str = "r1"
    ) -> None:
        await record_dataset_spec(spec_event(schema or machines, dataset, revision), deps)

    return declare
