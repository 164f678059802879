"""Real parts for integration tests: a secured Kafka broker and an MLflow server.

Kafka: the local Apache Kafka (KRaft, from Maven Central jars) started once for the test session,
secured as every fleet runs: SASL/SCRAM over TLS, ACLs, deny by default. Each test's fleet gets its
own topic prefix, provisioned (topics and ACLs) by the admin principal; every service connects as
its own principal and the CLI as `cli`, so a test that forgets a right fails as production would.
PostgreSQL (state shared by replicas): Debian's server, started for the session when a test needs it.
MLflow: `FLEET_MLFLOW_TRACKING_URI` if set; else a local `mlflow server` for the session, behind
its basic-auth app as every fleet runs it: the test process signs in as its admin, each service as
its own MLflow user (`fleet.mlflow_env`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet_cli.local_home import REPO
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts.topics import CLI
from modelfleet_devkit import kafka as local_kafka
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit import postgres as local_postgres

from .fleet import Kafka, SecuredBroker, ServiceProcess, free_port, mlflow_env, mlflow_home


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[SecuredBroker]:
    home = Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local")) / "test-kafka"
    running = local_kafka.endpoint(home)
    if running and local_kafka.is_secured(home):
        # Another test session started it (and stops it): share it, each test has its own prefix.
        yield SecuredBroker(running, home)
        return
    bootstrap = local_kafka.start(home, port=free_port(), controller_port=free_port(), timeout=180)
    try:
        yield SecuredBroker(bootstrap, home)
    finally:
        local_kafka.stop(home)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: SecuredBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def postgres_home() -> Iterator[Path]:
    """The session's local PostgreSQL (Debian's server): a role and a schema per service."""
    home = Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local")) / "test-postgres"
    if local_postgres.endpoint(home):
        yield home
        return
    local_postgres.start(home, port=free_port(), timeout=120)
    try:
        yield home
    finally:
        local_postgres.stop(home)


@pytest.fixture(scope="session")
def mlflow_uri() -> Iterator[str]:
    if uri := os.environ.get("FLEET_MLFLOW_TRACKING_URI"):
        yield uri
        return
    home = mlflow_home()
    uri = local_mlflow.start(home, port=free_port(), timeout=180)
    # The tests' own MlflowClient(uri) reads and writes anything: MLflow's admin (password file).
    admin = local_mlflow.client_environment(home, "admin")
    os.environ.update(admin)
    try:
        yield uri
    finally:
        for name in admin:
            os.environ.pop(name, None)
        local_mlflow.stop(home)


@pytest.fixture
def kafka(kafka_broker: SecuredBroker) -> Kafka:
    """The test's own client: the admin principal, so it can forge what no service may publish."""
    return kafka_broker.client()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh prefix per test: its own topics and consumer groups, no cross-talk."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def fleet_env(kafka_broker: SecuredBroker, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    """The fleet's settings as a person at the CLI has them (the `cli` principal's credentials)."""
    kafka_broker.provision(topic_prefix)
    # Like every real fleet, one registry key that the verifiers (serving, evaluator) trust.
    key = tmp_path / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    return {
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        **kafka_broker.env(CLI),
        "FLEET_TOPIC_PREFIX": topic_prefix,
        "FLEET_STATE_DIR": str(tmp_path / "state"),
        "FLEET_DATA_DIR": str(tmp_path / "data"),
        "FLEET_KAFKA_PARTITIONS": "1",
        "FLEET_RETRY_BACKOFF_SECONDS": "0.05",
    }


@pytest.fixture
def start_service(fleet_env: dict[str, str], kafka_broker: SecuredBroker, tmp_path: Path) -> Iterator[object]:
    started: list[ServiceProcess] = []

    def start(name: str, **extra_env: str) -> ServiceProcess:
        # Each service as its own Kafka principal.
        env = {**fleet_env, **kafka_broker.env(name), **extra_env}
        env |= mlflow_env(name, env.get("FLEET_MLFLOW_TRACKING_URI"))
        service = ServiceProcess(name, env, tmp_path / f"{name}.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
