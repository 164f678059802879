"""The embedded local fleet: every service as a background process on 127.0.0.1.

    modelfleet-dev up       # start (idempotent) and print a health table
    modelfleet-dev status   # the health table
    modelfleet-dev down     # stop every service (SIGTERM, then SIGKILL)

Kafka and MLflow are started before by `make kafka mlflow` (`modelfleet_devkit.kafka`, `.mlflow`). On the
secured local broker `up` first provisions the fleet's topics and ACLs as `admin`, then starts each
service as its own Kafka principal (password from its 0600 file, never in the environment). Every
other `FLEET_*` variable of the caller's environment reaches the services; `FLEET_POLICY_DIR` picks the
risk policies (default `policies/`), and `FLEET_DEMO_APPROVER=NAME` gives NAME a local approval key
whose public line goes into the approvers file before the deployer starts (`make demo` does both).
The settings the fleet was started with are kept in `<home>/fleet/environment.json`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import httpx
from rich.table import Table

from modelfleet_cli.connecting import admin_settings, local_broker, principal_environment
from modelfleet_cli.local_home import REPO
from modelfleet_cli.local_home import mlflow as local_mlflow
from modelfleet_cli.output import out
from modelfleet_cli.provisioning import provision
from modelfleet_cli.tokens import local_serving_token
from modelfleet_common.naming import TopicNamer
from modelfleet_common.signing import ArtifactSigner

from ._process import ManagedProcess

#: Host ports of the local fleet (the same as docker-compose.yml's).
PORTS = {
    "ingest": 8101,
    "trainer": 8102,
    "evaluator": 8103,
    "registry": 8104,
    "deployer": 8105,
    "monitor": 8106,
    "serving": 8107,
}
#: Tables whole in a pipe or a log file, as the CLI's (modelfleet_cli.output).
console = out


SERVICES = tuple(PORTS)


def service_python(service: str) -> str:
    """The interpreter that runs `service`: serving has its own environment (.venv-serving)."""
    own = REPO / ".venv-serving" / "bin" / "python"
    return str(own) if service == "serving" and own.exists() else sys.executable


def _command(service: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    return [service_python(service), "-m", f"modelfleet_{service}"], env


def _process(home: Path, service: str) -> ManagedProcess:
    return ManagedProcess(service, home / "fleet" / service, marker=f"modelfleet_{service}")


def _ready(endpoint: str, timeout: float) -> bool:
    try:
        return httpx.get(f"http://{endpoint}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


#: Names the caller's environment picks the policies and the demo's approver by.
POLICY_DIR_ENV = "FLEET_POLICY_DIR"
DEMO_APPROVER_ENV = "FLEET_DEMO_APPROVER"
#: The risk policies at demo speed that `make demo` runs the fleet with.
DEMO_POLICY_DIR = REPO / "examples" / "demo" / "policies"


def fleet_environment(home: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings every local service shares: one data store, one registry signing key, the policies.

    The signing key is made once per local home; its public half is the fleet's trusted key, so
    serving and the evaluator accept exactly what this fleet's registry signed. The approvers file
    starts empty (every approval is rejected) until people add the lines `modelfleet keygen` prints,
    or `FLEET_DEMO_APPROVER` names an approver whose demo key this home keeps (see `demo_approver`).
    The policies are `FLEET_POLICY_DIR` of `environ` (default: the process environment), else
    `policies/`.
    """
    environ = os.environ if environ is None else environ
    key = home / "signing" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    approvers = approvers_file(home)
    if not approvers.exists():
        approvers.parent.mkdir(parents=True, exist_ok=True)
        approvers.write_text(APPROVERS_HEADER)
    if environ.get(DEMO_APPROVER_ENV):
        demo_approver(home, environ[DEMO_APPROVER_ENV])
    policy_dir = Path(environ.get(POLICY_DIR_ENV) or REPO / "policies")
    # Serving refuses requests without a bearer token: the CLI and the demo use this home's token.
    serving_tokens, _ = local_serving_token(home)
    return {
        "FLEET_DATA_DIR": str(home / "data"),
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name(key.name + ".pub")),
        POLICY_DIR_ENV: str(policy_dir.resolve()),
        "FLEET_APPROVER_KEYS_FILE": str(approvers),
        "FLEET_SERVING_TOKENS_FILE": str(serving_tokens),
    }


def approvers_file(home: Path) -> Path:
    """The local fleet's approver keys file (`FLEET_APPROVER_KEYS_FILE` of the deployer)."""
    return home / "approvers.txt"


