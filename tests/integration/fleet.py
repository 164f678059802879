"""Test-side helpers: run a service as a real process, and talk to the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from modelfleet_cli.local_home import REPO
from modelfleet_cli.local_home.kafka import ADMIN
from modelfleet_cli.provisioning import provision
from modelfleet_common.kafka import connection_options
from modelfleet_common.mlflow_auth import CREDENTIAL_VARIABLES
from modelfleet_common.naming import TopicNamer
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import CLI, Topic
from modelfleet_devkit import kafka as local_kafka
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit.fleet import service_python

#: The bearer token of every serving the tests start; its hash is in each one's tokens file.
SERVING_TOKEN = "mfs_test_" + secrets.token_urlsafe(32)
SERVING_HEADERS = {"authorization": f"Bearer {SERVING_TOKEN}"}


def serving_tokens_file(directory: Path) -> Path:
    """A tokens file (0600) accepting `SERVING_TOKEN` for predict and feedback on every model."""
    from modelfleet_cli.tokens import HEADER, SCOPES, token_entry
    from modelfleet_common.private_files import write_private

    path = directory / "serving-tokens.yaml"
    entry = token_entry("integration-tests", SERVING_TOKEN, list(SCOPES))
    write_private(path, HEADER + json.dumps({"tokens": [entry]}))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_home() -> Path:
    """Where the test session's MLflow server keeps its files (and its users' passwords)."""
    return Path(os.environ.get("FLEET_LOCAL_HOME", REPO / ".local")) / "test-mlflow"


def mlflow_env(user: str, tracking_uri: str | None) -> dict[str, str]:
    """`user`'s own MLflow credentials (its password file) when `tracking_uri` is the session's
    server; nothing for services that never call MLflow, or for a server of your own."""
    if not tracking_uri:
        return {}
    return local_mlflow.user_environment(mlflow_home(), user, tracking_uri, environ={})


def inherited_environment() -> dict[str, str]:
    """This process's environment without its MLflow credentials (the test process is admin)."""
    return {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}


@dataclass
class ServiceProcess:
    """One service started as `python -m modelfleet_<name>`, as an operator would run it."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        if self.name == "serving" and "FLEET_SERVING_TOKENS_FILE" not in self.env:
            self.env["FLEET_SERVING_TOKENS_FILE"] = str(serving_tokens_file(self.log_path.parent))
        env = {**inherited_environment(), **self.env, "FLEET_HTTP_PORT": str(self.port)}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [service_python(self.name), "-m", f"modelfleet_{self.name}"], env=env, stdout=log, stderr=log
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        """The log's last lines, without the access log of the test's own /metrics polls."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        kept = [line for line in lines if '"logger": "uvicorn.access"' not in line]
        return "\n".join(kept)[-8000:]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over the series matching `labels`."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def wait_for_metric(self, name: str, at_least: float, timeout: float = 60.0, **labels: str) -> float:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = self.metric(name, **labels)
            if value >= at_least:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{name}{labels}={value} < {at_least} after {timeout}s:\n{self.logs()}")

    def terminate(self, timeout: float = 45.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass(frozen=True)
class SecuredBroker:
    """The session's secured local broker: credentials per principal, provisioning per fleet."""

    bootstrap: str
    home: Path

    def env(self, principal: str) -> dict[str, str]:
        """`FLEET_KAFKA_*` variables that connect a process as `principal`."""
        return local_kafka.client_environment(self.home, principal, self.bootstrap)

    def options(self, principal: str = ADMIN) -> dict[str, Any]:
        """aiokafka connection options of `principal`."""
        return connection_options(local_kafka.client_settings(self.home, principal, self.bootstrap))

    def client(self, principal: str = ADMIN) -> Kafka:
        return Kafka(self.bootstrap, self.options(principal))

    def provision(self, prefix: str, partitions: int = 1) -> None:
        """Create the topics and ACLs of the fleet with topic prefix `prefix`, as the admin."""
        settings = local_kafka.admin_settings(self.home, self.bootstrap).model_copy(
            update={"partitions": partitions}
        )
        provision(settings, TopicNamer(prefix))


@dataclass
class Kafka:
    """A thin test client of the real broker, connected as one principal (TLS + SCRAM)."""

    bootstrap: str
    options: dict[str, Any] = field(default_factory=dict)

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        producer = AIOKafkaProducer(**self._connection(), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in (headers or {}).items()]
            )
        finally:
            await producer.stop()

    async def read(
        self, topic: str, *, until: Callable[[list[ConsumerRecord[Any, Any]]], bool], timeout: float = 60.0
    ) -> list[ConsumerRecord[Any, Any]]:
        """Every record of `topic` from the beginning, read until `until(records)` or the timeout."""
        consumer = AIOKafkaConsumer(**self._connection(), enable_auto_commit=False)
        await consumer.start()
        records: list[ConsumerRecord[Any, Any]] = []
        try:
            partitions = await self._partitions(consumer, topic, timeout)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            deadline = time.monotonic() + timeout
            while not until(records) and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
            return records
        finally:
            await consumer.stop()

    async def read_to_end(self, topic: str, timeout: float = 60.0) -> list[ConsumerRecord[Any, Any]]:
        """Every record of `topic` written so far (up to the end offsets when called)."""
        consumer = AIOKafkaConsumer(**self._connection(), enable_auto_commit=False)
        await consumer.start()
        records: list[ConsumerRecord[Any, Any]] = []
        try:
            partitions = await self._partitions(consumer, topic, timeout)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            deadline = time.monotonic() + timeout
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: could not read to its end in {timeout}s")
                batch = await consumer.getmany(timeout_ms=500)
                for partition, part in batch.items():
                    records.extend(record for record in part if record.offset < ends[partition])
            return records
        finally:
            await consumer.stop()

    async def end_offsets(self, topic: str, timeout: float = 30.0) -> dict[TopicPartition, int]:
        """The end offset of each partition of `topic` now."""
        consumer = AIOKafkaConsumer(**self._connection(), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, topic, timeout)
            return dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()

    def _connection(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, **self.options}

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.3)
        raise AssertionError(f"topic {topic} does not exist after {timeout}s")


