"""Process plumbing shared by the local service launchers (POSIX only).

Where a service's files are (`ProcessFiles`: pid, endpoint, log) and whether it runs is the CLI's
to read (`modelfleet_cli.local_home`); starting and stopping it is this module's.

A service runs as a detached session leader (``start_new_session=True``): it outlives
the Python process that started it, and ``stop`` can signal its whole process group
(MLflow, for instance, runs uvicorn as a child process).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelfleet_cli.local_home import HOME_ENV, ProcessFiles, default_home
from modelfleet_cli.local_home import is_alive as _is_alive

TAIL_LINES = 40

# Probe(endpoint, per-try timeout in seconds) -> the service answers.
Probe = Callable[[str, float], bool]

# Popen objects of services started by this interpreter. Holding them lets is_alive()
# reap our own exited children (a zombie still answers kill(pid, 0)) and keeps
# Popen.__del__ from warning "subprocess is still running" about detached services.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LaunchError(RuntimeError):
    """A local service failed to start or stop.

    ``summary`` is one line for a CLI; ``details`` (e.g. log tails) is part of
    ``str(exc)`` so API callers see it in tracebacks.
    """

    def __init__(self, summary: str, details: str = "") -> None:
        self.summary = summary
        self.details = details.rstrip()
        super().__init__(f"{summary}\n{self.details}" if self.details else summary)


def progress(service: str, message: str) -> None:
    """Print a progress line to stderr (stdout carries the CLI's result)."""
    print(f"[{service}] {message}", file=sys.stderr, flush=True)


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def is_alive(pid: int) -> bool:
    """Return True if ``pid`` is a running (non-zombie) process; reaps it if it is our exited child."""
    _reap(pid)
    return _is_alive(pid)


def _group_states(pgid: int) -> list[str] | None:
    """Return the /proc states of the members of group ``pgid`` (None without /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    states = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        # After the command: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid):
            states.append(fields[0])
    return states


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(); orphans wait for an init that may reap slowly.
    states = _group_states(pgid)
    return states is None or any(state != "Z" for state in states)


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def terminate(pid: int, timeout: float = 30.0) -> None:
    """Stop ``pid`` and its process group: SIGTERM, wait ``timeout`` s, then SIGKILL."""
    try:
        # Signal the group only if pid leads it (spawn() makes sure it does).
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def gone() -> bool:
        return not (_group_alive(pid) if group else is_alive(pid))

    send(signal.SIGTERM)
    if not _wait_for(gone, timeout):
        send(signal.SIGKILL)
        _wait_for(gone, 10.0)


def tail(path: Path, lines: int = TAIL_LINES, start: int = 0) -> str:
    """Return the last ``lines`` lines of a text file, ignoring bytes before ``start``.

    Returns "" if the file does not exist; one shorter than ``start`` (rotated since)
    is read from its beginning.
    """
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = start if start <= size else 0
            # ~512 bytes per log line is plenty and avoids reading a big log whole.
            fh.seek(max(start, size - lines * 512))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass(frozen=True)
class ManagedProcess(ProcessFiles):
    """One background service whose files (pid, endpoint, logs) live under ``root``: started
    detached, waited for until its probe passes, stopped with its process group."""

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize start/stop across processes (e.g. parallel test workers)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def spawn(self, argv: Sequence[str], endpoint: str, env: Mapping[str, str] | None = None) -> int:
        """Start ``argv`` detached with output to ``log_file``; return its pid."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} starting: {shlex.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                cwd=self.root,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        _write_atomic(self.pid_file, f"{proc.pid}\n")
        _write_atomic(self.endpoint_file, f"{endpoint}\n")
        return proc.pid

    def start(
        self,
        *,
        endpoint: str,
        ports: Sequence[int],
        probe: Probe,
        prepare: Callable[[], tuple[Sequence[str], Mapping[str, str] | None]],
        timeout: float,
        logs: Sequence[Path] = (),
    ) -> str:
        """Start the service unless it runs; return ``endpoint`` once ``probe`` passes.

        ``prepare`` does the set-up (downloads, config files) and returns the command
        line and environment; it runs only when a new process is needed. ``logs`` are
        the service's own log files, quoted (with ``log_file``) in errors.
        """
        with self.lock():
            pid = self.running_pid()
            if pid is not None:
                recorded = self.endpoint()
                if recorded and recorded != endpoint:
                    raise LaunchError(
                        f"{self.name} from {self.root} already runs at {recorded}; "
                        "stop it first to change the port"
                    )
                progress(self.name, f"already running (pid {pid}) at {endpoint}")
                marks = dict.fromkeys((*logs, self.log_file), 0)
                self.wait_ready(pid, lambda t: probe(endpoint, t), timeout, marks)
                return endpoint
            if port_in_use(ports[0]) and probe(endpoint, 5.0):
                # Idempotent for callers: e.g. another home's instance already serves.
                progress(self.name, f"{endpoint} already answers (not from {self.root})")
                return endpoint
            busy = [str(port) for port in ports if port_in_use(port)]
            if busy:
                raise LaunchError(
                    f"port {', '.join(busy)} on 127.0.0.1 is taken by another process; "
                    "free it or choose other ports"
                )
            argv, env = prepare()
            began = time.monotonic()
            # Errors then quote only what this start wrote, not earlier runs' lines.
            marks = {path: _size(path) for path in (*logs, self.log_file)}
            pid = self.spawn(argv, endpoint, env)
            progress(self.name, f"started pid {pid}; logs in {self.log_file.parent}")
            self.wait_ready(pid, lambda t: probe(endpoint, t), timeout, marks)
            elapsed = time.monotonic() - began
            progress(self.name, f"ready at {endpoint} after {elapsed:.1f}s")
            return endpoint

    def wait_ready(
        self,
        pid: int,
        probe: Callable[[float], bool],
        timeout: float,
        logs: Mapping[Path, int],
    ) -> None:
        """Poll ``probe(per_try_timeout)`` until it passes.

        Raises LaunchError quoting ``logs`` (path -> offset to read from) if the
        process exits; on timeout it also stops the process, so that no half-started
        service holds the ports.
        """
        started = time.monotonic()
        deadline = started + timeout
        next_note = started + 5.0
        while True:
            if not is_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise LaunchError(
                    f"{self.name} exited during start-up (logs: {self.log_file.parent})",
                    self.log_tails(logs),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                details = self.log_tails(logs)
                terminate(pid)
                self.pid_file.unlink(missing_ok=True)
                raise LaunchError(
                    f"{self.name} was not ready within {timeout:.0f}s and was stopped "
                    f"(logs: {self.log_file.parent})",
                    details,
                )
            if probe(min(5.0, remaining)):
                return
            now = time.monotonic()
            if now >= next_note:
                progress(self.name, f"still starting ({now - started:.0f}s)...")
                next_note = now + 5.0
            time.sleep(min(0.5, max(0.0, deadline - now)))

    def log_tails(self, logs: Mapping[Path, int]) -> str:
        """Return the last lines of each log in ``logs`` (path -> start offset)."""
        parts = []
        for path, start in logs.items():
            text = tail(path, start=start)
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n{text}")
        return "\n".join(parts)

    def status(self, probe: Probe, endpoint: str | None = None) -> tuple[bool, str]:
        """Return (answering, one-line description) for ``endpoint``.

        ``endpoint`` defaults to the one recorded by the last start.
        """
        pid = self.running_pid()
        endpoint = endpoint or self.endpoint()
        if pid is None:
            if endpoint and probe(endpoint, 5.0):
                return True, f"{endpoint} answers (not started from {self.root})"
            return False, "not running"
        if endpoint and probe(endpoint, 5.0):
            return True, f"running (pid {pid}) at {endpoint}"
        return False, f"process {pid} is up but {endpoint} does not answer (yet)"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the service if it runs, printing what happened to stderr."""
        with self.lock():
            pid = self.running_pid()
            if pid is None:
                progress(self.name, "not running")
                return
            terminate(pid, timeout)
            self.pid_file.unlink(missing_ok=True)
            progress(self.name, f"stopped (pid {pid})")


def make_parser(service: str, default_port: int) -> argparse.ArgumentParser:
    """Build the ``start|stop|status [--home DIR] [--port N]`` parser."""
    parser = argparse.ArgumentParser(
        prog=f"python -m modelfleet_devkit.{service}",
        description=f"Run a local {service} in the background (no Docker).",
    )
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"local-services root (default: ${HOME_ENV} or ./.local); "
        f"{service} keeps its files in HOME/{service}",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (start: default {default_port}; status: default the last start's)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="start-up timeout in seconds")
    return parser


def run_cli(
    service: str,
    args: argparse.Namespace,
    start: Callable[[Path], str],
    stop: Callable[[Path], None],
    status: Callable[[Path], tuple[bool, str]],
) -> int:
    """Run the parsed ``args.action``; on failure print a one-line error, return 1.

    ``start`` returns the endpoint, printed as the last stdout line. ``status``
    returns (answering, description); its exit code is 0 only when answering.
    """
    home = (args.home.expanduser() if args.home else default_home()).resolve()
    try:
        if args.action == "start":
            print(start(home), flush=True)
        elif args.action == "stop":
            stop(home)
        else:
            healthy, text = status(home)
            print(f"{service}: {text}")
            return 0 if healthy else 1
    except KeyboardInterrupt:
        return 130
    except LaunchError as exc:
        if exc.details:
            print(exc.details, file=sys.stderr)
        print(f"{service}: error: {exc.summary}", file=sys.stderr)
        return 1
    except Exception as exc:  # reported as one line
        print(f"{service}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
