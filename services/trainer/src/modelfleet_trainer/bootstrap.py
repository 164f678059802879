"""trainer's wiring: builds its ports (training runner, MLflow, state, Kafka publisher) once.

    deps = bootstrap(settings, publish=publish, metrics=metrics)           # the service
    deps = bootstrap(settings, publish=fake, runner=InProcessRunner(...), state=InMemoryKeyValueStore())

Nothing here runs at import: the app calls it from its startup hook, so an unusable state engine,
policy file or MLflow password stops the service, naming the problem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from modelfleet_common.idempotency import IdempotencyStore, durable_idempotency
from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.policies import load_policies
from modelfleet_common.state import KeyLocks, KeyValueStore, open_service_state
from modelfleet_contracts.envelope import Event

from .catalog import TrainerCatalog
from .config import TrainerSettings
from .coordinator import TrainingCoordinator
from .handlers import TrainerDeps
from .metrics import TrainerMetrics
from .provenance import current_provenance
from .runner import InProcessRunner, RayRunner, TrainingRunner
from .task import TaskConfig


def training_runner(settings: TrainerSettings) -> TrainingRunner:
    """Ray (local, or the cluster at `FLEET_RAY_ADDRESS`), or in-process for tests."""
    config = TaskConfig(
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        dataset_cache_size=settings.dataset_cache_size,
    )
    provenance = current_provenance(settings.code_version)
    if settings.training_runner == "in_process":
        return InProcessRunner(config, provenance)
    return RayRunner(config, provenance, address=settings.ray_address, num_cpus=settings.ray_num_cpus)


def bootstrap(
    settings: TrainerSettings,
    *,
    publish: Callable[[Event], Awaitable[None]],
    runner: TrainingRunner | None = None,
    state: KeyValueStore | None = None,
    handled: IdempotencyStore | None = None,
    metrics: TrainerMetrics | None = None,
) -> TrainerDeps:
    """The handlers' dependencies; any port given replaces the real one."""
    if runner is None:
        # Its own MLflow user (FLEET_MLFLOW_USERNAME, password from FLEET_MLFLOW_PASSWORD_FILE).
        use_mlflow_credentials(settings)
        runner = training_runner(settings)
    locks = KeyLocks()
    if state is None or handled is None:
        engine = open_service_state(settings, "trainer")
        locks = engine.locks
        state = state or engine.key_values()
        handled = handled or durable_idempotency(engine, settings.state)
    return TrainerDeps(
        catalog=TrainerCatalog(state),
        handled=handled,
        coordinator=TrainingCoordinator(
            runner=runner,
            publish=publish,
            max_concurrent=settings.max_concurrent_trainings,
            max_attempts=settings.max_training_attempts,
            backoff_seconds=settings.training_backoff_seconds,
            metrics=metrics,
        ),
        policies=load_policies(settings.policy_dir),
        data_wait_seconds=settings.retrain_data_wait_seconds,
        locks=locks,
    )
