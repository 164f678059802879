"""ingest: wiring of the broker, subscribers and publishers."""

from modelfleet_common.idempotency import SqliteIdempotencyStore
from modelfleet_common.service import FleetService
from modelfleet_contracts import DataBatchSubmitted, DatasetSpecSubmitted
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_REJECTIONS, DATASET_SPECS, DATASET_VERSIONS

from . import handlers
from .config import IngestSettings
from .state import SqliteIngestState
from .store import DatasetStore

settings = IngestSettings()
service = FleetService("ingest", settings)
deps = handlers.IngestDeps(
    store=DatasetStore(settings.data_dir),
    state=SqliteIngestState(settings.state_dir / "ingest-state.sqlite"),
    handled=SqliteIdempotencyStore(settings.state_dir / "ingest-handled.sqlite"),
    publish=service.publisher(DATASET_VERSIONS, DATASET_REJECTIONS),
    spec_wait=handlers.SpecWait(
        total_seconds=settings.spec_wait_seconds,
        first_interval_seconds=settings.spec_wait_first_interval_seconds,
    ),
)


@service.subscriber(DATASET_SPECS)
async def on_dataset_spec_submitted(event: DatasetSpecSubmitted) -> None:
    await handlers.record_dataset_spec(event, deps)


@service.subscriber(DATA_BATCHES)
async def on_data_batch_submitted(event: DataBatchSubmitted) -> None:
    await handlers.ingest_batch(event, deps)


app = service.app()
