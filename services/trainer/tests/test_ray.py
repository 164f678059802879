"""A training really runs as a Ray task: fit and MLflow logging happen in a Ray worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from mlflow import MlflowClient

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import ModelSpec, ModelSpecSubmitted, TrainingFinished
from modelfleet_contracts.envelope import Event
from modelfleet_trainer.catalog import TrainerCatalog
from modelfleet_trainer.coordinator import TrainingCoordinator
from modelfleet_trainer.handlers import TrainerDeps, apply_model_spec, record_dataset_version
from modelfleet_trainer.provenance import Provenance
from modelfleet_trainer.runner import RayRunner
from modelfleet_trainer.task import TaskConfig

from .conftest import StoredVersion, TrackingServer


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ray_runner(mlflow_tracking: TrackingServer) -> AsyncIterator[RayRunner]:
    """One local Ray (one CPU) for the whole session, started lazily by the runner itself."""
    runner = RayRunner(
        TaskConfig(tracking_uri=mlflow_tracking.uri, artifact_root=mlflow_tracking.artifact_root),
        Provenance(code_version="ray-test", environment_hash="e" * 64),
        num_cpus=1,
    )
    runner.address = None  # never submit a unit test to a cluster named by RAY_ADDRESS
    yield runner
    # While the session's event loop (and the thread that started Ray) still runs.
    await runner.close()


@pytest.mark.ray
async def test_a_training_runs_in_a_ray_task_and_logs_from_there(
    ray_runner: RayRunner,
    mlflow_tracking: TrackingServer,
    store_version: Callable[..., StoredVersion],
    make_spec: Callable[..., ModelSpec],
    submit: Callable[..., ModelSpecSubmitted],
) -> None:
    import ray

    deps = TrainerDeps(
        catalog=TrainerCatalog(InMemoryKeyValueStore()),
        handled=InMemoryIdempotencyStore(),
        coordinator=TrainingCoordinator(runner=ray_runner, publish=Published()),
    )
    await record_dataset_version(store_version().event, deps)

    await apply_model_spec(submit(make_spec("on-ray", template="tabular-regressor", target="fuel")), deps)

    finished = deps.coordinator.publish[-1]  # type: ignore[index]
    assert isinstance(finished, TrainingFinished)
    assert ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == 1
    run = MlflowClient(mlflow_tracking.uri).get_run(finished.run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"r2", "rmse", "mae"}
