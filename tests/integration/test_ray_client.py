"""The trainer's RayRunner trains on an external Ray cluster through Ray Client (`ray://`).

As in production (KubeRay): a Ray head of its own, started with `ray start` and serving Ray
Client; its workers sign in to the session's MLflow server as the trainer's MLflow user from
their environment (the password stays in its file), read the dataset version from a shared path,
and the result travels back to the runner in this process. When the head restarts, the runner
connects to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import DatasetVersionCreated, ModelSpec, ModelSpecSubmitted, TrainingFinished
from modelfleet_contracts.data import ColumnInfo
from modelfleet_contracts.envelope import Event
from modelfleet_trainer.catalog import TrainerCatalog
from modelfleet_trainer.coordinator import TrainingCoordinator
from modelfleet_trainer.handlers import TrainerDeps, apply_model_spec, record_dataset_version
from modelfleet_trainer.provenance import Provenance
from modelfleet_trainer.runner import RayRunner
from modelfleet_trainer.task import TaskConfig

from .fleet import free_port, inherited_environment, mlflow_env

pytestmark = pytest.mark.integration

#: `ray start` options that take a port: each gets a free one, so the head meets no other Ray here.
PORT_OPTIONS = (
    "--port",
    "--ray-client-server-port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


class RayHead:
    """`ray start --head --block` serving Ray Client, on fixed free ports so that it can restart."""

    def __init__(self, temp_dir: Path, env: dict[str, str]) -> None:
        self.temp_dir = temp_dir
        self.env = env
        self.ports = {option: free_port() for option in PORT_OPTIONS}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.ports['--ray-client-server-port']}"

    def start(self, timeout: float = 120) -> None:
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            *(f"{option}={port}" for option, port in self.ports.items()),
        ]
        log = self.temp_dir / "ray-start.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ray start exited with {self.process.returncode}:\n{log.read_text()[-4000:]}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.ports["--ray-client-server-port"])) == 0:
                    self._connect_once()
                    return
            time.sleep(0.3)
        raise AssertionError(f"no Ray Client server after {timeout}s:\n{log.read_text()[-4000:]}")

    def _connect_once(self) -> None:
        """Connect a throwaway client until one gets through.

        A fresh head's Ray Client proxy often fails to start the server of its first client (the
        forked process dies of SIGSEGV in gRPC's threads before it runs; later ones start): the
        client learns it ~40 s later. The trainer retries such an attempt; here it would only
        make the tests slow and, three times in a row, fail them.
        """
        script = f"import ray; ray.init({self.client_address!r}); ray.shutdown()"
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-c", script], env=self.env, capture_output=True, timeout=120, check=False
            )
            if done.returncode == 0:
                return
        raise AssertionError(f"no client got through to {self.client_address}:\n{done.stderr[-4000:]!r}")

    def stop(self) -> None:
        """Stop `ray start` and every process it started, by PID (workers have groups of their own)."""
        if self.process is None:
            return
        try:
            head = psutil.Process(self.process.pid)
            processes = [head, *head.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=3)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process.wait(5)
        self.process = None


@pytest.fixture(scope="module")
def ray_head(mlflow_uri: str) -> Iterator[RayHead]:
    """A one-CPU Ray cluster of its own, separate from this process, for this module's tests."""
    # Short: Ray's socket paths under it must stay below the 107 characters of a Unix socket.
    temp_dir = Path(tempfile.mkdtemp(prefix="mf-ray-", dir="/tmp"))
    env = {
        **{k: v for k, v in inherited_environment().items() if k != "RAY_ADDRESS"},
        # The workers' MLflow sign-in, as the worker pods get it (deploy/k8s ray-cluster.yaml).
        **mlflow_env("trainer", mlflow_uri),
        # Ray 2.60 turns on token auth for `ray start` when ~/.ray/auth_token exists (a local
        # `ray.init()` writes one); this cluster is reached without a token, as the fleet's is.
        "RAY_AUTH_MODE": "disabled",
    }
    head = RayHead(temp_dir, env)
    try:
        head.start()
        yield head
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


