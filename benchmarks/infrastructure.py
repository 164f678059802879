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
from typing import Any

import httpx
import psutil

from modelfleet_cli.local_home.kafka import ADMIN
from modelfleet_cli.local_home.mlflow import USERS as MLFLOW_USERS
from modelfleet_cli.provisioning import provision
from modelfleet_common.kafka import connection_options
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import KafkaSettings
from modelfleet_devkit import kafka as local_kafka
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit import postgres as local_postgres

#: `FLEET_KAFKA_*` of a fleet on the plaintext local broker (`--plaintext` runs, for comparison).
PLAINTEXT_ENV = {"FLEET_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "FLEET_KAFKA_ALLOW_PLAINTEXT": "true"}


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
    plaintext: bool = False
    #: Services' state and MLflow's backend store on a local PostgreSQL (`make postgres`'s launcher).
    postgres: bool = False

    def kafka_env(self, principal: str) -> dict[str, str]:
        """`FLEET_KAFKA_*` that connect a process as `principal`: its own credentials on the secured
        local broker; on a cluster named in the environment, that environment's (nothing added)."""
        if not self.owned:
            return {}
        if self.plaintext:
            return {"FLEET_KAFKA_BOOTSTRAP": self.bootstrap, **PLAINTEXT_ENV}
        return local_kafka.client_environment(self.home, principal, self.bootstrap)

    def kafka_settings(self, principal: str = ADMIN) -> KafkaSettings:
        """Settings of `principal` (the benchmark's own clients connect as the admin)."""
        if not self.owned:
            return KafkaSettings()
        if self.plaintext:
            return KafkaSettings(
                bootstrap=self.bootstrap, security_protocol="PLAINTEXT", allow_plaintext=True
            )
        return local_kafka.client_settings(self.home, principal, self.bootstrap)

    def kafka_options(self, principal: str = ADMIN) -> dict[str, Any]:
        """aiokafka connection options of `principal`."""
        return connection_options(self.kafka_settings(principal))

    def state_env(self, service: str) -> dict[str, str]:
        """`FLEET_STATE_URL` and its password file of `service` on the local PostgreSQL; nothing (a
        SQLite file in the service's state dir) without one."""
        if not (self.owned and self.postgres):
            return {}
        return local_postgres.client_environment(self.home, service)

    def mlflow_env(self, user: str) -> dict[str, str]:
        """Settings that sign a process in to the local MLflow server as `user` (its password file):
        each service its own user, the benchmark's own clients `admin`; services that never call
        MLflow, and a server named in the environment, get nothing."""
        if not self.owned or user not in (*MLFLOW_USERS, "admin"):
            return {}
        return local_mlflow.client_environment(self.home, user)

    def mlflow_password_env(self, user: str) -> dict[str, str]:
        """MLflow's own `MLFLOW_TRACKING_USERNAME`/`PASSWORD` of `user`, for a third-party program
        (a baseline) that has no modelfleet installed: the password is in its environment."""
        if not self.owned:
            return {}
        password = local_mlflow.password_file(self.home, user).read_text().strip()
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}

    def provision(self, prefix: str, partitions: int) -> None:
        """Create the topics and ACLs of the fleet with topic prefix `prefix` (as the admin).

        The plaintext broker has no authorizer: its services create their topics themselves."""
        if self.plaintext:
            return
        settings = self.kafka_settings().model_copy(update={"partitions": partitions})
        provision(settings, TopicNamer(prefix))

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The Kafka broker and the MLflow server processes, by part, when this run started them."""
        if not self.owned:
            return {}
        marker = str(self.home)
        found: dict[str, list[psutil.Process]] = {"kafka": [], "mlflow": []}
        for process in psutil.process_iter(["cmdline", "name"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            # PostgreSQL's server names the home too (its data dir): it is counted below, apart.
            if marker in cmdline and process.pid != os.getpid() and process.info["name"] != "postgres":
                found["kafka" if "kafka.Kafka" in cmdline else "mlflow"].append(process)
        if self.postgres:
            # The server listening on its port; CPU accounting adds its backends (children).
            port = local_postgres.server_port(self.home)
            for connection in psutil.net_connections("tcp"):
                if (
                    connection.status == psutil.CONN_LISTEN
                    and connection.laddr.port == port
                    and connection.pid
                ):
                    found["postgres"] = [psutil.Process(connection.pid)]
                    break
        return found


def start_infrastructure(home: Path, *, plaintext: bool = False, postgres: bool = False) -> Infrastructure:
    """FLEET_KAFKA_BOOTSTRAP + FLEET_MLFLOW_TRACKING_URI when both are set (with the `FLEET_KAFKA_*`
    credentials of the environment); else a local Kafka (secured, unless `plaintext`) and an empty
    MLflow server under `home` (every run starts from an empty registry). With `postgres`, a local
    PostgreSQL holds the services' state and MLflow's backend store (its database is kept between
    runs; model names of each run differ)."""
    bootstrap = os.environ.get("FLEET_KAFKA_BOOTSTRAP")
    tracking = os.environ.get("FLEET_MLFLOW_TRACKING_URI")
    if bootstrap and tracking:
        return Infrastructure(bootstrap, tracking, home, owned=False)
    shutil.rmtree(home / "mlflow", ignore_errors=True)
    bootstrap = local_kafka.start(
        home, port=free_port(), controller_port=free_port(), timeout=180, plaintext=plaintext
    )
    if postgres:
        local_postgres.start(home, port=free_port(), timeout=120)
    tracking = local_mlflow.start(
        home, port=free_port(), timeout=180, backend="postgres" if postgres else "sqlite"
    )
    return Infrastructure(bootstrap, tracking, home, owned=True, plaintext=plaintext, postgres=postgres)


def stop_infrastructure(infra: Infrastructure) -> None:
    if infra.owned:
        local_mlflow.stop(infra.home)
        local_kafka.stop(infra.home)
        if infra.postgres:
            local_postgres.stop(infra.home)


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
