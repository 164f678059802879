"""Real parts for integration tests: a Kafka broker and an MLflow server, chosen in this order.

Kafka: `FLEET_KAFKA_BOOTSTRAP` if set; else a testcontainers Kafka if a Docker engine answers;
else a local Apache Kafka (KRaft, from Maven Central jars) started once for the test session.
MLflow: `FLEET_MLFLOW_TRACKING_URI` if set; else a local `mlflow server` for the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet_cli.local import REPO
from modelfleet_common.local import kafka as local_kafka
from modelfleet_common.local import mlflow as local_mlflow
from modelfleet_common.signing import ArtifactSigner

from .fleet import Kafka, ServiceProcess, free_port


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if bootstrap := os.environ.get("FLEET_KAFKA_BOOTSTRAP"):
        yield bootstrap
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        home = Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local")) / "test-kafka"
        bootstrap = local_kafka.start(home, port=free_port(), controller_port=free_port(), timeout=180)
        try:
            yield bootstrap
        finally:
            local_kafka.stop(home)


@pytest.fixture(scope="session")
def mlflow_uri() -> Iterator[str]:
    if uri := os.environ.get("FLEET_MLFLOW_TRACKING_URI"):
        yield uri
        return
    home = Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local")) / "test-mlflow"
    uri = local_mlflow.start(home, port=free_port(), timeout=180)
    try:
        yield uri
    finally:
        local_mlflow.stop(home)


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Kafka:
    return Kafka(kafka_bootstrap)


@pytest.fixture
def topic_prefix() -> str:
    """A fresh prefix per test: its own topics and consumer groups, no cross-talk."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def fleet_env(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    # Like every real fleet, one registry key that the verifiers (serving, evaluator) trust.
    key = tmp_path / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    return {
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        "FLEET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "FLEET_TOPIC_PREFIX": topic_prefix,
        "FLEET_STATE_DIR": str(tmp_path / "state"),
        "FLEET_DATA_DIR": str(tmp_path / "data"),
        "FLEET_KAFKA_PARTITIONS": "1",
        "FLEET_RETRY_BACKOFF_SECONDS": "0.05",
    }


@pytest.fixture
def start_service(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    started: list[ServiceProcess] = []

    def start(name: str, **extra_env: str) -> ServiceProcess:
        service = ServiceProcess(name, {**fleet_env, **extra_env}, tmp_path / f"{name}.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
