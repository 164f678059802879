"""Try the attacks of docs/security.md against the running local fleet, and print each answer.

    make demo                                  # or: make kafka mlflow && modelfleet-dev up
    .venv/bin/python examples/security/attacks.py

Every attempt is one a real attacker could make with what they hold (the `cli` Kafka user, a
compromised service's Kafka user, a serving token, nothing at all). Each line says what was tried,
what answered, and whether that is a refusal. It exits 1 if any attack went through.
It only talks to this machine's local fleet (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from modelfleet_cli.fleet_state import read_desired_state, read_events
from modelfleet_cli.local_home import REPO, default_home
from modelfleet_cli.tokens import local_serving_token, local_tokens_file, new_token, token_entry
from modelfleet_common.kafka import connection_options
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts import DataBatchSubmitted, DatasetVersionRejected, ModelSpecSubmitted
from modelfleet_contracts.topics import DATA_BATCHES, DATASET_REJECTIONS, DEPLOYMENTS, MODEL_EVALUATIONS
from modelfleet_devkit import kafka as local_kafka
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit.fleet import PORTS

SERVING = f"http://127.0.0.1:{PORTS['serving']}"
results: list[tuple[str, str, bool]] = []


def report(attack: str, answer: str, refused: bool) -> None:
    results.append((attack, answer, refused))
    mark = "refused" if refused else "WENT THROUGH"
    print(f"[{mark:>12}] {attack}\n               → {answer}", flush=True)


async def publish_as(home: Path, bootstrap: str, principal: str, topic: str, value: bytes) -> str:
    """Publish one record as `principal`; return what the broker said."""
    options = connection_options(local_kafka.client_settings(home, principal, bootstrap))
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True, request_timeout_ms=15000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"churn-se")
        return "accepted"
    except KafkaError as error:
        return f"{type(error).__name__}"
    finally:
        await producer.stop()


def kafka_attacks(home: Path, bootstrap: str, namer: TopicNamer) -> None:
    forged = json.dumps({"model": "churn-se", "revision": 10**9}).encode()
    for principal, topic, what in (
        ("cli", DEPLOYMENTS, "the CLI user publishes a routing table"),
        ("monitor", DEPLOYMENTS, "a compromised monitor publishes a routing table"),
        ("cli", MODEL_EVALUATIONS, "the CLI user publishes a passing evaluation"),
        ("serving", MODEL_EVALUATIONS, "a compromised serving publishes a passing evaluation"),
    ):
        answer = asyncio.run(publish_as(home, bootstrap, principal, namer.topic(topic), forged))
        report(f"{what} ({namer.topic(topic)} as User:{principal})", answer, answer != "accepted")
    made_up = f"{namer.prefix}fleet.made-up.v1"
    answer = asyncio.run(publish_as(home, bootstrap, "cli", made_up, b"{}"))
    report(f"the CLI user creates a topic by writing to it ({made_up})", answer, answer != "accepted")


def ingest_attack(settings: ServiceSettings, home: Path, bootstrap: str) -> None:
    state = asyncio.run(read_desired_state(settings))
    if not state.datasets:
        report(
            "ingest reads /proc/self/environ",
            "skipped: no dataset declared (apply examples/fleet first)",
            True,
        )
        return
    dataset = next(iter(state.datasets))
    for uri in ("/proc/self/environ", "/dev/zero", "/etc/passwd"):
        batch = DataBatchSubmitted(producer="cli:attacker", dataset=dataset, uri=uri, mode="append")  # type: ignore[call-arg]
        body = batch.model_dump_json().encode()
        answer = asyncio.run(
            publish_as(home, bootstrap, "cli", TopicNamer(settings.topic_prefix).topic(DATA_BATCHES), body)
        )
        verdict = wait_for(functools.partial(_rejection_of, settings, batch), 60)
        if verdict is None:
            report(
                f"ingest reads {uri} (DataBatchSubmitted by cli: {answer})", "no verdict within 60 s", False
            )
            continue
        problems = "; ".join(f"{p.code}: {p.message}" for p in verdict.problems)[:220]
        report(f"ingest reads {uri}", f"DatasetVersionRejected — {problems}", True)


def _rejection_of(settings: ServiceSettings, batch: DataBatchSubmitted) -> DatasetVersionRejected | None:
    for event in asyncio.run(read_events(settings, (DATASET_REJECTIONS,))):
        if isinstance(event, DatasetVersionRejected) and event.causation_id == batch.event_id:
            return event
    return None


def wait_for(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(2)
    return None


def serving_attacks(settings: ServiceSettings, home: Path) -> None:
    _, token = local_serving_token(home)
    bearer = {"authorization": f"Bearer {token}"}
    state = asyncio.run(read_desired_state(settings))
    specs = [e for e in state.models.values() if isinstance(e, ModelSpecSubmitted)]
    model = specs[0].model if specs else "churn-se"
    features = list(specs[0].spec.spec.features) if specs else ["x"]

    answer = httpx.post(f"{SERVING}/predict", json={"model": model, "inputs": [{}]}, timeout=10)
    report("/predict without a token", f"{answer.status_code} {answer.text[:120]}", answer.status_code == 401)

    feedback_only = new_token()
    tokens = local_tokens_file(home)
    document = yaml.safe_load(tokens.read_text()) or {"tokens": []}
    name = f"attack-{uuid.uuid4().hex[:6]}"
    document["tokens"].append(token_entry(name, feedback_only, ["feedback"]))
    tokens.write_text(yaml.safe_dump(document, sort_keys=False))
    time.sleep(7)  # serving re-reads its tokens file every 5 s
    answer = httpx.post(
        f"{SERVING}/predict",
        json={"model": model, "inputs": [{}]},
        headers={"authorization": f"Bearer {feedback_only}"},
        timeout=10,
    )
    report(
        "/predict with a feedback-only token",
        f"{answer.status_code} {answer.text[:120]}",
        answer.status_code == 403,
    )
    document["tokens"] = [t for t in document["tokens"] if t.get("name") != name]
    tokens.write_text(yaml.safe_dump(document, sort_keys=False))

    huge = b'{"model": "%s", "inputs": [' % model.encode() + b",".join([b"{}"] * 2_500_000) + b"]}"
    started = time.perf_counter()
    answer = httpx.post(f"{SERVING}/predict", content=huge, headers=bearer, timeout=30)
    took = (time.perf_counter() - started) * 1000
    report(
        f"/predict with 2.5 M rows ({len(huge) / 2**20:.1f} MiB)",
        f"{answer.status_code} in {took:.0f} ms: {answer.text[:120]}",
        answer.status_code == 413,
    )

    row = {feature: "abc" for feature in features}
    answer = httpx.post(
        f"{SERVING}/predict", json={"model": model, "inputs": [row]}, headers=bearer, timeout=10
    )
    report(
        f'/predict with "abc" for every feature of {model}',
        f"{answer.status_code} {answer.text[:200]}",
        answer.status_code == 422,
    )

    answer = httpx.post(
        f"{SERVING}/feedback",
        json={"model": model, "request_id": f"never-asked-{uuid.uuid4().hex[:6]}", "label": 1},
        headers=bearer,
        timeout=10,
    )
    report(
        "/feedback for a request serving never answered",
        f"{answer.status_code} {answer.text[:140]}",
        answer.status_code == 404,
    )


def mlflow_attack(home: Path) -> None:
    uri = local_mlflow._process(local_mlflow._root(home)).endpoint()  # the running server of this home
    if not uri:
        report("anonymous MLflow write", "skipped: no local MLflow server", True)
        return
    answer = httpx.post(f"{uri}/api/2.0/mlflow/experiments/create", json={"name": "pwned"}, timeout=10)
    report(
        "anonymous MLflow write (create an experiment)",
        f"{answer.status_code} {answer.text[:100]}",
        answer.status_code == 401,
    )


def policy_floor_attack() -> None:
    spec = yaml.safe_load((REPO / "examples/fleet/clinical-screening/model.yaml").read_text())
    spec["metadata"]["name"] = "breast-biopsy-triage-unreviewed"
    spec["spec"]["rollout"]["requires_approval"] = False
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.yaml"
        path.write_text(yaml.safe_dump(spec))
        done = subprocess.run(
            [sys.executable, "-m", "modelfleet_cli.main", "apply", str(path), "--dry-run"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "400"},
        )
    lines = (done.stdout + done.stderr).splitlines()
    said = " ".join(" ".join(line.replace("│", " ").split()) for line in lines if "requires_approval" in line)
    said = said or " ".join(" ".join(lines).split())[:240]
    report(
        "modelfleet apply: a critical spec with requires_approval: false",
        f"exit {done.returncode}: {said}",
        done.returncode != 0,
    )


def main() -> int:
    home = default_home()
    bootstrap = local_kafka.endpoint(home)
    if bootstrap is None or not local_kafka.is_secured(home):
        print(f"no secured local broker in {home}: run `make demo` (or make kafka mlflow, then the fleet)")
        return 2
    settings = ServiceSettings(kafka=local_kafka.client_settings(home, "cli", bootstrap))
    namer = TopicNamer(settings.topic_prefix)
    kafka_attacks(home, bootstrap, namer)
    ingest_attack(settings, home, bootstrap)
    serving_attacks(settings, home)
    mlflow_attack(home)
    policy_floor_attack()
    through = [attack for attack, _, refused in results if not refused]
    print(f"\n{len(results) - len(through)} of {len(results)} attacks refused")
    return 1 if through else 0


if __name__ == "__main__":
    sys.exit(main())