@dataclass
class RunningFleet:
    """Services of one isolated fleet (its own topic prefix), and how to talk to it."""

    env: dict[str, str]
    kafka: Kafka
    namer: TopicNamer
    services: dict[str, ServiceProcess]
    root: Path
    mlflow: MlflowClient
    suffix: str

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run `modelfleet ARGS` against this fleet, as a person would."""
        return subprocess.run(
            [sys.executable, "-m", "modelfleet_cli.main", *args],
            env={
                **inherited_environment(),
                **self.env,
                **mlflow_env(CLI, self.env.get("FLEET_MLFLOW_TRACKING_URI")),
                "COLUMNS": "250",
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    async def all_events(self, topic: Topic) -> list[Event]:
        """Every event published on `topic` so far."""
        return [topic.parse(r.value) for r in await self.kafka.read_to_end(self.namer.topic(topic))]

    async def events(self, topic: Topic, until: Any, timeout: float = 240) -> list[Event]:
        """Events of `topic` once `until(events)` holds; fails with the services' logs if it never does."""
        found: list[Event] = []

        def done(records: list[Any]) -> bool:
            found[:] = [topic.parse(r.value) for r in records]
            return bool(until(found))

        await self.kafka.read(self.namer.topic(topic), until=done, timeout=timeout)
        if not until(found):
            logs = "\n".join(f"--- {n}\n{s.logs()}" for n, s in self.services.items())
            raise AssertionError(f"{topic.name}: condition not met; got {found}\n{logs}")
        return found


@contextlib.contextmanager
def running_fleet(
    root: Path,
    broker: SecuredBroker,
    mlflow_uri: str,
    services: tuple[str, ...],
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningFleet]:
    """Start `services` as real processes sharing one data store, signing key and policy dir."""
    signer_key = root / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(signer_key)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    broker.provision(prefix, partitions=2)
    env = {
        # The fleet as the CLI sees it; each service gets its own principal below.
        **broker.env(CLI),
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_DATA_DIR": str(root / "data"),
        "FLEET_KAFKA_PARTITIONS": "2",
        "FLEET_RETRY_BACKOFF_SECONDS": "0.05",
        "FLEET_MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "FLEET_SIGNING_KEY_FILE": str(signer_key),
        "FLEET_TRUSTED_KEYS_FILE": str(signer_key.with_name("registry.pem.pub")),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
        "FLEET_RAY_NUM_CPUS": "2",
        "FLEET_CONSUMER_WORKERS": "2",
        **(extra_env or {}),
    }
    started: dict[str, ServiceProcess] = {}
    try:
        for name in services:
            service_env = (
                env
                | broker.env(name)
                | mlflow_env(name, mlflow_uri)
                | {"FLEET_STATE_DIR": str(root / "state" / name)}
            )
            started[name] = ServiceProcess(name, service_env, root / f"{name}.log").start(timeout=180)
        yield RunningFleet(
            env,
            broker.client(),
            TopicNamer(prefix),
            started,
            root,
            MlflowClient(mlflow_uri),
            suffix=f"-{uuid.uuid4().hex[:6]}",
        )
    finally:
        for service in started.values():
            service.stop()
