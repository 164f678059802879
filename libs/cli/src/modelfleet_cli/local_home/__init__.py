"""The local home's files an operator's commands read: which local broker and MLflow server run here,
and the credentials a principal signs in to them with.

The development kit (`modelfleet_devkit`: `make kafka`, `make mlflow`, `make postgres`, `make demo`)
starts those processes and writes these files under ``$FLEET_LOCAL_HOME`` (default ``./.local``);
the CLI only reads them, so `modelfleet` talks to a local fleet as its own principal with no
settings at all (`modelfleet_cli.connecting`, `modelfleet_cli.mlflow_access`). The layout is
defined here once, and the devkit writes it through these same classes:

    <home>/kafka/   kafka.pid, endpoint, server.properties, data/.modelfleet-mode,
                    tls/ca.pem, credentials/<principal>.password        (`local_home.kafka`)
    <home>/mlflow/  mlflow.pid, endpoint, artifacts/, credentials/<user>.password (`local_home.mlflow`)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "FLEET_LOCAL_HOME"
#: The checkout this CLI runs from (an editable install): its `policies/` are the default ones.
REPO = Path(__file__).resolve().parents[5]


def default_home() -> Path:
    """Return the local-services root: ``$FLEET_LOCAL_HOME`` or ``<cwd>/.local``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.cwd() / ".local"


def proc_state(pid: int) -> str:
    """Return the /proc state letter of ``pid`` ("" where /proc is unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 2 (the command) may hold spaces and ")"; the state follows the last ")".
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else ""


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (None without /proc or once it exited)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_alive(pid: int) -> bool:
    """Return True if ``pid`` is a running (non-zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return proc_state(pid) != "Z"


@dataclass(frozen=True)
class ProcessFiles:
    """The files of one background service under ``root``: its pid, its endpoint, its log.

    ``marker`` must occur in the service's command line (e.g. a path unique to ``root``) so a
    recycled pid is never mistaken for the service.
    """

    name: str
    root: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        """File holding the service's pid (the leader of its process group)."""
        return self.root / f"{self.name}.pid"

    @property
    def endpoint_file(self) -> Path:
        """File holding the address the running service was started for."""
        return self.root / "endpoint"

    @property
    def log_file(self) -> Path:
        """File that the process's stdout and stderr are appended to."""
        return self.root / "logs" / f"{self.name}.out"

    def running_pid(self) -> int | None:
        """Return the service's pid if it runs; remove a stale pid file otherwise."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        command = cmdline(pid)
        if is_alive(pid) and (command is None or self.marker in command):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def endpoint(self) -> str | None:
        """Return the address recorded by the last start, if any."""
        try:
            return self.endpoint_file.read_text().strip() or None
        except OSError:
            return None

    def running_endpoint(self) -> str | None:
        """The address of the service if it runs."""
        return self.endpoint() if self.running_pid() else None
