"""The closed loop, timed: drift injected into N models → each has a new champion at 100 % traffic.

In one run, on one machine: Kafka, MLflow and every service (ingest, trainer on local Ray,
evaluator, registry, deployer, monitor, serving) as real processes; N low-risk models, each
trained on its own segment of one dataset. Live traffic with true labels goes to every model
through serving. After a warm-up, every model's traffic switches at once to a covariate shift of
its own segment (the rows whose most predictive features are in their top 30 %, with their true
labels). The clock runs per model from that switch to the first promotion of a version the loop
made; the script prints each stage (drift found, retrain asked, version registered, promoted) and
the p50 / p95 of the whole.

No peer ships this loop end to end, so there is nothing to run side by side; the issue's goal is
an absolute one (p50 ≤ 120 s on 2 cores).

    python benchmarks/closed_loop.py                    # 12 models, demo-speed policies
    python benchmarks/closed_loop.py --models 20 --rate 200

Policies: `examples/demo/policies` by default (the gates of `policies/`, with drift windows of 200
predictions and canary steps of 60 requests); pass `--policies policies` for production cadence,
which needs far more traffic per model (windows of 1,000, 100-request canary steps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from fleet_onboarding import make_data
from infrastructure import Infrastructure, free_port, start_infrastructure, stop_infrastructure, wait_ready

from modelfleet_cli.fleet_state import read_events
from modelfleet_cli.manifests import load_path
from modelfleet_cli.tokens import local_serving_token
from modelfleet_common.policies import load_policies
from modelfleet_common.settings import KafkaSettings, ServiceSettings
from modelfleet_common.signing import ArtifactSigner
from modelfleet_contracts import ModelPromoted
from modelfleet_contracts.topics import (
    CLI,
    DRIFT,
    MODEL_PROMOTIONS,
    MODEL_REGISTRATIONS,
    MODEL_ROLLBACKS,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
    TRAINING_FAILED,
)
from modelfleet_devkit.fleet import service_python
from modelfleet_devkit.loop_driver import (
    LoopTimeline,
    TrafficDriver,
    drifted_rows,
    loop_timelines,
    model_slice,
    traffic_for,
)

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")
ROWS_PER_MODEL = 1500
FEATURES = [f"x{i}" for i in range(1, 7)] + ["channel"]


def documents(models: int, source: str, suffix: str) -> list[dict[str, Any]]:
    columns = [{"name": "segment", "type": "string"}]
    columns += [{"name": f"x{i}", "type": "float"} for i in range(1, 7)]
    columns += [{"name": "channel", "type": "string"}, {"name": "label", "type": "int"}]
    dataset = {
        "apiVersion": "modelfleet/v1",
        "kind": "Dataset",
        "metadata": {"name": "loop-bench", "owner": "bench@example.com"},
        "spec": {"columns": columns, "source": source},
    }
    fleet = {
        "apiVersion": "modelfleet/v1",
        "kind": "ModelFleet",
        "metadata": {"name": f"loop-bench{suffix}", "owner": "bench@example.com"},
        "spec": {
            "matrix": {"segment": [f"s{i:04d}" for i in range(models)]},
            "template": {
                "apiVersion": "modelfleet/v1",
                "kind": "ModelSpec",
                "metadata": {
                    "name": f"loop-${{segment}}{suffix}",
                    "owner": "bench@example.com",
                    "risk_class": "low",
                },
                "spec": {
                    "dataset": {"name": "loop-bench", "where": {"segment": "${segment}"}},
                    "features": FEATURES,
                    "target": "label",
                    "pipeline": {"template": "tabular-classifier", "version": "1"},
                    # The drift shifts three of the seven features; the low class calls inputs
                    # drifted at half of them, so this fleet asks for 0.3.
                    "monitoring": {"drift_share": 0.3},
                },
            },
        },
    }
    return [dataset, fleet]


def start_services(infra: Infrastructure, work: Path, prefix: str, policies: Path) -> dict[str, Any]:
    key = work / "keys" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    env = {
        **os.environ,
        "FLEET_KAFKA_BOOTSTRAP": infra.bootstrap,
        "FLEET_MLFLOW_TRACKING_URI": infra.tracking_uri,
        "MLFLOW_TRACKING_URI": infra.tracking_uri,
        "FLEET_TOPIC_PREFIX": prefix,
        "FLEET_DATA_DIR": str(work / "data"),
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name("registry.pem.pub")),
        "FLEET_SERVING_TOKENS_FILE": str(local_serving_token(work / "serving-auth")[0]),
        "FLEET_POLICY_DIR": str(policies),
        "FLEET_MONITOR_REPORT_SECONDS": "5",
        "FLEET_INGEST_FEEDBACK_SECONDS": "5",
        "FLEET_RETRAIN_DATA_WAIT_SECONDS": "60",
        "FLEET_RAY_NUM_CPUS": "2",
        "FLEET_LOG_LEVEL": "INFO",
    }
    infra.provision(prefix, partitions=KafkaSettings().partitions)
    started: dict[str, Any] = {}
    for name in SERVICES:
        port = free_port()
        log = (work / f"{name}.log").open("wb")
        service_env = (
            env
            | infra.kafka_env(name)
            | infra.mlflow_env(name)
            | {"FLEET_HTTP_PORT": str(port), "FLEET_STATE_DIR": str(work / "state" / name)}
        )
        process = subprocess.Popen(
            [service_python(name), "-m", f"modelfleet_{name}"], env=service_env, stdout=log, stderr=log
        )
        started[name] = (process, port)
    wait_ready(started, work, timeout=240)
    # The CLI (apply, ingest) runs as the `cli` principal.
    return {"env": env | infra.kafka_env(CLI) | infra.mlflow_env(CLI), "services": started}


def settings_for(infra: Infrastructure, prefix: str) -> ServiceSettings:
    return ServiceSettings(topic_prefix=prefix, kafka=infra.kafka_settings(CLI))


async def wait_for_champions(settings: ServiceSettings, models: set[str], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        promoted = {
            e.model for e in await read_events(settings, (MODEL_PROMOTIONS,)) if isinstance(e, ModelPromoted)
        }
        print(f"  champions {len(promoted & models)}/{len(models)}", flush=True)
        if models <= promoted:
            return
        await asyncio.sleep(5)
    raise SystemExit(f"only some models became champion within {within:.0f}s")


LOOP_TOPICS = (
    DRIFT,
    PERFORMANCE_DEGRADATIONS,
    RETRAIN_REQUESTS,
    TRAINING_FAILED,
    MODEL_REGISTRATIONS,
    MODEL_PROMOTIONS,
    MODEL_ROLLBACKS,
)


async def run_loop(args: argparse.Namespace, infra: Infrastructure, work: Path) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    suffix = f"-{uuid.uuid4().hex[:5]}"
    policies = (REPO / args.policies).resolve()
    (work / "data").mkdir(parents=True, exist_ok=True)
    frame = make_data(args.models, seed=17, rows_per_model=ROWS_PER_MODEL)
    source = work / "data" / "loop-bench.csv"
    frame.to_csv(source, index=False)
    manifest = work / "loop.yaml"
    manifest.write_text(yaml.safe_dump_all(documents(args.models, str(source), suffix), sort_keys=False))
    fleet = start_services(infra, work, prefix, policies)
    settings = settings_for(infra, prefix)
    try:
        applied = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "modelfleet_cli.main", "apply", str(manifest)],
            env=fleet["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if applied.returncode != 0:
            raise SystemExit(applied.stdout + applied.stderr)
        specs = [declared.spec for declared in load_path(manifest).models]
        names = {spec.metadata.name for spec in specs}
        print(f"{args.models} models applied; training the first versions", flush=True)
        await wait_for_champions(settings, names, within=args.timeout)

        serving_port = fleet["services"]["serving"][1]
        driver = TrafficDriver(
            f"http://127.0.0.1:{serving_port}",
            rate=args.rate,
            workers=8,
            run_id="loop",
            token=local_serving_token(work / "serving-auth")[1],
        )
        slices = {spec.metadata.name: model_slice(frame, spec) for spec in specs}
        for spec in specs:
            driver.route(traffic_for(spec, slices[spec.metadata.name]))
        stop = asyncio.Event()
        sending = asyncio.create_task(driver.run(stop))
        print(f"steady traffic at {args.rate:g} requests/s for {args.warmup:g}s", flush=True)
        await asyncio.sleep(args.warmup)

        injected_at = datetime.now(UTC)
        for spec in specs:
            # The three most predictive features high together: a strong, labelled covariate shift.
            shifted = drifted_rows(slices[spec.metadata.name], ["x1", "x2", "x3"], top_share=0.3)
            driver.route(traffic_for(spec, shifted, kind="drifted"))
        print(f"drift injected into {len(specs)} models at {injected_at:%H:%M:%S}", flush=True)

        timelines: dict[str, LoopTimeline] = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            events = await read_events(settings, LOOP_TOPICS)
            timelines = loop_timelines(events, names, since=injected_at)
            done = [t for t in timelines.values() if t.promoted_at is not None]
            found = [t for t in timelines.values() if t.detected_at is not None]
            elapsed = (datetime.now(UTC) - injected_at).total_seconds()
            print(
                f"  {elapsed:5.0f}s: drift found {len(found)}/{len(names)}, "
                f"new champions {len(done)}/{len(names)}, {driver.sent} requests sent",
                flush=True,
            )
            if all(t.settled for t in timelines.values()) and len(timelines) == len(names):
                break
        stop.set()
        await sending
        return summarize(timelines, injected_at, args, driver.sent)
    finally:
        for process, _port in fleet["services"].values():
            process.terminate()
        for process, _port in fleet["services"].values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def summarize(
    timelines: dict[str, LoopTimeline], injected_at: datetime, args: argparse.Namespace, sent: int
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name in sorted(timelines):
        line = timelines[name]
        rows.append(
            {
                "model": name,
                "finding": line.finding,
                "drift_windows": line.drift_windows,
                "detected_s": _seconds(injected_at, line.detected_at),
                "retrain_s": _seconds(injected_at, line.retrain_at),
                "retrain_reason": line.retrain_reason,
                "registered": line.registered_version,
                "promoted": line.promoted_version,
                "promoted_s": _seconds(injected_at, line.promoted_at),
                "detection_to_promotion_s": line.detection_to_promotion_seconds,
                "rolled_back": line.rolled_back_version,
                "rolled_back_reason": line.rolled_back_reason,
            }
        )
    lines = list(timelines.values())
    promoted = [t for line in lines if (t := _seconds(injected_at, line.promoted_at)) is not None]
    detection = [t for line in lines if (t := line.detection_to_promotion_seconds) is not None]
    detected = [t for line in lines if (t := _seconds(injected_at, line.detected_at)) is not None]

    def percentile(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    return {
        "models": args.models,
        "rate": args.rate,
        "policies": args.policies,
        "requests_sent": sent,
        "promoted": len(promoted),
        "rolled_back": sum(1 for line in lines if line.rolled_back_version),
        "injection_to_champion_p50_s": percentile(promoted, 50),
        "injection_to_champion_p95_s": percentile(promoted, 95),
        "detection_to_champion_p50_s": percentile(detection, 50),
        "detection_to_champion_p95_s": percentile(detection, 95),
        "injection_to_drift_found_p50_s": percentile(detected, 50),
        "per_model": rows,
    }


def print_report(result: dict[str, Any]) -> None:
    print()
    header = (
        f"{'model':<22} {'drift found':>11} {'retrain':>8} {'registered':>10} {'champion':>9}  first finding"
    )
    print(header)
    for row in result["per_model"]:

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}s"

        print(
            f"{row['model']:<22} {cell(row['detected_s']):>11} {cell(row['retrain_s']):>8} "
            f"{('v' + row['registered']) if row['registered'] else '-':>10} {cell(row['promoted_s']):>9}  "
            f"{row['finding']}"
        )
    print()
    p50, p95 = result["injection_to_champion_p50_s"], result["injection_to_champion_p95_s"]
    print(f"new champion at 100 % in {result['promoted']}/{result['models']} models")
    for row in result["per_model"]:
        if row["rolled_back"]:
            print(
                f"  {row['model']}: v{row['rolled_back']} rolled back by its canary: "
                f"{row['rolled_back_reason']}"
            )
    if p50 is not None:
        verdict = "met" if p50 <= 120 else "NOT met"
        print(
            f"drift injected -> new champion: p50 {p50:.0f}s, p95 {p95:.0f}s (goal p50 <= 120 s: {verdict})"
        )
        print(
            f"drift detected -> new champion: p50 {result['detection_to_champion_p50_s']:.0f}s, "
            f"p95 {result['detection_to_champion_p95_s']:.0f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=12, help="Models to drift (at least 10).")
    parser.add_argument("--rate", type=float, default=150.0, help="Requests per second over all models.")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="Seconds of steady traffic before the drift."
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="Longest wait for each phase, seconds.")
    parser.add_argument(
        "--policies", default="examples/demo/policies", help="Risk policy directory (repo-relative)."
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 10 models, 15 s warm-up.")
    args = parser.parse_args()
    if args.quick:
        args.models, args.warmup = 10, 15.0
    if args.models < 10:
        parser.error("the issue asks for at least 10 models")
    load_policies(REPO / args.policies)  # fail now on a wrong directory, not after the trainings
    home = REPO / ".local" / "bench"
    work = home / f"closed-loop-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    work.mkdir(parents=True)
    infra = start_infrastructure(home)
    try:
        result = asyncio.run(run_loop(args, infra, work))
    finally:
        stop_infrastructure(infra)
    print_report(result)
    out = REPO / "benchmarks" / "results" / f"closed-loop-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"results: {out}\nlogs: {work}")


if __name__ == "__main__":
    main()
