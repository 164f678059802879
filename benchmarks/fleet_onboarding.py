"""Fleet onboarding: one `ModelFleet` file → N registered, signed models; against MLflow's documented path.

In one run, on the same machine, Kafka broker and MLflow server:

1. **modelfleet**: ingest, trainer (Ray), evaluator and registry run as services; `modelfleet apply`
   publishes one ModelFleet expanding to N specs over one dataset; the clock stops when N models
   are registered (or have failed). Reports wall time, models per minute and control-plane CPU
   per model excluding the fits (CPU of the services and their Ray workers, MLflow and Kafka,
   minus the fit time the trainer reports).
2. **baseline**: `baselines/mlflow_sequential.py` fits the same pipeline on the same slices and logs
   and registers each model the way MLflow's documentation shows (`log_model` with an input
   example and requirement inference, `registered_model_name`), one after the other. It runs on a
   sample of the models (`--baseline-models`); its per-model median is scaled to N.

    python benchmarks/fleet_onboarding.py --quick         # smoke run: N=20, 3 baseline models
    python benchmarks/fleet_onboarding.py                 # N=100
    python benchmarks/fleet_onboarding.py --models 1000   # full

Needs nothing running: it starts its own Kafka and MLflow under `.local/bench` unless
FLEET_KAFKA_BOOTSTRAP / FLEET_MLFLOW_TRACKING_URI point at running ones. Its Kafka is the secured
one every fleet runs on (SASL/SCRAM over TLS, ACLs, each service its own principal); `--plaintext`
runs the same on an open broker, to measure what TLS and SCRAM cost:

    python benchmarks/fleet_onboarding.py --models 200 --plaintext --home .local/bench-plain

`--postgres` keeps the services' state and MLflow's backend store in a local PostgreSQL (as
compose and Kubernetes run them) instead of SQLite.

`--footprint` runs all seven services (deployer, monitor and serving too: they see every
registration, though nothing sends predictions) and samples every part's process tree about every
0.5 s (less often when reading smaps is slow on a busy machine): per part its RSS when idle (after
/readyz, before `apply`), its peak RSS, PSS and USS (summed over the part's processes at each
sample), and CPU seconds per model. The trainer's descendants (Ray's GCS, raylet, dashboard and
workers) are a part of their own, "trainer (ray workers)". Kubernetes requests and limits are sized
from it (`benchmarks/README.md`, "Footprint").

    python benchmarks/fleet_onboarding.py --models 100 --footprint
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import yaml
from aiokafka import AIOKafkaConsumer
from infrastructure import Infrastructure, free_port, start_infrastructure, stop_infrastructure, wait_ready

from modelfleet_cli.tokens import local_serving_token
from modelfleet_common.naming import TopicNamer
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts.topics import CLI, MODEL_REGISTRATIONS, TRAINING_FAILED, TRAINING_FINISHED
from modelfleet_devkit.fleet import service_python

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "benchmarks" / "baselines" / "mlflow_sequential.py"
SERVICES = ("ingest", "trainer", "evaluator", "registry")
#: The rest of the fleet, started too with `--footprint` (to measure them alongside).
REST_OF_FLEET = ("deployer", "monitor", "serving")
#: The footprint's part for the trainer's descendants: Ray's GCS, raylet, dashboard and workers.
RAY_WORKERS = "trainer (ray workers)"
ROWS_PER_MODEL = 300


def make_data(models: int, seed: int = 11, rows_per_model: int = ROWS_PER_MODEL) -> pd.DataFrame:
    """One slice per model: six numeric features, a channel, a label with slice-specific weights."""
    rng = np.random.default_rng(seed)
    rows = models * rows_per_model
    segment = np.repeat([f"s{i:04d}" for i in range(models)], rows_per_model)
    x = rng.normal(size=(rows, 6))
    weights = np.repeat(rng.normal(1.0, 0.4, size=(models, 6)), rows_per_model, axis=0)
    channel = rng.choice(["web", "store", "phone"], rows)
    logit = (x * weights).sum(axis=1) / 2 + np.where(channel == "web", 0.5, 0.0)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(1, 7)])
    frame.insert(0, "segment", segment)
    frame["channel"] = channel
    frame["label"] = label
    return frame


def fleet_documents(models: int, source: str) -> list[dict[str, Any]]:
    columns: list[dict[str, Any]] = [{"name": "segment", "type": "string"}]
    columns += [{"name": f"x{i}", "type": "float"} for i in range(1, 7)]
    columns += [
        {"name": "channel", "type": "string", "categories": ["web", "store", "phone"]},
        {"name": "label", "type": "int", "min": 0, "max": 1},
    ]
    dataset = {
        "apiVersion": "modelfleet/v1",
        "kind": "Dataset",
        "metadata": {"name": "bench-slices", "owner": "bench@example.com"},
        "spec": {"columns": columns, "source": source},
    }
    fleet = {
        "apiVersion": "modelfleet/v1",
        "kind": "ModelFleet",
        "metadata": {"name": "bench", "owner": "bench@example.com"},
        "spec": {
            "matrix": {"segment": [f"s{i:04d}" for i in range(models)]},
            "template": {
                "apiVersion": "modelfleet/v1",
                "kind": "ModelSpec",
                "metadata": {"name": "bench-${segment}", "owner": "bench@example.com", "risk_class": "low"},
                "spec": {
                    "dataset": {"name": "bench-slices", "where": {"segment": "${segment}"}},
                    "features": ["x1", "x2", "x3", "x4", "x5", "x6", "channel"],
                    "target": "label",
                    "pipeline": {"template": "tabular-classifier", "version": "1"},
                    "hyperparameters": {"C": 1.0, "max_iter": 200},
                },
            },
        },
    }
    return [dataset, fleet]


def process_tree(processes: list[psutil.Process]) -> dict[int, psutil.Process]:
    """Processes and all their descendants (Ray workers included), by pid."""
    seen: dict[int, psutil.Process] = {}
    for process in processes:
        try:
            seen[process.pid] = process
            for child in process.children(recursive=True):
                seen[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return seen


def cpu_seconds(processes: list[psutil.Process], *, descendants: bool = True) -> float:
    """User + system CPU of processes and (unless not `descendants`) all their descendants."""
    total = 0.0
    tree = process_tree(processes) if descendants else {process.pid: process for process in processes}
    for process in tree.values():
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class Memory:
    """A part's memory in MiB, each summed over the part's processes at one sample."""

    idle_rss: float = 0.0
    peak_rss: float = 0.0
    peak_pss: float = 0.0
    peak_uss: float = 0.0
    #: Most processes the part had at one sample.
    processes: int = 0


class FootprintSampler:
    """Memory of every part's process tree, sampled every `interval` seconds on a thread while in
    its `with` block: the first sample (on entry) is the idle one, the largest of each measure its
    peak. The parts named in `split` keep only their root processes; their descendants are the
    part `split[name]` (the trainer's Ray). PSS and USS come from `memory_full_info` (smaps)."""

    def __init__(
        self,
        parts: Mapping[str, list[psutil.Process]],
        interval: float = 0.5,
        split: Mapping[str, str] | None = None,
    ) -> None:
        self.parts = dict(parts)
        self.interval = interval
        self.split = dict(split or {})
        names = [*self.parts, *(self.split[name] for name in self.parts if name in self.split)]
        self.memory = {name: Memory() for name in names}
        self.samples = 0
        #: CPU seconds of the split parts' roots alone, at the first and the last sample.
        self.root_cpu: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footprint", daemon=True)

    def __enter__(self) -> FootprintSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        totals = {name: [0.0, 0.0, 0.0, 0.0] for name in self.memory}
        for name, roots in self.parts.items():
            own = {process.pid for process in roots}
            for pid, process in process_tree(roots).items():
                part = self.split[name] if name in self.split and pid not in own else name
                try:
                    info = process.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total = totals[part]
                total[0] += info.rss / 2**20
                total[1] += getattr(info, "pss", 0) / 2**20
                total[2] += info.uss / 2**20
                total[3] += 1
            if name in self.split:
                now = cpu_seconds(roots, descendants=False)
                self.root_cpu[name] = (self.root_cpu.get(name, (now, now))[0], now)
        for name, (rss, pss, uss, count) in totals.items():
            memory = self.memory[name]
            if self.samples == 0:
                memory.idle_rss = rss
            memory.peak_rss = max(memory.peak_rss, rss)
            memory.peak_pss = max(memory.peak_pss, pss)
            memory.peak_uss = max(memory.peak_uss, uss)
            memory.processes = max(memory.processes, int(count))
        self.samples += 1

    def split_cpu(self, cpu_by_part: dict[str, float]) -> dict[str, float]:
        """`cpu_by_part` (whole trees) with each split part's CPU divided between its roots and the
        part of their descendants."""
        result = dict(cpu_by_part)
        for name, (first, last) in self.root_cpu.items():
            if name in result:
                result[self.split[name]] = result[name] - (last - first)
                result[name] = last - first
        return result


def footprint_table(memory: Mapping[str, Memory], cpu_by_part: Mapping[str, float], models: int) -> str:
    """The footprint as a Markdown table: per part its memory (MiB) and CPU seconds per model."""
    lines = [
        "| part | processes | idle RSS MiB | peak RSS MiB | peak PSS MiB | peak USS MiB | CPU s/model |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in memory.items():
        cpu = cpu_by_part.get(name)
        per_model = f"{cpu / max(models, 1):.3f}" if cpu is not None else "-"
        lines.append(
            f"| {name} | {m.processes} | {m.idle_rss:.0f} | {m.peak_rss:.0f} | {m.peak_pss:.0f} "
            f"| {m.peak_uss:.0f} | {per_model} |"
        )
    return "\n".join(lines)


async def wait_for_outcomes(
    kafka: dict[str, Any], namer: TopicNamer, models: int, wait_seconds: float, progress: bool
) -> dict[str, Any]:
    """Consume registrations, finishes and failures until every model is registered or failed.

    `kafka` are aiokafka connection options (the benchmark reads as the Kafka admin)."""
    topics = {namer.topic(t): t for t in (MODEL_REGISTRATIONS, TRAINING_FINISHED, TRAINING_FAILED)}
    consumer = AIOKafkaConsumer(*topics, **kafka, auto_offset_reset="earliest")
    await consumer.start()
    registered: set[str] = set()
    failed: dict[str, str] = {}
    fit_seconds: dict[str, float] = {}
    deadline = time.monotonic() + wait_seconds
    last_report = 0.0
    try:
        while len(registered | set(failed)) < models and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition, records in batch.items():
                topic = topics[partition.topic]
                for record in records:
                    event = topic.parse(record.value)
                    model = getattr(event, "model", "")
                    if topic is MODEL_REGISTRATIONS:
                        registered.add(model)
                    elif topic is TRAINING_FINISHED:
                        fit_seconds[model] = event.duration_seconds  # type: ignore[attr-defined]
                    elif event.failure == "permanent":  # type: ignore[attr-defined]
                        failed[model] = f"{event.error_type}: {event.message}"  # type: ignore[attr-defined]
            if progress and time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"  … {len(registered)}/{models} registered, {len(failed)} failed", flush=True)
    finally:
        await consumer.stop()
    return {"registered": registered, "failed": failed, "fit_seconds": fit_seconds}


#: Key of `apply_and_measure`'s CPU seconds of the whole machine (every process, busy time).
MACHINE = "machine (all processes)"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or waiting on I/O) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def apply_and_measure(
    infra: Infrastructure,
    env: dict[str, str],
    manifest: Path,
    prefix: str,
    models: int,
    timeout: float,
    groups: dict[str, list[psutil.Process]],
) -> tuple[dict[str, Any], float, dict[str, float]]:
    """`modelfleet apply` the manifest and wait for every model's outcome; returns the outcome, the
    wall time and the CPU seconds each group of processes (plus Kafka, MLflow, PostgreSQL) spent,
    and the whole machine's busy CPU seconds under `MACHINE` (a check on the per-part sums)."""
    groups = groups | infra.processes()
    before = {name: cpu_seconds(tree) for name, tree in groups.items()}
    machine_before = machine_busy_seconds()
    started = time.perf_counter()
    applied = subprocess.run(
        [sys.executable, "-m", "modelfleet_cli.main", "apply", str(manifest)],
        env=env | infra.kafka_env(CLI),
        capture_output=True,
        text=True,
    )
    if applied.returncode != 0:
        raise SystemExit(f"modelfleet apply failed:\n{applied.stdout}\n{applied.stderr}")
    outcome = asyncio.run(
        wait_for_outcomes(infra.kafka_options(), TopicNamer(prefix), models, timeout, progress=True)
    )
    wall = time.perf_counter() - started
    by_part = {name: cpu_seconds(tree) - before[name] for name, tree in groups.items()}
    return outcome, wall, by_part | {MACHINE: machine_busy_seconds() - machine_before}


