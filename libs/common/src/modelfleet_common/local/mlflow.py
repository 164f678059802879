"""Local MLflow tracking server (SQLite backend, proxied artifacts) on 127.0.0.1.

Runs ``<this python> -m mlflow server`` in the background with its files under
``<home>/mlflow``: ``mlflow.db``, ``artifacts/``, ``logs/mlflow.out``, ``mlflow.pid``.

CLI: ``python -m modelfleet_common.local.mlflow start|stop|status [--home DIR]
[--port N] [--timeout S]``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from modelfleet_common.local._process import (
    LaunchError,
    ManagedProcess,
    make_parser,
    run_cli,
)

NAME = "mlflow"
DEFAULT_PORT = 5000


def _root(home: Path) -> Path:
    return Path(home).expanduser().resolve() / NAME


def _backend_uri(root: Path) -> str:
    # Three slashes plus an absolute path ("sqlite:////abs/mlflow.db") is an absolute
    # SQLite path for SQLAlchemy.
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def _process(root: Path) -> ManagedProcess:
    # The backend URI holds this home's absolute path, so it identifies our server.
    return ManagedProcess(NAME, root, marker=_backend_uri(root))


def _prepare(root: Path, port: int) -> tuple[list[str], dict[str, str]]:
    if importlib.util.find_spec("mlflow") is None:
        raise LaunchError(f"mlflow is not installed for {sys.executable}")
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        _backend_uri(root),
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # One uvicorn worker is plenty locally (the default, 4, costs ~4 processes).
        "--workers",
        "1",
    ]
    env = dict(os.environ)
    # MLflow 3's server also launches a job runner with ~7 huey consumer processes
    # (GenAI jobs) and a /dev/shm queue that an unclean stop leaks; the fleet needs
    # neither. An explicit setting in the caller's environment still wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # The default security middleware already accepts Host 127.0.0.1/localhost, so it
    # stays on (no --disable-security-middleware).
    return argv, env


def start(home: Path, port: int = DEFAULT_PORT, timeout: float = 120) -> str:
    """Start the server unless it runs; return its URI ``http://127.0.0.1:<port>``.

    ``home`` is the local-services root; MLflow keeps its files in ``home/mlflow``.
    Blocks until ``GET /health`` answers 200. Raises RuntimeError (LaunchError)
    quoting the server log if it dies or is not ready within ``timeout`` seconds.
    """
    root = _root(home)
    return _process(root).start(
        endpoint=f"http://127.0.0.1:{port}",
        ports=(port,),
        probe=is_ready,
        prepare=lambda: _prepare(root, port),
        timeout=timeout,
    )


def stop(home: Path) -> None:
    """Stop the server started from ``home`` and its workers (SIGTERM, then SIGKILL)."""
    _process(_root(home)).stop(timeout=30.0)


def status(home: Path, port: int | None = None) -> tuple[bool, str]:
    """Return (answering, one-line description) of the server of ``home``.

    ``port`` defaults to the one the server was last started with.
    """
    endpoint = f"http://127.0.0.1:{port}" if port else None
    return _process(_root(home)).status(is_ready, endpoint)


def is_ready(uri: str, timeout: float = 5.0) -> bool:
    """Return True if the MLflow server at ``uri`` answers ``GET /health`` with 200."""
    try:
        # trust_env=False: a proxy from HTTP(S)_PROXY must not intercept loopback calls.
        response = httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == httpx.codes.OK


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``start|stop|status [--home DIR] [--port N] [--timeout S]``."""
    args = make_parser(NAME, DEFAULT_PORT).parse_args(argv)
    port = args.port or DEFAULT_PORT
    return run_cli(
        NAME,
        args,
        start=lambda home: start(home, port, args.timeout),
        stop=stop,
        status=lambda home: status(home, args.port),
    )


if __name__ == "__main__":
    sys.exit(main())
