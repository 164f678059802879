"""`make compose-test`: prove docker-compose.yml on a machine with no Docker engine and no image hub.

What it does, printing each step and a summary, exit 0 only if all of it worked:

1. tools: Debian's podman, runc and debootstrap (apt-get, only when missing; needs root) and
   podman-compose (PyPI, pinned, in a tool venv: Debian bookworm's 1.0.3 ignores network_mode and
   cannot reset a list in an override). Podman runs with runc, cgroupfs, no default ulimits and
   its storage under the home (a containers.conf and storage.conf written there).
2. images: a Debian bookworm base made with debootstrap from the machine's Debian mirror (once),
   then the compose file's images built on it with `podman build --build-arg BASE=...` (cached
   layers): mlflow.Dockerfile, service.Dockerfile for the seven services, and kafka.Dockerfile /
   postgres.Dockerfile for what the compose file pulls (apache/kafka, postgres). Builds use the
   host's network and mount the machine's CA bundle and pip settings read-only, so apt and pip
   reach their registries the way the host does; nothing of either is baked into an image.
3. the fleet: docker-compose.yml + deploy/compose/podman.override.yml (host network, moved ports)
   under podman-compose, started in the order of its depends_on conditions (podman < 4.6 cannot
   wait for "healthy", and without systemd podman runs no health checks itself: this script runs
   each service's own health check with `podman healthcheck run`), then every service's /readyz.
4. two models: `modelfleet apply` of two of examples/fleet/fuel-efficiency's models (dataset and
   first batch included), waited for until both are champion (`modelfleet status --json`).
5. a prediction through serving (/predict with the bearer token serving-tokens made): HTTP 200
   with predictions, from each champion.
6. `podman-compose down -v`, also after a failure or Ctrl-C (unless --keep).

    python deploy/compose/compose_test.py [--keep] [--timeout SECONDS]

Files under ``$FLEET_LOCAL_HOME/compose`` (default ``.local/compose``): containers.conf,
storage.conf, ``storage/`` (podman's images and volumes), ``tools/`` (podman-compose),
``datasets/`` (the fleet's dataset store, bind-mounted), ``models/`` (what is applied).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
OVERRIDE_FILE = REPO / "deploy" / "compose" / "podman.override.yml"
PROJECT = "modelfleet-ct"
PODMAN_COMPOSE = "podman-compose==1.6.0"
APT_PACKAGES = ("podman", "runc", "debootstrap")
BASE_IMAGE = "localhost/modelfleet-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
KAFKA_IMAGE = "localhost/modelfleet-kafka:4.3.1"
POSTGRES_IMAGE = "localhost/modelfleet-postgres:15"
SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")
#: Host ports of podman.override.yml: they must be free before the fleet starts.
PORTS = {"kafka": 19092, "kafka controller": 19093, "postgres": 15432, "mlflow": 15000} | {
    service: 18101 + index for index, service in enumerate(SERVICES)
}
SERVING = f"http://127.0.0.1:{PORTS['serving']}"
KAFKA_BOOTSTRAP = f"127.0.0.1:{PORTS['kafka']}"
#: The example applied: its dataset (with the first batch) and two of its models.
EXAMPLE = REPO / "examples" / "fleet" / "fuel-efficiency"
SEGMENTS = ("long-haul", "regional")
MODELS = tuple(f"expected-fuel-{segment}" for segment in SEGMENTS)
#: The pip settings (`pip config list`) a build gets; find-links and the like name host paths.
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy", "default-timeout", "timeout", "retries")
CONTAINER_CA = "/etc/ssl/certs/ca-certificates.crt"


class Failed(Exception):
    """A step failed; the message says what and what to do."""


@dataclass
class Report:
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float]] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)


def say(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def step(report: Report, name: str) -> Iterator[None]:
    say(f"== {name}")
    began = time.monotonic()
    try:
        yield
    except BaseException:
        report.steps.append((f"{name}: FAILED", time.monotonic() - began))
        raise
    seconds = time.monotonic() - began
    report.steps.append((name, seconds))
    say(f"   {name}: done in {seconds:.0f} s")


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    quiet: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; its output is shown unless `quiet` (then kept for the error message)."""
    try:
        proc = subprocess.run(
            list(cmd),
            env=env,
            check=False,
            text=True,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise Failed(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from error
    except FileNotFoundError as error:
        raise Failed(f"`{cmd[0]}` is not installed") from error
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-30:])
        raise Failed(f"`{' '.join(cmd)}` failed (exit {proc.returncode})" + (f":\n{tail}" if tail else ""))
    return proc