def _dataset_version(directory: Path) -> DatasetVersionCreated:
    rng = np.random.default_rng(0)
    rows = 120
    frame = pd.DataFrame(
        {
            "temperature": rng.normal(70, 8, rows),
            "load": rng.integers(0, 10, rows),
            "market": rng.choice(["se", "no", "dk"], rows),
        }
    )
    frame["fuel"] = 3 * frame["temperature"] + 2 * frame["load"] + rng.normal(0, 1, rows)
    version = hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()).hexdigest()
    path = directory / f"{version}.parquet"
    frame.to_parquet(path, index=False)
    return DatasetVersionCreated(
        producer="ingest",
        dataset="machines",
        version=version,
        uri=str(path),
        row_count=rows,
        columns=[ColumnInfo(name=str(c), dtype=str(t)) for c, t in frame.dtypes.items()],
        source_uri=str(path),
    )


def _submitted(name: str) -> ModelSpecSubmitted:
    spec = ModelSpec.model_validate(
        {
            "metadata": {"name": name, "owner": "team@example.com", "risk_class": "low"},
            "spec": {
                "dataset": {"name": "machines", "version": "latest"},
                "features": ["temperature", "load", "market"],
                "target": "fuel",
                "cohort_columns": ["market"],
                "pipeline": {"template": "tabular-regressor", "version": "1"},
            },
        }
    )
    revision = hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest()
    return ModelSpecSubmitted(producer="cli:test", model=name, revision=revision, spec=spec)


@pytest.fixture
async def trainer(
    ray_head: RayHead, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TrainerDeps]:
    """The trainer's handlers on a RayRunner whose cluster is `ray_head`, through Ray Client."""
    import ray

    # This process creates and closes the runs as the trainer service does: as the trainer.
    for name, value in mlflow_env("trainer", mlflow_uri).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized(), "a Ray of this process would take the place of the cluster"
    runner = RayRunner(
        TaskConfig(tracking_uri=mlflow_uri),
        Provenance(code_version="ray-client-test", environment_hash="e" * 64),
        address=ray_head.client_address,
    )
    yield TrainerDeps(
        catalog=TrainerCatalog(InMemoryKeyValueStore()),
        handled=InMemoryIdempotencyStore(),
        coordinator=TrainingCoordinator(runner=runner, publish=Published()),
    )
    await runner.close()
    assert not ray.is_initialized()


async def _train(deps: TrainerDeps, name: str) -> TrainingFinished:
    model = f"{name}-{os.getpid()}-{int(time.time())}"
    await apply_model_spec(_submitted(model), deps)
    finished = deps.coordinator.publish[-1]  # type: ignore[index]
    assert isinstance(finished, TrainingFinished), finished
    return finished


async def test_the_ray_runner_trains_on_a_cluster_through_ray_client(
    trainer: TrainerDeps, mlflow_uri: str, tmp_path: Path
) -> None:
    import ray

    await record_dataset_version(_dataset_version(tmp_path), trainer)
    finished = await _train(trainer, "on-ray-client")

    assert ray.util.client.ray.is_connected()  # through Ray Client, not a Ray of this process
    assert ray.cluster_resources()["CPU"] == 1  # the head's
    run = MlflowClient(mlflow_uri).get_run(finished.run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"r2", "rmse", "mae"}
    assert finished.metrics == pytest.approx(run.data.metrics)


async def test_the_ray_runner_connects_again_after_the_head_restarted(
    trainer: TrainerDeps, ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    # Ray Client gives a lost connection up after this long (30 s by default); read on connect.
    monkeypatch.setenv("RAY_CLIENT_RECONNECT_GRACE_PERIOD", "2")
    await record_dataset_version(_dataset_version(tmp_path), trainer)
    await _train(trainer, "before-restart")

    ray_head.stop()
    for _ in range(120):
        if not ray.is_initialized():
            break
        await asyncio.sleep(0.5)
    assert not ray.is_initialized(), "Ray Client still connected to a stopped head"
    await asyncio.to_thread(ray_head.start)

    # The runner connects again (with the client it had, every training failed, each attempt
    # trying to start a Ray in this process instead).
    await _train(trainer, "after-restart")
    assert ray.util.client.ray.is_connected()
