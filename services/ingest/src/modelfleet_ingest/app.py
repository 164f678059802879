"""ingest: wiring of the broker, subscribers and publishers."""

from modelfleet_common.idempotency import SqliteIdempotencyStore
from modelfleet_common.service import FleetService
from modelfleet_contracts import DataBatchSubmitted
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_REJECTIONS, DATASET_VERSIONS

from . import handlers
from .config import IngestSettings
from .store import LocalDatasetStore

settings = IngestSettings()
service = FleetService("ingest", settings)
deps = handlers.IngestDeps(
    store=LocalDatasetStore(settings.data_dir),
    handled=SqliteIdempotencyStore(settings.state_dir / "ingest-handled.sqlite"),
    publish=service.publisher(DATASET_VERSIONS, DATASET_REJECTIONS),
)


@service.subscriber(DATA_BATCHES)
async def on_data_batch_submitted(event: DataBatchSubmitted) -> None:
    await handlers.ingest_batch(event, deps)


app = service.app()
