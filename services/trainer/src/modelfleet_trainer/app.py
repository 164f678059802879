"""trainer: wiring of the broker, subscribers and publishers."""

import functools

from modelfleet_common.idempotency import SqliteIdempotencyStore
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.policies import load_policies
from modelfleet_common.service import FleetService
from modelfleet_common.state import SqliteKeyValueStore
from modelfleet_contracts import (
    DatasetVersionCreated,
    DriftDetected,
    PerformanceDegraded,
    RetrainRequested,
    SpecEvent,
)
from modelfleet_contracts.topics import (
    DATASET_VERSIONS,
    DRIFT,
    MODEL_SPECS,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
    TRAINING_FAILED,
    TRAINING_FINISHED,
    TRAINING_STARTED,
)

from . import handlers
from .catalog import TrainerCatalog
from .config import TrainerSettings
from .coordinator import TrainingCoordinator
from .provenance import current_provenance
from .runner import InProcessRunner, RayRunner, TrainingRunner
from .task import TaskConfig

settings = TrainerSettings()
# Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
use_mlflow_credentials(settings)
service = FleetService("trainer", settings)
# Declared at import so the AsyncAPI document shows what trainer produces.
publish = service.publisher(TRAINING_STARTED, TRAINING_FINISHED, TRAINING_FAILED, RETRAIN_REQUESTS)


def _runner() -> TrainingRunner:
    config = TaskConfig(
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        dataset_cache_size=settings.dataset_cache_size,
    )
    provenance = current_provenance(settings.code_version)
    if settings.training_runner == "in_process":
        return InProcessRunner(config, provenance)
    return RayRunner(config, provenance, address=settings.ray_address, num_cpus=settings.ray_num_cpus)


@functools.cache
def dependencies() -> handlers.TrainerDeps:
    """Built on first use, not at import: importing the app (e.g. for its AsyncAPI document)
    must not open state files."""
    return handlers.TrainerDeps(
        catalog=TrainerCatalog(SqliteKeyValueStore(settings.state_dir / "trainer-state.sqlite")),
        handled=SqliteIdempotencyStore(settings.state_dir / "trainer-handled.sqlite"),
        coordinator=TrainingCoordinator(
            runner=_runner(),
            publish=publish,
            max_concurrent=settings.max_concurrent_trainings,
            max_attempts=settings.max_training_attempts,
            backoff_seconds=settings.training_backoff_seconds,
        ),
        policies=load_policies(settings.policy_dir),
        data_wait_seconds=settings.retrain_data_wait_seconds,
    )


# Several partitions at once, and time for the trainings one event triggers before Kafka
# considers the consumer gone.
consumer_options = {
    "max_workers": settings.consumer_workers,
    "max_poll_interval_ms": settings.max_poll_interval_seconds * 1000,
}


@service.subscriber(MODEL_SPECS, **consumer_options)
async def on_model_spec(event: SpecEvent) -> None:
    await handlers.apply_model_spec(event, dependencies())


@service.subscriber(DATASET_VERSIONS, **consumer_options)
async def on_dataset_version_created(event: DatasetVersionCreated) -> None:
    await handlers.record_dataset_version(event, dependencies())


@service.subscriber(RETRAIN_REQUESTS, **consumer_options)
async def on_retrain_requested(event: RetrainRequested) -> None:
    await handlers.retrain_model(event, dependencies())


@service.subscriber(DRIFT, max_workers=settings.consumer_workers)
async def on_drift_detected(event: DriftDetected) -> None:
    await handlers.retrain_on_drift(event, dependencies())


@service.subscriber(PERFORMANCE_DEGRADATIONS, max_workers=settings.consumer_workers)
async def on_performance_degraded(event: PerformanceDegraded) -> None:
    await handlers.retrain_on_decay(event, dependencies())


app = service.app()


@app.on_startup
async def open_state() -> None:
    # Fail at startup, not on the first event, when the state directory is unusable.
    dependencies()


@app.after_shutdown
async def stop_training_runner() -> None:
    # After the broker stopped, so no handler still waits on a training.
    if dependencies.cache_info().currsize:
        await dependencies().coordinator.runner.close()
