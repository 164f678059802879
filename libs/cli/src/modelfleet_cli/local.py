"""The embedded local fleet: every service as a background process on 127.0.0.1.

    python -m modelfleet_cli.local up     # start (idempotent) and print a health table
    python -m modelfleet_cli.local down   # stop every service (SIGTERM, then SIGKILL)

Kafka and MLflow are started before by `make kafka mlflow` (modelfleet_common.local).
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from modelfleet_common.local._process import ManagedProcess, default_home
from modelfleet_common.signing import ArtifactSigner

REPO = Path(__file__).resolve().parents[4]
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
console = Console()


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


def fleet_environment(home: Path) -> dict[str, str]:
    """Settings every local service shares: one data store, one registry signing key, the policies.

    The signing key is made once per local home; its public half is the fleet's trusted key, so
    serving and the evaluator accept exactly what this fleet's registry signed. The approvers file
    starts empty (every approval is rejected) until people add the lines `modelfleet keygen` prints.
    """
    key = home / "signing" / "registry.pem"
    ArtifactSigner.load_or_create(key)
    approvers = home / "approvers.txt"
    if not approvers.exists():
        approvers.write_text(APPROVERS_HEADER)
    return {
        "FLEET_DATA_DIR": str(home / "data"),
        "FLEET_SIGNING_KEY_FILE": str(key),
        "FLEET_TRUSTED_KEYS_FILE": str(key.with_name(key.name + ".pub")),
        "FLEET_POLICY_DIR": str(REPO / "policies"),
        "FLEET_APPROVER_KEYS_FILE": str(approvers),
    }


APPROVERS_HEADER = """\
# Approvers whose signed approvals the deployer accepts: one `name base64key` line each, the name
# as listed in policies/<risk class>.yaml. `modelfleet keygen KEYFILE --approver NAME` prints the
# line; the deployer reads this file when it starts.
"""


def up(home: Path) -> None:
    """Start every service that is not running yet, then show the fleet's health."""
    shared = fleet_environment(home)
    for service, port in PORTS.items():
        env = {
            **os.environ,
            **shared,
            "FLEET_HTTP_PORT": str(port),
            "FLEET_STATE_DIR": str(home / "fleet" / service / "state"),
        }
        _process(home, service).start(
            endpoint=f"127.0.0.1:{port}",
            ports=(port,),
            probe=_ready,
            prepare=partial(_command, service, env),
            timeout=120,
            logs=(),
        )
    show(home)


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


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    home = default_home()
    {"up": up, "down": down, "status": show}[command](home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
