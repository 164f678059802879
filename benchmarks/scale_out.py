"""Scale-out: onboarding throughput with 1, 2 and 3 replicas of evaluator and registry.

In one run, on the same Kafka, MLflow (PostgreSQL backend store) and PostgreSQL (every service's
state, `FLEET_STATE_URL`): for each replica count R, a fresh fleet (its own topic prefix and model
names) with one ingest, one trainer (Ray) and R evaluators and R registries; `modelfleet apply`
publishes one ModelFleet of N models over one dataset (as `fleet_onboarding.py` does), and the
clock stops when all N are registered (or failed). Reported per R: wall time, models per minute,
the speed-up over R=1, and CPU seconds per model of everything (services, Ray, MLflow, Kafka,
PostgreSQL), split by part, so the ceiling shows: on a 2-core machine the fits and MLflow share
the same two cores as every added replica.

    python benchmarks/scale_out.py                         # N=100, R = 1, 2, 3
    python benchmarks/scale_out.py --models 300 --replicas 1,3

Needs nothing running: it starts its own Kafka, PostgreSQL and MLflow under `.local/bench-scale`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import yaml
from fleet_onboarding import MACHINE, apply_and_measure, fleet_documents, make_data
from infrastructure import Infrastructure, free_port, start_infrastructure, stop_infrastructure, wait_ready

from modelfleet_common.signing import ArtifactSigner

REPO = Path(__file__).resolve().parents[1]
SCALED = ("evaluator", "registry")


def run_fleet(
    infra: Infrastructure, work: Path, models: int, replicas: int, data: Path, timeout: float
) -> dict[str, Any]:
    prefix = f"scale{replicas}{uuid.uuid4().hex[:6]}."
    key = work / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    partitions = 6
    env = {
        **os.environ,
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_MLFLOW_TRACKING_URI": infra.tracking_uri,
        "FLEET_DATA_DIR": str(work / "data"),
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
        "FLEET_KAFKA_PARTITIONS": str(partitions),
        "FLEET_CONSUMER_WORKERS": "2",
        "FLEET_LOG_LEVEL": "WARNING",
    }
    infra.provision(prefix, partitions)
    layout = [("ingest", 1), ("trainer", 1), ("evaluator", replicas), ("registry", replicas)]
    processes: list[tuple[str, subprocess.Popen[bytes], int]] = []
    try:
        for name, count in layout:
            for index in range(count):
                port = free_port()
                log = (work / f"{name}-{index}.log").open("wb")
                service_env = (
                    env
                    | infra.kafka_env(name)
                    | infra.state_env(name)
                    | infra.mlflow_env(name)
                    | {
                        "FLEET_HTTP_PORT": str(port),
                        "FLEET_STATE_DIR": str(work / "state" / f"{name}-{index}"),
                    }
                )
                command = [sys.executable, "-m", f"modelfleet_{name}"]
                processes.append(
                    (
                        f"{name}-{index}",
                        subprocess.Popen(command, env=service_env, stdout=log, stderr=log),
                        port,
                    )
                )
        wait_ready({label: (process, port) for label, process, port in processes}, work)
        documents = fleet_documents(models, str(data))
        documents[1]["spec"]["template"]["metadata"]["name"] = (
            f"r{replicas}-{uuid.uuid4().hex[:4]}-${{segment}}"
        )
        manifest = work / "fleet.yaml"
        manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        groups: dict[str, list[psutil.Process]] = {}
        for label, process, _ in processes:
            groups.setdefault(label.rsplit("-", 1)[0], []).append(psutil.Process(process.pid))
        outcome, wall, cpu = apply_and_measure(infra, env, manifest, prefix, models, timeout, groups)
        machine = cpu.pop(MACHINE)
    finally:
        for _, process, _ in processes:
            process.terminate()
        for _, process, _ in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    done = len(outcome["registered"])
    return {
        "replicas": replicas,
        "models": models,
        "registered": done,
        "failed": len(outcome["failed"]),
        "wall_seconds": wall,
        "models_per_minute": done / wall * 60,
        "cpu_seconds_per_model": sum(cpu.values()) / max(done, 1),
        "machine_cpu_seconds_per_model": machine / max(done, 1),
        "cpu_seconds_per_model_by_part": {name: value / max(done, 1) for name, value in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 models, R = 1, 2")
    parser.add_argument(
        "--replicas", default="1,2,3", help="comma-separated replica counts of evaluator and registry"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--home", type=Path, default=REPO / ".local" / "bench-scale")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale_out.json")
    args = parser.parse_args()
    if args.quick:
        args.models, args.replicas = 20, "1,2"
    counts = [int(part) for part in args.replicas.split(",")]
    work = args.home / f"run-{uuid.uuid4().hex[:6]}"
    (work / "data").mkdir(parents=True, exist_ok=True)
    data = work / "data" / "slices.csv"
    make_data(args.models).to_csv(data, index=False)
    infra = start_infrastructure(args.home, postgres=True)
    if not infra.postgres:
        raise SystemExit(
            "scale_out.py starts its own Kafka, PostgreSQL and MLflow (replicas share their state in "
            "PostgreSQL): unset FLEET_KAFKA_BOOTSTRAP and FLEET_MLFLOW_TRACKING_URI"
        )
    results = []
    try:
        for replicas in counts:
            print(
                f"R={replicas}: {args.models} models, {replicas} evaluator and registry replica(s)",
                flush=True,
            )
            results.append(run_fleet(infra, work / f"r{replicas}", args.models, replicas, data, args.timeout))
    finally:
        stop_infrastructure(infra)
    base = results[0]["models_per_minute"]
    print(
        f"\n{'R':>2} {'registered':>11} {'wall s':>8} {'models/min':>11} {'speed-up':>9} "
        f"{'CPU s/model':>12} {'machine':>8}  by part (CPU s/model)"
    )
    for row in results:
        parts = ", ".join(
            f"{k} {v:.2f}"
            for k, v in sorted(row["cpu_seconds_per_model_by_part"].items(), key=lambda kv: -kv[1])
        )
        print(
            f"{row['replicas']:>2} {row['registered']:>5}/{row['models']:<5} {row['wall_seconds']:>8.1f} "
            f"{row['models_per_minute']:>11.1f} {row['models_per_minute'] / base:>8.2f}x "
            f"{row['cpu_seconds_per_model']:>12.2f} {row['machine_cpu_seconds_per_model']:>8.2f}  {parts}"
        )
    cores = psutil.cpu_count() or 1
    busiest = max(results, key=lambda r: r["models_per_minute"])
    # The machine's busy time, not the sum of the parts (which can count a process twice).
    per_model = statistics.fmean(r["machine_cpu_seconds_per_model"] for r in results)
    ceiling = 60 * cores / per_model
    print(
        f"\nceiling on this machine: {cores} cores / {per_model:.2f} "
        f"CPU s per model ≈ {ceiling:.0f} models/min; best run "
        f"{busiest['models_per_minute']:.0f} models/min at R={busiest['replicas']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "results": results}, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
