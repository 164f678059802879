"""Serving many small models: modelfleet serving against Ray Serve model multiplexing, same run.

Setup (shared by both sides): N small scikit-learn models are fitted with the trainer's own
`tabular-classifier` v1 template (imputer + scaler + logistic regression on four numeric features,
200 rows, a different slice per model), saved the way the trainer saves them (`mlflow.sklearn.
save_model` with skops and the template's trusted types) and uploaded to one MLflow server as
run artifacts (`create_run` + `log_artifacts`). Each directory's digest is signed with a fresh
registry key and one `DeploymentChanged` per model (stage `promoted`, the version as champion) is
published to the deployments topic under a prefix unique to the run.

Both sides then run at once on this machine and fetch the same `runs:/…/model` directories from
the same MLflow server on first use:

* **modelfleet**: `python -m modelfleet_serving` (its own venv), one process; on a cold request it
  downloads, checks digest and Ed25519 signature, then loads with skops and an allow-list. Its
  budget (FLEET_SERVING_MEMORY_BUDGET_MB) is sized to hold `--capacity` models.
* **Ray Serve**: `baselines/ray_serve_multiplexed.py` (its own venv `.venv-bench-rayserve`, created on
  first use with the same ray, scikit-learn, skops, numpy, pandas and mlflow versions), one
  deployment (`--ray-replicas`, default 1; max_ongoing_requests 32; access log off, as serving
  writes none) with `@serve.multiplexed(max_num_models_per_replica=capacity / replicas)`, behind
  Ray Serve's HTTP proxy; it downloads and skops-loads but verifies no digest or signature.

Both hold the same number of models (`--capacity`, default all): "equal memory" is equal model
capacity, and the resident memory each side needs for it is measured and printed. Requests are
identical JSON bodies (`{"model", "inputs": [one row], "request_id"}`); Ray gets the model id in
the `serve_multiplexed_model_id` header. Both answer predictions and class probabilities. Model
choice is Zipf-distributed (exponent `--zipf`, seeded); both sides get the same sequence.

Phases, each repeated `--repeats` times alternating which side goes first, medians reported.
Before every phase the side's processes must have gone idle (a backlog a side still works on
must not slow down the next measurement, of either side):

1. cold load: one request to each of a fresh sample of not-yet-loaded models, one at a time;
   the latency of that first request (fetch + verify + load + predict) is the cold-load time.
   Then every model is touched once (untimed) so the next phases are warm.
2. warm open loop, for each `--rate` (requests/s; the first is the goal's) for `--duration` s on
   a fixed schedule; a request's latency counts from its scheduled start, so a server that falls
   behind cannot hide its queue (no coordinated omission). A request unanswered after 10 s fails
   and counts as an infinite latency ("inf" in the table). Reports p50/p99 and the achieved rate.
3. closed loop: `--clients` concurrent clients send back-to-back for `--closed-duration` s → req/s.

Memory per loaded model = (RSS, or USS = private memory, of the side's whole process tree after
every model was loaded - before any) / models loaded. For totals, RSS counts a shared page in
every process that maps it, which inflates the many-process Ray side (driver, GCS, raylet,
dashboard, controller, proxy, replica), so PSS (shared pages split between their processes) is
printed too, and Ray's PSS by role. Kafka and MLflow serve both sides and are not counted.

The load generator runs in its own process (asyncio + aiohttp) and competes for the same 2 cores
with both servers equally; its ceiling against a trivial endpoint (serving's /healthz) is printed
to show it is not the bottleneck. Other work on the machine adds noise: compare the ratios.

    python benchmarks/serving.py --quick              # 100 models, short phases: a smoke run
    python benchmarks/serving.py                      # 1000 models, 200 req/s for 30 s, 3 repeats
    python benchmarks/serving.py --rate 200 50        # also the latency below saturation
    python benchmarks/serving.py --estimator logistic # a cheaper model: more of the servers' overhead
    python benchmarks/serving.py --quick --models 500 --no-peer   # serving alone: its memory per model

Needs nothing running: it starts its own Kafka and MLflow under `.local/bench/serving` unless
FLEET_KAFKA_BOOTSTRAP / FLEET_MLFLOW_TRACKING_URI point at running ones.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from infrastructure import Infrastructure, free_port, start_infrastructure, stop_infrastructure

from modelfleet_cli.tokens import local_serving_token
from modelfleet_common.mlflow_auth import CREDENTIAL_VARIABLES
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import KafkaSettings
from modelfleet_common.signing import ArtifactSigner, VersionBinding, directory_digest
from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_contracts.topics import DEPLOYMENTS
from modelfleet_devkit.fleet import service_python

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "benchmarks" / "baselines" / "ray_serve_multiplexed.py"
RAY_VENV = REPO / ".venv-bench-rayserve"
FEATURES = ["x1", "x2", "x3", "x4"]
ROWS_PER_MODEL = 200
#: Memory serving estimates per byte of model files (FLEET_SERVING_MEMORY_FACTOR, its default).
MEMORY_FACTOR = 3.0
MODELFLEET, RAY = "modelfleet", "Ray Serve"


def model_name(index: int) -> str:
    return f"bench-m{index:04d}"


# --- models ---------------------------------------------------------------------------------------


def fit_and_save(index: int, estimator: str, out: str) -> tuple[int, str, int]:
    """Fit model `index` with the trainer's template (or a bare logistic regression) and save it as the
    trainer does; returns (index, model directory, bytes).

    Runs in a worker process. The trainer's modules are imported here, not at the top, so the load
    generator's process does not pay for them.
    """
    import logging

    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from modelfleet_common.model_files import directory_size
    from modelfleet_trainer.provenance import model_requirements
    from modelfleet_trainer.templates import FeatureKinds
    from modelfleet_trainer.templates.tabular import LogisticRegressionParams, TabularClassifierV1

    # pip is not installed in the venv; MLflow warns about it for every saved model.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    rng = np.random.default_rng(1000 + index)
    x = rng.normal(size=(ROWS_PER_MODEL, len(FEATURES)))
    weights = rng.normal(1.0, 0.5, size=len(FEATURES))
    label = (rng.random(ROWS_PER_MODEL) < 1 / (1 + np.exp(-(x @ weights)))).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    template = TabularClassifierV1()
    if estimator == "template":
        pipeline = template.build(LogisticRegressionParams(), FeatureKinds(numeric=FEATURES))
    else:
        pipeline = LogisticRegression()
    pipeline.fit(frame, label)
    model_dir = Path(out) / model_name(index) / "model"
    example = frame.head(5)
    mlflow.sklearn.save_model(
        pipeline,
        str(model_dir),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=list(template.trusted_types),
        pip_requirements=list(model_requirements()),
        signature=infer_signature(example, pipeline.predict(example)),
    )
    return index, str(model_dir), directory_size(model_dir)


@dataclass
class Fleet:
    names: list[str]
    targets: list[RouteTarget]
    max_model_bytes: int
    setup_seconds: float


def build_fleet(
    models: int, estimator: str, work: Path, tracking_uri: str, signer: ArtifactSigner, prefix: str
) -> Fleet:
    """Fit, save, upload and sign every model (for its name, version 1 and the fleet `prefix`); the
    route targets a registry would publish."""
    from mlflow import MlflowClient

    started = time.perf_counter()
    out = work / "models"
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        saved = sorted(
            pool.map(fit_and_save, range(models), [estimator] * models, [str(out)] * models, chunksize=16)
        )
    print(f"  fitted and saved {models} models in {time.perf_counter() - started:.0f}s", flush=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment(f"bench-serving-{uuid.uuid4().hex[:8]}")

    def upload(item: tuple[int, str, int]) -> RouteTarget:
        index, directory, _ = item
        run_id = client.create_run(experiment, run_name=model_name(index)).info.run_id
        # The run's root holds `model/`, as the trainer's single log_artifacts call leaves it.
        client.log_artifacts(run_id, str(Path(directory).parent))
        digest = directory_digest(Path(directory))
        return RouteTarget(
            version="1",
            model_uri=f"runs:/{run_id}/model",
            digest=digest,
            signature=signer.sign(VersionBinding(model_name(index), "1", digest, prefix)),
            signing_key_id=signer.key_id,
        )

    with ThreadPoolExecutor(max_workers=8) as threads:
        targets = list(threads.map(upload, saved))
    shutil.rmtree(out)
    return Fleet(
        names=[model_name(index) for index, _, _ in saved],
        targets=targets,
        max_model_bytes=max(size for _, _, size in saved),
        setup_seconds=time.perf_counter() - started,
    )


async def publish_deployments(kafka: dict[str, Any], namer: TopicNamer, fleet: Fleet) -> None:
    """One promoted routing table per model, as the deployer publishes it (keyed, envelope headers).

    `kafka` are aiokafka connection options: on the secured broker only the deployer (or the admin
    this benchmark connects as) may write routing tables."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        topic = namer.topic(DEPLOYMENTS)
        sends = []
        for name, target in zip(fleet.names, fleet.targets, strict=True):
            event = DeploymentChanged(
                producer="bench-serving",
                model=name,
                revision=1,
                stage="promoted",
                champion=target,
                reason="benchmarks/serving.py",
            )
            headers = [
                ("content-type", b"application/json"),
                ("event_type", event.event_type.encode()),
                ("event_id", str(event.event_id).encode()),
                ("schema_version", str(event.schema_version).encode()),
            ]
            sends.append(
                await producer.send(
                    topic, event.model_dump_json().encode(), key=event.key.encode(), headers=headers
                )
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


# --- infrastructure and the two servers ------------------------------------------------------------


def ensure_ray_venv() -> Path:
    """The baseline's interpreter; the venv is made on first use with this venv's library versions."""
    python = RAY_VENV / "bin" / "python"
    check = [str(python), "-c", "import ray.serve, skops, sklearn, mlflow, pandas"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {RAY_VENV} for the Ray Serve baseline …", flush=True)
    # uv as a module of this venv, else the one on PATH (the dev venv need not carry it).
    on_path = shutil.which("uv")
    uv = [on_path] if on_path else [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-p", sys.executable, str(RAY_VENV)], check=True)
    pins = [
        f"ray[serve]=={importlib.metadata.version('ray')}",
        f"scikit-learn=={importlib.metadata.version('scikit-learn')}",
        f"skops=={importlib.metadata.version('skops')}",
        f"numpy=={importlib.metadata.version('numpy')}",
        f"pandas=={importlib.metadata.version('pandas')}",
        f"mlflow-skinny=={importlib.metadata.version('mlflow')}",
        "pyyaml",
    ]
    subprocess.run([*uv, "pip", "install", "-p", str(python), *pins], check=True)
    return python


@dataclass
class Side:
    """One running server: its URL, how it is addressed, its process tree."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    #: Bearer token for /predict (modelfleet serving requires one).
    token: str = ""

    def memory(self) -> dict[str, float]:
        """RSS, PSS and USS (MB) of the process and every descendant, total and by Ray role."""
        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        totals: dict[str, float] = {}
        for process in processes:
            try:
                info = process.memory_full_info()
                role = ray_role(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for key, value in (("rss", info.rss), ("pss", info.pss), ("uss", info.uss)):
                totals[key] = totals.get(key, 0.0) + value / 2**20
                totals[f"{key}:{role}"] = totals.get(f"{key}:{role}", 0.0) + value / 2**20
        return totals

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and every descendant so far."""
        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def ray_role(cmdline: list[str]) -> str:
    """Which part of a Ray Serve deployment a process is, from its executable and script (or actor title)."""
    head = " ".join(cmdline[:3])
    for marker, role in (
        ("ServeReplica", "replica"),
        ("ProxyActor", "proxy"),
        ("ServeController", "controller"),
        ("ray::IDLE", "idle-workers"),
        ("default_worker.py", "idle-workers"),
        ("DashboardAgent", "dashboard"),
        ("dashboard.py", "dashboard"),
        ("/raylet", "raylet"),
        ("/gcs_server", "gcs"),
        ("RuntimeEnvAgent", "ray-daemons"),
        ("monitor.py", "ray-daemons"),
        ("ray_serve_multiplexed.py", "driver"),
    ):
        if marker in head:
            return role
    return "serving"


def start_modelfleet(
    infra: Infrastructure, work: Path, prefix: str, trusted_keys: Path, budget_mb: float
) -> Side:
    port = free_port()
    tokens_file, token = local_serving_token(work / "serving-auth")
    env = {
        **os.environ,
        "FLEET_KAFKA_BOOTSTRAP": infra.bootstrap,
        "FLEET_MLFLOW_TRACKING_URI": infra.tracking_uri,
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_TRUSTED_KEYS_FILE": str(trusted_keys),
        "FLEET_SERVING_TOKENS_FILE": str(tokens_file),
        "FLEET_HTTP_PORT": str(port),
        "FLEET_STATE_DIR": str(work / "serving-state"),
        "FLEET_SERVING_MODEL_DIR": str(work / "serving-models"),
        "FLEET_SERVING_MEMORY_BUDGET_MB": f"{budget_mb:.3f}",
        "FLEET_SERVING_MEMORY_FACTOR": str(MEMORY_FACTOR),
        # Ray Serve has no idle unload; a long run must not unload the Zipf tail between phases.
        "FLEET_SERVING_IDLE_UNLOAD_SECONDS": "86400",
        "FLEET_LOG_LEVEL": "WARNING",
        **infra.kafka_env("serving"),
        **infra.mlflow_env("serving"),
    }
    infra.provision(prefix, partitions=KafkaSettings().partitions)
    log = work / "serving.log"
    process = subprocess.Popen(
        [service_python("serving"), "-m", "modelfleet_serving"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    side = Side(MODELFLEET, f"http://127.0.0.1:{port}", process, log, token=token)
    wait_until(lambda: http_ok(f"{side.url}/readyz"), side, "ready", timeout=180)
    return side


def start_ray_serve(
    python: Path, infra: Infrastructure, work: Path, fleet: Fleet, capacity: int, replicas: int
) -> Side:
    port = free_port()
    models_file = work / "ray-models.json"
    models_file.write_text(
        json.dumps({n: t.model_uri for n, t in zip(fleet.names, fleet.targets, strict=True)})
    )
    log = work / "rayserve.log"
    process = subprocess.Popen(
        [
            str(python),
            str(BASELINE),
            f"--port={port}",
            f"--tracking-uri={infra.tracking_uri}",
            f"--models-file={models_file}",
            f"--max-models={math.ceil(capacity / replicas)}",
            f"--replicas={replicas}",
        ],
        # Ray Serve reads the registry as serving does, with MLflow's own credential variables.
        env={
            **{k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES},
            **infra.mlflow_password_env("serving"),
        },
        stdin=subprocess.PIPE,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    side = Side(RAY, f"http://127.0.0.1:{port}", process, log)
    wait_until(lambda: "READY" in log.read_text(errors="replace"), side, "ready", timeout=300)
    return side


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Any, side: Side, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if side.process.poll() is not None:
            raise SystemExit(f"{side.name} exited; see {side.log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{side.name} not {what} after {timeout:.0f}s; see {side.log}")
        time.sleep(0.5)


def routing_tables_applied(url: str) -> int:
    """Deployment events serving has handled, from its /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = r'^fleet_events_handled_total\{[^}]*event_type="deployment\.changed"[^}]*\} ([0-9.e+]+)$'
    return int(sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE)))


# --- load generation (in its own process) -----------------------------------------------------------


@dataclass
class Phase:
    """One measurement, run in the load generator's process."""

    kind: str  # "sequential" | "each" (every model once, concurrently) | "open" | "closed" | "ping"
    side: str
    url: str
    models: list[str]  # the model of each request, in order (closed loop: cycled)
    rate: float = 0.0
    duration: float = 0.0
    clients: int = 1
    seed: int = 0
    #: A request not answered within this many seconds fails (and counts as an infinite latency).
    timeout: float = 60.0
    #: Bearer token sent with each prediction, when the side has one.
    token: str = ""


class LoadGenerator:
    """A separate process that runs one phase at a time, so it does not share a GIL with this one."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._pipe, child = spawn.Pipe()
        self._process = spawn.Process(target=_serve_phases, args=(child,), daemon=True)
        self._process.start()

    def run(self, phase: Phase) -> dict[str, Any]:
        self._pipe.send(phase)
        result: dict[str, Any] = self._pipe.recv()
        return result

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(10)


def _serve_phases(pipe: Any) -> None:
    while True:
        try:
            phase = pipe.recv()
        except EOFError:
            return
        pipe.send(asyncio.run(_run_phase(phase)))


async def _run_phase(phase: Phase) -> dict[str, Any]:
    import aiohttp

    rng = np.random.default_rng(phase.seed)
    rows = rng.normal(size=(4096, len(FEATURES))).round(4).tolist()
    latencies: list[float] = []
    failed: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=phase.timeout)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def call(index: int, scheduled: float) -> None:
            model = phase.models[index % len(phase.models)]
            if phase.kind == "ping":
                request = session.get(f"{phase.url}/healthz")
            else:
                row = dict(zip(FEATURES, rows[index % len(rows)], strict=True))
                body = json.dumps({"model": model, "inputs": [row], "request_id": f"r{index}"})
                headers = {"content-type": "application/json"}
                if phase.token:
                    headers["authorization"] = f"Bearer {phase.token}"
                if phase.side == RAY:
                    headers["serve_multiplexed_model_id"] = model
                request = session.post(f"{phase.url}/predict", data=body, headers=headers)
            try:
                async with request as response:
                    await response.read()
                    ok = response.status == 200
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                ok, problem = False, type(error).__name__
            if ok:
                latencies.append((time.perf_counter() - scheduled) * 1000)
            else:
                errors[problem] = errors.get(problem, 0) + 1
                failed.append(math.inf)

        started = time.perf_counter()
        if phase.kind == "sequential":
            for index in range(len(phase.models)):
                await call(index, time.perf_counter())
        elif phase.kind == "open":
            total = int(phase.rate * phase.duration)
            tasks = []
            for index in range(total):
                scheduled = started + index / phase.rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(call(index, scheduled)))
            await asyncio.gather(*tasks)
        else:  # closed loop: "closed", "ping" until the deadline, "each" until every model was asked
            deadline = started + phase.duration
            last = len(phase.models) if phase.kind == "each" else 10**12
            counter = iter(range(last))

            async def client() -> None:
                for index in counter:
                    if time.perf_counter() >= deadline:
                        break
                    await call(index, time.perf_counter())

            await asyncio.gather(*(client() for _ in range(phase.clients)))
        elapsed = time.perf_counter() - started

    done = len(latencies)
    return {
        "requests": done + sum(errors.values()),
        "ok": done,
        "errors": errors,
        "seconds": elapsed,
        "rate": done / elapsed if elapsed else 0.0,
        # Failed requests count as infinitely slow: a server shedding load must not look fast.
        "p50_ms": percentile(latencies + failed, 50),
        "p99_ms": percentile(latencies + failed, 99),
    }


def percentile(values: list[float], q: float) -> float:
    # No interpolation: it would turn a neighbouring infinity into NaN.
    return float(np.percentile(values, q, method="higher")) if values else math.nan


def zipf_models(names: list[str], count: int, exponent: float, seed: int) -> list[str]:
    """`count` model picks, Zipf over a seeded random ranking of `names` (rank k has weight k^-s)."""
    rng = np.random.default_rng(seed)
    ranking = rng.permutation(len(names))
    weights = 1.0 / np.arange(1, len(names) + 1) ** exponent
    picks = rng.choice(len(names), size=count, p=weights / weights.sum())
    return [names[ranking[pick]] for pick in picks]


# --- the run -------------------------------------------------------------------------------------------


def alternating(sides: list[Side], repeat: int) -> Iterator[Side]:
    """Both sides, the first one swapped every repeat so neither always runs on a quieter machine."""
    yield from (sides if repeat % 2 == 0 else reversed(sides))


def settle(side: Side, *, idle_cpu: float = 0.15, limit: float = 60.0) -> None:
    """Wait until the side's processes use under `idle_cpu` of a core (a backlog finished), at most `limit` s.

    A server that fell behind keeps working on requests its clients gave up on; the next phase,
    of either side, must not run on a machine busy with that backlog.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = side.cpu_seconds()
        time.sleep(1.0)
        if side.cpu_seconds() - before < idle_cpu:
            return


def measure(
    args: argparse.Namespace, sides: list[Side], fleet: Fleet, loadgen: LoadGenerator
) -> dict[str, Any]:
    names = fleet.names
    results: dict[str, dict[str, Any]] = {side.name: {"cold": [], "closed": []} for side in sides}

    def run(side: Side, phase: Phase) -> dict[str, Any]:
        settle(side)
        return loadgen.run(replace(phase, token=side.token))

    ceiling = run(sides[0], Phase("ping", MODELFLEET, sides[0].url, ["-"], duration=3, clients=args.clients))
    print(f"  load generator ceiling against /healthz: {ceiling['rate']:.0f} req/s", flush=True)

    memory_before = {side.name: side.memory() for side in sides}
    rng = np.random.default_rng(args.seed)
    cold_samples = rng.permutation(names)[: args.cold_sample * args.repeats].tolist()
    for repeat in range(args.repeats):
        sample = cold_samples[repeat * args.cold_sample : (repeat + 1) * args.cold_sample]
        for side in alternating(sides, repeat):
            outcome = run(side, Phase("sequential", side.name, side.url, sample))
            results[side.name]["cold"].append(outcome)
            print(f"  cold #{repeat + 1} {side.name}: {brief(outcome)}", flush=True)

    for side in sides:  # every model once, untimed: the next phases measure warm serving
        started = time.perf_counter()
        outcome = run(side, Phase("each", side.name, side.url, names, duration=3600, clients=4))
        took = time.perf_counter() - started
        print(f"  warm-up {side.name}: {outcome['ok']}/{len(names)} models in {took:.0f}s", flush=True)
        if outcome["errors"]:
            print(f"    errors: {outcome['errors']}", flush=True)
    for side in sides:
        settle(side)
    memory_after = {side.name: side.memory() for side in sides}

    for rate in args.rate:
        for repeat in range(args.repeats):
            traffic = zipf_models(names, int(rate * args.duration), args.zipf, seed=args.seed + repeat)
            for side in alternating(sides, repeat):
                phase = Phase(
                    "open", side.name, side.url, traffic, rate=rate, duration=args.duration, timeout=10
                )
                outcome = run(side, phase)
                results[side.name].setdefault(f"open@{rate:g}", []).append(outcome)
                print(f"  open loop {rate:g}/s #{repeat + 1} {side.name}: {brief(outcome)}", flush=True)
    for repeat in range(args.repeats):
        traffic = zipf_models(names, 200_000, args.zipf, seed=args.seed + 100 + repeat)
        for side in alternating(sides, repeat):
            phase = Phase(
                "closed", side.name, side.url, traffic, duration=args.closed_duration, clients=args.clients
            )
            outcome = run(side, phase)
            results[side.name]["closed"].append(outcome)
            print(f"  closed loop #{repeat + 1} {side.name}: {brief(outcome)}", flush=True)
    return {
        "loadgen_ceiling_rps": ceiling["rate"],
        "phases": results,
        "memory_before_mb": memory_before,
        "memory_after_mb": memory_after,
    }


def models_loaded(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r"^fleet_serving_models_loaded ([0-9.e+]+)$", text, flags=re.MULTILINE)
    return int(float(found.group(1))) if found else -1


def brief(outcome: dict[str, Any]) -> str:
    errors = f", errors {outcome['errors']}" if outcome["errors"] else ""
    return (
        f"{outcome['ok']} ok, {outcome['rate']:.0f} req/s, "
        f"p50 {outcome['p50_ms']:.1f} ms, p99 {outcome['p99_ms']:.1f} ms{errors}"
    )


def median_of(outcomes: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(outcome[key] for outcome in outcomes))


def summarize(args: argparse.Namespace, measured: dict[str, Any], loaded: dict[str, int]) -> dict[str, Any]:
    """Per side: medians over the repeats, and memory per loaded model."""
    summary: dict[str, Any] = {}
    for side, phases in measured["phases"].items():
        before, after = measured["memory_before_mb"][side], measured["memory_after_mb"][side]
        count = max(loaded[side], 1)
        values: dict[str, Any] = {
            "cold_p50_ms": median_of(phases["cold"], "p50_ms"),
            "cold_p99_ms": median_of(phases["cold"], "p99_ms"),
        }
        for rate in args.rate:
            runs = phases[f"open@{rate:g}"]
            values[f"warm_p50_ms@{rate:g}"] = median_of(runs, "p50_ms")
            values[f"warm_p99_ms@{rate:g}"] = median_of(runs, "p99_ms")
            values[f"warm_rate@{rate:g}"] = median_of(runs, "rate")
        values |= {
            "closed_rps": median_of(phases["closed"], "rate"),
            "closed_p50_ms": median_of(phases["closed"], "p50_ms"),
            "closed_p99_ms": median_of(phases["closed"], "p99_ms"),
            "errors": sum(sum(o["errors"].values()) for runs in phases.values() for o in runs),
            "models_loaded": loaded[side],
            "rss_mb": after["rss"],
            "pss_mb": after["pss"],
            "rss_per_model_kb": (after["rss"] - before["rss"]) * 1024 / count,
            # USS, not PSS: a process's PSS also moves when unrelated processes map the same libraries.
            "uss_per_model_kb": (after["uss"] - before["uss"]) * 1024 / count,
            "memory_by_role_mb": {k: round(v, 1) for k, v in after.items() if k.startswith("pss:")},
        }
        summary[side] = values
    return summary


def table_rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows = [
        ("cold load p50 (ms)", "cold_p50_ms", "{:.1f}"),
        ("cold load p99 (ms)", "cold_p99_ms", "{:.1f}"),
    ]
    for rate in args.rate:
        rows += [
            (f"warm p50 @ {rate:g}/s (ms)", f"warm_p50_ms@{rate:g}", "{:.2f}"),
            (f"warm p99 @ {rate:g}/s (ms)", f"warm_p99_ms@{rate:g}", "{:.2f}"),
            ("  achieved rate (req/s)", f"warm_rate@{rate:g}", "{:.1f}"),
        ]
    rows += [
        (f"max throughput, {args.clients} clients (req/s)", "closed_rps", "{:.0f}"),
        ("  its p50 (ms)", "closed_p50_ms", "{:.1f}"),
        ("  its p99 (ms)", "closed_p99_ms", "{:.1f}"),
        ("failed requests (all phases)", "errors", "{:d}"),
        ("models loaded", "models_loaded", "{:d}"),
        ("RSS, all processes (MB)", "rss_mb", "{:.0f}"),
        ("PSS, all processes (MB)", "pss_mb", "{:.0f}"),
        ("RSS per loaded model (KB)", "rss_per_model_kb", "{:.1f}"),
        ("USS per loaded model (KB)", "uss_per_model_kb", "{:.1f}"),
    ]
    return rows


def ratio_text(ours: float, theirs: float) -> str:
    if not (math.isfinite(ours) and math.isfinite(theirs)) or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def print_table(args: argparse.Namespace, summary: dict[str, Any], ceiling: float) -> dict[str, bool]:
    ours = summary[MODELFLEET]
    if RAY not in summary:  # --no-peer
        print(f"\n{args.models} models ({args.estimator}), modelfleet serving alone")
        for label, key, fmt in table_rows(args):
            print(f"{label:38}{fmt.format(ours[key]):>12}")
        print(f"load generator ceiling vs /healthz: {ceiling:.0f} req/s")
        return {}
    ray = summary[RAY]
    print()
    print(
        f"{args.models} models ({args.estimator}), Zipf s={args.zipf}, medians of {args.repeats} repeats; "
        f"open loop {args.duration:g}s per rate (requests unanswered after 10s count as inf), "
        f"closed loop {args.closed_duration:g}s; each side holds {args.capacity} models"
    )
    print(f"{'metric':38}{'modelfleet':>12}{'Ray Serve':>12}{'mf/Ray':>9}")
    for label, key, fmt in table_rows(args):
        mine, theirs = fmt.format(ours[key]), fmt.format(ray[key])
        print(f"{label:38}{mine:>12}{theirs:>12}{ratio_text(ours[key], ray[key]):>9}")
    print(f"load generator ceiling vs /healthz: {ceiling:.0f} req/s")
    print(f"Ray Serve PSS by role after loading (MB): {ray['memory_by_role_mb']}")
    goal_rate = args.rate[0]
    goals = {
        f"warm p99 <= 20 ms at {goal_rate:g} req/s": ours[f"warm_p99_ms@{goal_rate:g}"] <= 20
        and ours[f"warm_rate@{goal_rate:g}"] >= 0.95 * goal_rate,
        ">= 2x Ray Serve's max throughput with no more memory": ours["closed_rps"] >= 2 * ray["closed_rps"]
        and ours["pss_mb"] <= ray["pss_mb"],
    }
    for goal, met in goals.items():
        print(f"goal: {goal}: {'MET' if met else 'NOT MET'}")
    return goals


def json_safe(value: Any) -> Any:
    """`value` with infinite latencies (failed requests) as null, so the summary is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 100 models, short phases.")
    parser.add_argument("--models", type=int, help="Models in the fleet (default 1000; quick 100).")
    parser.add_argument("--capacity", type=int, help="Models each side may hold at once (default: all).")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[200.0],
        help="Open-loop requests per second; several rates run one after the other, the first is the goal's.",
    )
    parser.add_argument(
        "--estimator",
        choices=["template", "logistic"],
        default="template",
        help=(
            "template: the trainer's tabular-classifier v1 pipeline (imputer, scaler, logistic regression); "
            "logistic: a bare LogisticRegression, to see the servers' own overhead with a cheaper model."
        ),
    )
    parser.add_argument("--duration", type=float, help="Seconds of each open-loop phase (30; quick 8).")
    parser.add_argument(
        "--closed-duration", type=float, help="Seconds of each closed-loop phase (20; quick 6)."
    )
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients of the closed loop.")
    parser.add_argument(
        "--cold-sample", type=int, help="Cold loads timed per repeat and side (30; quick 10)."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Repeats of every phase; medians are shown.")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the model choice.")
    parser.add_argument("--ray-replicas", type=int, default=1, help="Ray Serve replicas (capacity is split).")
    parser.add_argument("--seed", type=int, default=7, help="Seed of traffic and samples.")
    parser.add_argument(
        "--home", type=Path, default=REPO / ".local" / "bench" / "serving", help="Where Kafka/MLflow live."
    )
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="modelfleet serving alone (no Ray Serve, no comparison): its latency and memory only.",
    )
    args = parser.parse_args()
    quick = args.quick
    args.models = args.models or (100 if quick else 1000)
    args.capacity = min(args.capacity or args.models, args.models)
    args.duration = args.duration or (8 if quick else 30)
    args.closed_duration = args.closed_duration or (6 if quick else 20)
    args.cold_sample = args.cold_sample or (10 if quick else 30)
    if args.cold_sample * args.repeats > args.models:
        parser.error("--cold-sample x --repeats must not exceed --models (each cold load is a new model)")

    ray_python = None if args.no_peer else ensure_ray_venv()
    work = args.home / f"serving-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    prefix = f"benchsrv{uuid.uuid4().hex[:8]}."
    infra = start_infrastructure(args.home)
    sides: list[Side] = []
    loadgen = LoadGenerator()
    try:
        signer = ArtifactSigner.load_or_create(work / "keys" / "registry.pem")
        print(
            f"setup: fitting, saving and logging {args.models} models to {infra.tracking_uri} …", flush=True
        )
        # This process logs and registers the models: MLflow's admin.
        os.environ.update(infra.mlflow_env("admin"))
        fleet = build_fleet(args.models, args.estimator, work, infra.tracking_uri, signer, prefix)
        print(f"  {args.models} models logged and signed in {fleet.setup_seconds:.0f}s", flush=True)
        # Half a model of slack: the budget must hold `capacity` models, not one fewer by rounding.
        budget_mb = (args.capacity + 0.5) * fleet.max_model_bytes * MEMORY_FACTOR / 2**20
        ours = start_modelfleet(infra, work, prefix, work / "keys" / "registry.pem.pub", budget_mb)
        sides.append(ours)
        asyncio.run(publish_deployments(infra.kafka_options(), TopicNamer(prefix), fleet))
        wait_until(lambda: routing_tables_applied(ours.url) >= args.models, ours, "routed", timeout=300)
        print(
            f"  modelfleet serving has {args.models} routing tables (budget {budget_mb:.1f} MB)", flush=True
        )
        if ray_python is not None:
            sides.append(start_ray_serve(ray_python, infra, work, fleet, args.capacity, args.ray_replicas))
            print("  Ray Serve application is up", flush=True)
        measured = measure(args, sides, fleet, loadgen)
        loaded = {MODELFLEET: models_loaded(ours.url), RAY: min(args.capacity, args.models)}
    finally:
        loadgen.stop()
        for side in sides:
            side.stop()
        stop_infrastructure(infra)

    summary = summarize(args, measured, loaded)
    goals = print_table(args, summary, measured["loadgen_ceiling_rps"])
    result = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "setup_seconds": fleet.setup_seconds,
        "model_files_bytes_max": fleet.max_model_bytes,
        "loadgen_ceiling_rps": measured["loadgen_ceiling_rps"],
        "summary": summary,
        "goals": goals,
        "runs": measured["phases"],
    }
    (work / "result.json").write_text(json.dumps(json_safe(result), indent=2))
    print(json.dumps(json_safe({"summary": summary, "goals": goals}), indent=2))
    print(f"details: {work / 'result.json'}")


if __name__ == "__main__":
    main()