def demo_approver(home: Path, name: str) -> tuple[ArtifactSigner, bool]:
    """The demo's approval key for `name` (made once per local home) and whether its public line
    was added to the approvers file just now (a running deployer reads it only when it starts).

    Refuses a name the file already lists with another key: the deployer would reject the file.
    """
    signer = ArtifactSigner.load_or_create(home / "signing" / f"approver-{name}.pem")
    approvers = approvers_file(home)
    text = approvers.read_text() if approvers.exists() else APPROVERS_HEADER
    listed = [line.split("#", 1)[0].split() for line in text.splitlines()]
    keys = [parts[1] for parts in listed if len(parts) == 2 and parts[0] == name]
    if signer.public_key_b64 in keys:
        return signer, False
    if keys:
        raise ValueError(
            f"{approvers} already lists approver {name!r} with another key; remove that line "
            f"(or use another local home) to let the demo approve as {name!r}"
        )
    approvers.parent.mkdir(parents=True, exist_ok=True)
    approvers.write_text(text.rstrip("\n") + f"\n{name} {signer.public_key_b64}\n")
    return signer, True


def environment_file(home: Path) -> Path:
    """Where `up` records the shared settings the running fleet was started with."""
    return home / "fleet" / "environment.json"


def running_environment(home: Path) -> dict[str, str] | None:
    """The `FLEET_*` settings the running fleet was started with; None when nothing runs."""
    if not any(_process(home, service).running_pid() for service in SERVICES):
        return None
    try:
        recorded = json.loads(environment_file(home).read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in recorded.items()}


APPROVERS_HEADER = """\
# Approvers whose signed approvals the deployer accepts: one `name base64key` line each, the name
# as listed in policies/<risk class>.yaml. `modelfleet keygen KEYFILE --approver NAME` prints the
# line; the deployer reads this file when it starts.
"""


def _shared_settings(home: Path) -> dict[str, str]:
    """`fleet_environment` plus every other `FLEET_*` variable of this process's environment."""
    passed_on = {key: value for key, value in os.environ.items() if key.startswith("FLEET_")}
    passed_on.pop("FLEET_LOCAL_HOME", None)
    return {**passed_on, **fleet_environment(home)}


def _start(home: Path, service: str, shared: Mapping[str, str]) -> None:
    port = PORTS[service]
    env = {
        **os.environ,
        **shared,
        **principal_environment(home, service),
        "FLEET_HTTP_PORT": str(port),
        "FLEET_STATE_DIR": str(home / "fleet" / service / "state"),
    }
    # Its own MLflow user on the local server (behind auth); services that never call MLflow, none.
    tracking_uri = env.get("FLEET_MLFLOW_TRACKING_URI") or f"http://127.0.0.1:{local_mlflow.DEFAULT_PORT}"
    env.update(local_mlflow.user_environment(home, service, tracking_uri, environ=env))
    _process(home, service).start(
        endpoint=f"127.0.0.1:{port}",
        ports=(port,),
        probe=_ready,
        prepare=partial(_command, service, env),
        timeout=120,
        logs=(),
    )


def up(home: Path) -> None:
    """Start every service that is not running yet, then show the fleet's health.

    Services already running keep the settings they were started with; a warning names the
    settings that differ from this call's (stop the fleet first to change them).
    """
    shared = _shared_settings(home)
    before = running_environment(home)
    provision_kafka(home)
    if before is None:
        environment_file(home).parent.mkdir(parents=True, exist_ok=True)
        environment_file(home).write_text(json.dumps(shared, indent=2, sort_keys=True))
    else:
        differ = sorted(key for key in set(shared) | set(before) if shared.get(key) != before.get(key))
        if differ:
            console.print(
                f"[yellow]the running fleet was started with other {', '.join(differ)}[/]; "
                "it keeps them (`make down` first to change them)"
            )
    for service in PORTS:
        _start(home, service, before or shared)
    show(home)


def restart(home: Path, service: str) -> None:
    """Stop `service` and start it again with the settings the fleet runs with (e.g. so the
    deployer reads a changed approvers file)."""
    shared = running_environment(home) or _shared_settings(home)
    _process(home, service).stop(timeout=40.0)
    _start(home, service, shared)


def provision_kafka(home: Path) -> None:
    """Create the fleet's topics and ACLs on the secured local broker, as its admin (idempotent)."""
    if local_broker(home) is None:
        return
    settings = admin_settings(home)
    done = provision(settings.kafka, TopicNamer(settings.topic_prefix))
    console.print(
        f"kafka: {len(done.created_topics)} topics created, {len(done.acls)} ACL bindings "
        f"(`modelfleet acls` lists them)"
    )


def show(home: Path) -> None:
    table = Table("service", "endpoint", "ready", "logs", title="modelfleet local fleet")
    for service, port in PORTS.items():
        ok = _ready(f"127.0.0.1:{port}", 2.0)
        table.add_row(
            service,
            f"http://127.0.0.1:{port}",
            "[green]ready[/]" if ok else "[red]down[/]",
            str(_process(home, service).log_file),
        )
    console.print(table)
    console.print("metrics: http://127.0.0.1:<port>/metrics · stop everything with `make down`")


def down(home: Path) -> None:
    for service in PORTS:
        _process(home, service).stop(timeout=40.0)
