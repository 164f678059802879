"""Kafka and MLflow for a benchmark run: the ones named in the environment, or fresh local ones.

Shared by the scripts in this directory (each runs as `python benchmarks/<name>.py`, so this
directory is first on `sys.path` and `import infrastructure` finds this module).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from modelfleet_common.local import kafka as local_kafka
from modelfleet_common.local import mlflow as local_mlflow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Infrastructure:
    """Where Kafka and MLflow are, and whether this run started (and must stop) them."""

    bootstrap: str
    tracking_uri: str
    home: Path
    owned: bool

    def processes(self) -> list[psutil.Process]:
        """Kafka and MLflow server processes (with children) when this run started them."""
        if not self.owned:
            return []
        marker = str(self.home)
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if marker in " ".join(process.info["cmdline"] or []) and process.pid != os.getpid():
                found.append(process)
        return found


def start_infrastructure(home: Path) -> Infrastructure:
    """FLEET_KAFKA_BOOTSTRAP + FLEET_MLFLOW_TRACKING_URI when both are set; else a local Kafka and an
    empty MLflow server under `home` (every run starts from an empty registry)."""
    bootstrap = os.environ.get("FLEET_KAFKA_BOOTSTRAP")
    tracking = os.environ.get("FLEET_MLFLOW_TRACKING_URI")
    if bootstrap and tracking:
        return Infrastructure(bootstrap, tracking, home, owned=False)
    shutil.rmtree(home / "mlflow", ignore_errors=True)
    bootstrap = local_kafka.start(home, port=free_port(), controller_port=free_port(), timeout=180)
    tracking = local_mlflow.start(home, port=free_port(), timeout=180)
    return Infrastructure(bootstrap, tracking, home, owned=True)


def stop_infrastructure(infra: Infrastructure) -> None:
    if infra.owned:
        local_mlflow.stop(infra.home)
        local_kafka.stop(infra.home)


def wait_ready(
    services: Mapping[str, tuple[subprocess.Popen[bytes], int]], logs: Path, timeout: float = 180
) -> None:
    """Wait until every service (name -> process, HTTP port) answers /readyz; exit naming its log if
    one dies or is not ready within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for name, (process, port) in services.items():
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited; see {logs / f'{name}.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} not ready; see {logs / f'{name}.log'}")
            time.sleep(0.5)