def run_modelfleet(
    infra: Infrastructure, work: Path, models: int, data_path: Path, timeout: float, footprint: bool = False
) -> dict[str, Any]:
    """Onboard `models` models on a fresh fleet; with `footprint`, all seven services run and their
    memory is sampled (`FootprintSampler`) while they onboard."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    key = work / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    env = {
        **os.environ,
        "FLEET_KAFKA_BOOTSTRAP": infra.bootstrap,
        "FLEET_MLFLOW_TRACKING_URI": infra.tracking_uri,
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_DATA_DIR": str(work / "data"),
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
        "FLEET_KAFKA_PARTITIONS": os.environ.get("FLEET_KAFKA_PARTITIONS", "4"),
        "FLEET_CONSUMER_WORKERS": os.environ.get("FLEET_CONSUMER_WORKERS", "4"),
        "FLEET_LOG_LEVEL": "WARNING",
    }
    if footprint:
        env["FLEET_SERVING_TOKENS_FILE"] = str(local_serving_token(work / "serving-auth")[0])
    infra.provision(prefix, partitions=int(env["FLEET_KAFKA_PARTITIONS"]))
    names = (*SERVICES, *REST_OF_FLEET) if footprint else SERVICES
    services: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for name in names:
            log = (work / f"{name}.log").open("wb")
            ports.append(free_port())
            service_env = (
                env
                | infra.kafka_env(name)
                | infra.mlflow_env(name)
                | infra.state_env(name)
                | {"FLEET_HTTP_PORT": str(ports[-1]), "FLEET_STATE_DIR": str(work / name)}
            )
            services.append(
                subprocess.Popen(
                    [service_python(name), "-m", f"modelfleet_{name}"],
                    env=service_env,
                    stdout=log,
                    stderr=log,
                )
            )
        wait_ready(dict(zip(names, zip(services, ports, strict=True), strict=True)), work)
        documents = fleet_documents(models, str(data_path))
        manifest = work / "fleet.yaml"
        manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        groups = {name: [psutil.Process(p.pid)] for name, p in zip(names, services, strict=True)}
        sampler = FootprintSampler(groups | infra.processes(), split={"trainer": RAY_WORKERS})
        with sampler if footprint else contextlib.nullcontext():
            outcome, wall, cpu_by_part = apply_and_measure(
                infra, env, manifest, prefix, models, timeout, groups
            )
        machine = cpu_by_part.pop(MACHINE)
        cpu = sum(cpu_by_part.values())
    finally:
        for process in services:
            process.terminate()
        for process in services:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    fits = sum(outcome["fit_seconds"].values())
    return {
        "models": models,
        "registered": len(outcome["registered"]),
        "failed": outcome["failed"],
        "wall_seconds": wall,
        "models_per_minute": len(outcome["registered"]) / wall * 60,
        "cpu_seconds": cpu,
        "machine_cpu_seconds": machine,
        "cpu_seconds_by_part": cpu_by_part,
        "fit_seconds": fits,
        "control_plane_cpu_per_model": (cpu - fits) / max(len(outcome["registered"]), 1),
    } | (
        {
            "footprint_mib": {name: vars(m) for name, m in sampler.memory.items()},
            "footprint_samples": sampler.samples,
            "cpu_seconds_by_part_split": sampler.split_cpu(cpu_by_part),
        }
        if footprint
        else {}
    )


def run_baseline(infra: Infrastructure, data_path: Path, segments: list[str]) -> list[dict[str, Any]]:
    # MLflow's own path, as MLflow's admin (it creates experiments and registered models).
    env = {**os.environ, "MLFLOW_TRACKING_URI": infra.tracking_uri, **infra.mlflow_env("admin")}
    done = subprocess.run(
        [sys.executable, str(BASELINE), str(data_path), *segments],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"baseline failed:\n{done.stderr[-4000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 20 models, 3 for the baseline.")
    parser.add_argument("--models", type=int, help="Models in the fleet (default 100; quick 20; full 1000).")
    parser.add_argument(
        "--baseline-models", type=int, help="Models the baseline fits and logs (default 10; quick 3)."
    )
    parser.add_argument("--timeout", type=float, default=1800, help="Seconds to wait for the fleet.")
    parser.add_argument(
        "--home", type=Path, default=REPO / ".local" / "bench", help="Where Kafka/MLflow live."
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="Services' state and MLflow's backend store on a local PostgreSQL (default: SQLite).",
    )
    parser.add_argument(
        "--plaintext", action="store_true", help="Run on an open broker (no TLS, SASL or ACLs) to compare."
    )
    parser.add_argument(
        "--footprint",
        action="store_true",
        help="Run all seven services and report each one's idle and peak memory and CPU per model.",
    )
    args = parser.parse_args()
    args.models = args.models or (20 if args.quick else 100)
    args.baseline_models = args.baseline_models or (3 if args.quick else 10)

    work = args.home / f"onboarding-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    data = make_data(args.models)
    data_path = work / "bench-slices.parquet"
    data.to_parquet(data_path, index=False)
    print(f"data: {len(data)} rows, {args.models} slices of {ROWS_PER_MODEL} rows → {data_path}")

    infra = start_infrastructure(args.home, plaintext=args.plaintext, postgres=args.postgres)
    print(f"kafka: {'PLAINTEXT, no ACLs' if args.plaintext else 'SASL_SSL (SCRAM-SHA-512), ACLs'}")
    try:
        print(f"modelfleet: onboarding {args.models} models …", flush=True)
        fleet = run_modelfleet(infra, work, args.models, data_path, args.timeout, args.footprint)
        sample = [f"s{i:04d}" for i in range(min(args.baseline_models, args.models))]
        print(f"baseline: {len(sample)} models the documented MLflow way, sequentially …", flush=True)
        baseline = run_baseline(infra, data_path, sample)
    finally:
        stop_infrastructure(infra)

    per_model = statistics.median(b["fit_seconds"] + b["log_seconds"] for b in baseline)
    fit_median = statistics.median(b["fit_seconds"] for b in baseline)
    log_median = statistics.median(b["log_seconds"] for b in baseline)
    baseline_total = per_model * args.models
    print()
    print(f"{'':34}{'modelfleet':>14}{'MLflow docs, sequential':>26}")
    print(f"{'models registered':34}{fleet['registered']:>14}{len(baseline):>26}")
    print(f"{'wall time for N models (s)':34}{fleet['wall_seconds']:>14.1f}{baseline_total:>26.1f}")
    print(f"{'models per minute':34}{fleet['models_per_minute']:>14.1f}{60 / per_model:>26.1f}")
    print(f"{'fit per model, median (s)':34}{'':>14}{fit_median:>26.3f}")
    print(f"{'logging+registration/model (s)':34}{'':>14}{log_median:>26.3f}")
    print(f"{'control-plane CPU/model excl. fit':34}{fleet['control_plane_cpu_per_model']:>13.3f}s{'':>26}")
    print(f"ratio (baseline wall / modelfleet wall): {baseline_total / fleet['wall_seconds']:.1f}x")
    print(
        f"baseline wall = its per-model median ({per_model:.2f}s over {len(baseline)} models) x {args.models}"
    )
    parts = ", ".join(
        f"{name} {seconds / fleet['registered']:.3f}s"
        for name, seconds in fleet["cpu_seconds_by_part"].items()
    )
    print(f"CPU per model by part (incl. fits): {parts}")
    if args.footprint:
        memory = {name: Memory(**values) for name, values in fleet["footprint_mib"].items()}
        samples, wall = fleet["footprint_samples"], fleet["wall_seconds"]
        print(
            f"\nfootprint (MiB; {samples} samples in {wall:.0f} s, one each 0.5 s or as fast as smaps reads):"
        )
        print(footprint_table(memory, fleet["cpu_seconds_by_part_split"], fleet["registered"]))
    if fleet["failed"]:
        print(f"{len(fleet['failed'])} models failed, e.g. {next(iter(fleet['failed'].items()))}")
    (work / "result.json").write_text(
        json.dumps({"modelfleet": fleet, "baseline": baseline}, indent=2, default=list)
    )
    print(f"details: {work / 'result.json'}")


if __name__ == "__main__":
    main()