class Podman:
    """podman and podman-compose with this test's configuration."""

    def __init__(self, home: Path, data_dir: Path) -> None:
        self.home = home
        self.data_dir = data_dir
        self.env = os.environ | {
            "CONTAINERS_CONF": str(home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
            "COMPOSE_TEST_DATA": str(data_dir),
        }
        self.compose_bin = home / "tools" / "venv" / "bin" / "podman-compose"

    def __call__(
        self, *args: str, check: bool = True, quiet: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], env=self.env, check=check, quiet=quiet)

    def compose(self, *args: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.compose_bin), "-p", PROJECT, "-f", str(COMPOSE_FILE), "-f", str(OVERRIDE_FILE), *args]
        return run(cmd, env=self.env, check=check, quiet=quiet)

    def image_exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def container(self, service: str) -> str:
        proc = self(
            "ps",
            "-a",
            "--filter",
            f"label=io.podman.compose.project={PROJECT}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        )
        names = proc.stdout.split()
        if not names:
            raise Failed(f"podman-compose made no container for {service}")
        return names[0]

    def state(self, name: str) -> tuple[str, int]:
        proc = self("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, check=False)
        status, _, code = proc.stdout.strip().partition(" ")
        return status, int(code or 0)

    def restarts(self) -> dict[str, int]:
        """Restarts per container of the project (a service that exited and came back)."""
        proc = self(
            "ps",
            "-a",
            "--filter",
            f"label=io.podman.compose.project={PROJECT}",
            "--format",
            "{{.Names}}",
            check=False,
        )
        counts = {}
        for name in proc.stdout.split():
            count = self("inspect", "--format", "{{.RestartCount}}", name, check=False).stdout.strip()
            if count.isdigit() and int(count):
                counts[name] = int(count)
        return counts

    def logs(self, name: str, lines: int = 40) -> str:
        return self("logs", "--tail", str(lines), name, check=False).stdout


# -- 1. tools -----------------------------------------------------------------------------------


def install_tools(home: Path) -> None:
    missing = [
        package
        for package in APT_PACKAGES
        if "install ok installed"
        not in run(["dpkg-query", "-W", "-f=${Status}", package], check=False, quiet=True).stdout
    ]
    if missing:
        say(f"installing {' '.join(missing)} with apt-get")
        run(["apt-get", "update", "-q"], quiet=True, timeout=900)
        run(
            ["apt-get", "install", "-y", "-q", *missing],
            env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
            quiet=True,
            timeout=1800,
        )
    else:
        say(f"{', '.join(APT_PACKAGES)}: installed")
    venv = home / "tools" / "venv"
    version = PODMAN_COMPOSE.split("==")[1]
    compose = venv / "bin" / "podman-compose"
    current = run([str(compose), "--version"], check=False, quiet=True).stdout if compose.exists() else ""
    if f"podman-compose version {version}" not in current:
        say(f"installing {PODMAN_COMPOSE} into {venv}")
        run([sys.executable, "-m", "venv", "--clear", str(venv)], quiet=True)
        run([str(venv / "bin" / "pip"), "install", "-q", PODMAN_COMPOSE], quiet=True, timeout=900)
    else:
        say(f"podman-compose {version}: installed")
    (home / "containers.conf").write_text(
        "# Written by deploy/compose/compose_test.py (CONTAINERS_CONF of make compose-test).\n"
        "[containers]\n"
        "# No ulimits copied from the host (they exceed what the container may set here).\n"
        "default_ulimits = []\n"
        "[engine]\n"
        "# crun refuses a hybrid cgroup layout; runc takes it. No systemd: cgroupfs, events in a file.\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    (home / "storage.conf").write_text(
        "# Written by deploy/compose/compose_test.py (CONTAINERS_STORAGE_CONF of make compose-test).\n"
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{home / "storage"}"\n'
        f'runroot = "{home / "run"}"\n'
    )


# -- 2. images ----------------------------------------------------------------------------------


def debian_mirrors() -> tuple[str, str]:
    """The machine's Debian mirror and security mirror (its apt sources), or deb.debian.org's."""
    main, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    found: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if line.startswith("URIs:"):
                found.extend(words[1:])
            elif words[:1] == ["deb"]:
                found.extend(word for word in words[1:] if "://" in word)
    for uri in found:
        if uri.rstrip("/").endswith("debian-security"):
            security = uri.rstrip("/")
        elif uri.rstrip("/").endswith("/debian"):
            main = uri.rstrip("/")
    return main, security


def build_base(podman: Podman) -> None:
    if podman.image_exists(BASE_IMAGE):
        say(f"{BASE_IMAGE}: cached")
        return
    main, security = debian_mirrors()
    say(f"making {BASE_IMAGE} with debootstrap from {main} (once; a few minutes)")
    with tempfile.TemporaryDirectory(dir=podman.home, prefix="rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(root),
                main,
            ],
            quiet=True,
            timeout=1800,
        )
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(
            f"Types: deb\nURIs: {main}\nSuites: bookworm bookworm-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        for leftover in [
            *(root / "var/cache/apt/archives").glob("*.deb"),
            *(root / "var/lib/apt/lists").glob("*_*"),
        ]:
            leftover.unlink()
        # `python` and `pip` of the Dockerfiles: a venv on PATH, like python:3.11-slim's own
        # (Debian's system pip refuses to install into /usr, PEP 668).
        run(["chroot", str(root), "python3", "-m", "venv", "/opt/python"], quiet=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                [
                    "podman",
                    "import",
                    "--change",
                    "ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change",
                    'CMD ["/bin/bash"]',
                    "-",
                    BASE_IMAGE,
                ],
                stdin=tar.stdout,
                env=podman.env,
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as error:
            raise Failed(
                f"podman import of the base failed: {error.stderr.decode(errors='replace')}"
            ) from error
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()


def host_pip_settings() -> tuple[str, Path | None]:
    """The pip.conf a build gets (from `pip config list`) and the host's CA bundle, if any."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], check=False, quiet=True).stdout
    settings: dict[str, str] = {}
    ca: str | None = None
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        value = value.strip().strip("'\"")
        if name == "cert":
            ca = ca or value
        elif name in PIP_KEYS:
            settings[name] = value
    for candidate in (ca, os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), CONTAINER_CA):
        if candidate and Path(candidate).is_file():
            settings["cert"] = CONTAINER_CA
            return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()), Path(candidate)
    return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()), None


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path
    context: Path
    args: tuple[tuple[str, str], ...] = ()


def kafka_context(home: Path) -> Path:
    """kafka.Dockerfile's build context: its entry point and the jars `make kafka` resolves."""
    from modelfleet_devkit.kafka import resolve_jars

    jars = resolve_jars(home.parent)
    context = home / "kafka-image"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(jars, context / "libs", ignore=shutil.ignore_patterns(".*"))
    shutil.copy2(REPO / "deploy" / "docker" / "kafka-entrypoint.sh", context / "kafka-entrypoint.sh")
    return context


def build_images(podman: Podman) -> list[str]:
    docker = REPO / "deploy" / "docker"
    images = [
        Image(KAFKA_IMAGE, docker / "kafka.Dockerfile", kafka_context(podman.home)),
        Image(POSTGRES_IMAGE, docker / "postgres.Dockerfile", docker),
        Image("ghcr.io/modelfleet/mlflow:dev", docker / "mlflow.Dockerfile", REPO),
        *(
            Image(
                f"ghcr.io/modelfleet/{service}:dev",
                docker / "service.Dockerfile",
                REPO,
                (("SERVICE", service),),
            )
            for service in SERVICES
        ),
    ]
    pip_conf, ca = host_pip_settings()
    pip_file = podman.home / "pip.conf"
    pip_file.write_text(pip_conf)
    mounts = ["-v", f"{pip_file}:/etc/pip.conf:ro"]
    if ca is not None:
        mounts += ["-v", f"{ca}:{CONTAINER_CA}:ro"]
    built = []
    for image in images:
        say(f"building {image.tag} ({image.dockerfile.relative_to(REPO)})")
        began = time.monotonic()
        args = [arg for key, value in image.args for arg in ("--build-arg", f"{key}={value}")]
        proc = podman(
            "build",
            "--network",
            "host",
            *mounts,
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            *args,
            "-f",
            str(image.dockerfile),
            "-t",
            image.tag,
            str(image.context),
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise Failed(f"building {image.tag} from {image.dockerfile.relative_to(REPO)} failed:\n{tail}")
        cached = proc.stdout.count("Using cache")
        say(f"{image.tag}: built in {time.monotonic() - began:.0f} s ({cached} cached steps)")
        built.append(image.tag)
    return built


# -- 3. the fleet -------------------------------------------------------------------------------


def check_ports() -> None:
    busy = []
    for name, port in PORTS.items():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(f"{name} {port}")
    if busy:
        raise Failed(
            "ports of deploy/compose/podman.override.yml are taken: "
            + ", ".join(busy)
            + f" (a fleet left by --keep? `podman-compose -p {PROJECT} ... down -v`;"
            + " or stop what listens there)"
        )


def wait_for(what: str, probe: Any, timeout: float, podman: Podman, service: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(2)
    logs = podman.logs(podman.container(service)) if service else ""
    raise Failed(
        f"{what} within {timeout:.0f} s" + (f"; last log lines of {service}:\n{logs}" if logs else "")
    )


def completed(podman: Podman, service: str, timeout: float) -> None:
    name = podman.container(service)

    def done() -> bool:
        status, code = podman.state(name)
        return status == "exited" and code == 0

    wait_for(f"{service} did not complete successfully", done, timeout, podman, service)
    say(f"{service}: completed")


def healthy(podman: Podman, service: str, timeout: float) -> None:
    name = podman.container(service)
    wait_for(
        f"{service} was not healthy",
        lambda: podman("healthcheck", "run", name, check=False).returncode == 0,
        timeout,
        podman,
        service,
    )
    say(f"{service}: healthy")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start_fleet(podman: Podman, timeout: float) -> None:
    """`up -d` phase by phase, each waited for as its dependents' depends_on condition says."""

    def up(*services: str) -> None:
        say(f"podman-compose up -d {' '.join(services)}")
        podman.compose("up", "-d", "--no-build", "--no-deps", *services)

    up("postgres-credentials", "mlflow-credentials", "serving-tokens", "kafka")
    for service in ("postgres-credentials", "mlflow-credentials", "serving-tokens"):
        completed(podman, service, timeout)
    up("postgres")
    healthy(podman, "postgres", timeout)
    up("postgres-roles")
    completed(podman, "postgres-roles", timeout)
    up("mlflow")
    healthy(podman, "kafka", timeout)
    healthy(podman, "mlflow", timeout)
    up("mlflow-users")
    completed(podman, "mlflow-users", timeout)
    up(*SERVICES)
    for service in SERVICES:
        url = f"http://127.0.0.1:{PORTS[service]}/readyz"
        wait_for(f"{service} was not ready ({url})", lambda u=url: http_ok(u), timeout, podman, service)
        say(f"{service}: ready ({url})")


# -- 4. two models ------------------------------------------------------------------------------


def cli_env(podman: Podman) -> dict[str, str]:
    return os.environ | {
        "FLEET_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "FLEET_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "FLEET_KAFKA_ALLOW_PLAINTEXT": "true",
        "FLEET_TOPIC_PREFIX": "",
        "FLEET_DATA_DIR": str(podman.data_dir),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
    }


def modelfleet() -> str:
    cli = Path(sys.executable).parent / "modelfleet"
    if not cli.exists():
        raise Failed(f"no `modelfleet` next to {sys.executable}: run `make install` first")
    return str(cli)


def models_dir(home: Path) -> Path:
    """examples/fleet/fuel-efficiency with its fleet cut to two segments."""
    target = home / "models"
    shutil.rmtree(target, ignore_errors=True)
    (target / "data").mkdir(parents=True)
    shutil.copy2(EXAMPLE / "dataset.yaml", target / "dataset.yaml")
    shutil.copy2(EXAMPLE / "data" / "truck-trips.csv", target / "data" / "truck-trips.csv")
    fleet = yaml.safe_load((EXAMPLE / "fleet.yaml").read_text())
    fleet["spec"]["matrix"]["segment"] = list(SEGMENTS)
    (target / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    return target


def apply_models(podman: Podman, report: Report, timeout: float) -> None:
    target = models_dir(podman.home)
    say(f"modelfleet apply {target}  ({', '.join(MODELS)} and dataset truck-trips)")
    run([modelfleet(), "apply", str(target)], env=cli_env(podman), timeout=300)
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        proc = run(
            [modelfleet(), "status", "--json"], env=cli_env(podman), quiet=True, check=False, timeout=120
        )
        try:
            rows = {row["model"]: row for row in json.loads(proc.stdout)}
        except json.JSONDecodeError:
            rows = {}
        for model in MODELS:
            row = rows.get(model)
            line = f"{row['stage']} ({row['detail']})" if row else "not seen yet"
            if seen.get(model) != line:
                seen[model] = line
                say(f"{model}: {line}")
            if row and (row["stage"].startswith("failed") or row["stage"] == "rejected"):
                raise Failed(f"{model} did not make it: {line}")
        if all(rows.get(m, {}).get("stage") == "champion" and rows[m].get("champion") for m in MODELS):
            report.champions = {m: rows[m]["champion"] for m in MODELS}
            return
        if time.monotonic() > deadline:
            raise Failed(f"not every model was champion within {timeout:.0f} s: {seen}")
        time.sleep(5)


# -- 5. predictions -----------------------------------------------------------------------------


def serving_token(podman: Podman) -> str:
    mountpoint = podman(
        "volume", "inspect", "--format", "{{.Mountpoint}}", f"{PROJECT}_serving-tokens"
    ).stdout.strip()
    token_file = Path(mountpoint) / "compose.token"
    if not token_file.is_file():
        raise Failed(f"serving-tokens wrote no {token_file}")
    return token_file.read_text().strip()


def predict(podman: Podman, report: Report, timeout: float) -> None:
    token = serving_token(podman)
    fleet = yaml.safe_load((EXAMPLE / "fleet.yaml").read_text())
    features: list[str] = fleet["spec"]["template"]["spec"]["features"]
    rows: dict[str, dict[str, str]] = {}
    with (EXAMPLE / "data" / "truck-trips.csv").open() as data:
        header = data.readline().strip().split(",")
        for line in data:
            row = dict(zip(header, line.strip().split(","), strict=True))
            rows.setdefault(row["segment"], row)
    for segment, model in zip(SEGMENTS, MODELS, strict=True):
        row = rows[segment]
        inputs = {name: float(row[name]) for name in features}
        body = json.dumps(
            {"model": model, "request_id": f"compose-test-{segment}", "inputs": [inputs]}
        ).encode()
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(
                f"{SERVING}/predict",
                data=body,
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                status, answer = error.code, error.read().decode(errors="replace")
            except OSError as error:
                status, answer = 0, str(error)
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise Failed(f"POST {SERVING}/predict for {model}: HTTP {status} {answer[:300]}")
            say(f"{model}: serving answered {status} ({answer[:120]}); retrying")
            time.sleep(3)
        result = json.loads(answer)
        if not result.get("predictions"):
            raise Failed(f"serving answered 200 without predictions for {model}: {answer[:300]}")
        line = (
            f"POST /predict {model} -> 200: version {result.get('version')} ({result.get('route')}), "
            f"predictions {result['predictions']} (true fuel_l_per_100km {row['fuel_l_per_100km']})"
        )
        say(line)
        report.predictions.append(line)


# -- main ---------------------------------------------------------------------------------------


def teardown(podman: Podman) -> None:
    say(f"podman-compose -p {PROJECT} down -v")
    proc = podman.compose("down", "-v", "-t", "45", check=False)
    if proc.returncode != 0:
        say(f"down -v exited {proc.returncode}:\n" + "\n".join(proc.stdout.splitlines()[-15:]))


def summary(report: Report, code: int, error: str | None) -> None:
    total = time.monotonic() - report.started
    print("\n" + "=" * 78)
    print(f"make compose-test: {'PASSED' if code == 0 else 'FAILED'} in {total:.0f} s")
    for name, seconds in report.steps:
        print(f"  {seconds:6.0f} s  {name}")
    for model, version in report.champions.items():
        print(f"  champion: {model} v{version}")
    for line in report.predictions:
        print(f"  {line}")
    for name, count in report.restarts.items():
        print(f"  restarted {count}x by its restart policy: {name} (podman logs {name})")
    if error:
        print(f"  error: {error}")
    print("=" * 78, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="Leave the fleet running (no down -v).")
    parser.add_argument(
        "--timeout", type=float, default=900, help="Seconds each wait may take (default 900)."
    )
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "make compose-test runs podman as root (rootful, host network) and installs with apt:"
            " run it as root",
            file=sys.stderr,
        )
        return 2
    home_root = Path(os.environ.get("FLEET_LOCAL_HOME") or REPO / ".local").resolve()
    home = home_root / "compose"
    home.mkdir(parents=True, exist_ok=True)
    data_dir = home / "datasets"
    podman = Podman(home, data_dir)
    report = Report()
    code, error = 1, None
    started = False

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        with step(report, "tools (apt: podman runc debootstrap; podman-compose)"):
            install_tools(home)
        with step(report, "base image (debootstrap bookworm)"):
            build_base(podman)
        with step(report, "images (podman build, cached layers)"):
            build_images(podman)
        with step(report, "fleet up (podman-compose) and ready"):
            teardown(podman)  # what an interrupted run left
            check_ports()
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            os.chown(data_dir, 10001, 10001)  # the images' user writes the dataset store
            started = True
            start_fleet(podman, options.timeout)
        with step(report, f"apply {len(MODELS)} models, wait until champion"):
            apply_models(podman, report, options.timeout)
        with step(report, "predict through serving"):
            predict(podman, report, 180)
        code = 0
    except Failed as failure:
        error = str(failure)
        say(f"FAILED: {error}")
    except KeyboardInterrupt:
        error = "interrupted"
        code = 130
    finally:
        if started:
            report.restarts = podman.restarts()
        if started and not options.keep:
            with step(report, "down -v"):
                teardown(podman)
        elif started:
            say(f"--keep: the fleet is still running (podman-compose -p {PROJECT} ... down -v stops it)")
    summary(report, code, error)
    return code


if __name__ == "__main__":
    sys.exit(main())
