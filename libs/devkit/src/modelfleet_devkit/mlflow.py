"""Local MLflow tracking server (SQLite or PostgreSQL backend, proxied artifacts) on 127.0.0.1, behind auth.

Runs ``<this python> -m mlflow server --app-name basic-auth`` in the background with its files
under ``<home>/mlflow``: ``mlflow.db``, ``artifacts/``, ``logs/mlflow.out``, ``mlflow.pid``, and
what secures it (`mlflow_security`): ``basic_auth.ini``, ``auth.db``, ``credentials/``.

The backend store is SQLite (``mlflow.db``, the zero-setup default) or, with
``backend="postgres"`` (``--backend postgres``, ``make mlflow MLFLOW_BACKEND=postgres``), the
database ``mlflow`` of the local PostgreSQL of the same home (`modelfleet_devkit.postgres`,
started first), through psycopg 3 (``postgresql+psycopg://``); the auth app's users then live in
that database too (its tables and migration history are apart from the tracking store's), so
nothing of the server's state stays in local files but the artifacts. The password is in libpq's
password file (``PGPASSFILE``), never on the command line. Nobody may
do anything without a grant (anonymous requests get 401); after each start the fleet's users
(`modelfleet_common.mlflow_auth.GRANTS`) are created or reset, as admin, with their roles.
`user_environment` gives a process the settings that sign in as one of them (it and the other
readers of these files are the CLI's, `modelfleet_cli.local_home.mlflow`, offered here too).

CLI: ``python -m modelfleet_devkit.mlflow start|stop|status [--home DIR]
[--port N] [--timeout S] [--backend sqlite|postgres]``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from modelfleet_cli.local_home import cmdline
from modelfleet_cli.local_home import mlflow as files
from modelfleet_cli.local_home.mlflow import ADMIN, DEFAULT_PORT, NAME, USERS

from ._process import LaunchError, ManagedProcess, make_parser, progress, run_cli
from .mlflow_security import LocalMlflowSecurity

#: What a client of the local server reads (`modelfleet_cli.local_home.mlflow`), offered here too.
is_secured = files.is_secured
password_file = files.password_file
client_environment = files.client_environment
user_environment = files.user_environment
EXPLICIT_CREDENTIALS = files.EXPLICIT_CREDENTIALS
#: Where the server keeps runs, models and (with auth) its users.
BACKENDS = ("sqlite", "postgres")
DEFAULT_BACKEND = "sqlite"


_root = files.root


def _backend_uri(root: Path) -> str:
    # Three slashes plus an absolute path ("sqlite:////abs/mlflow.db") is an absolute
    # SQLite path for SQLAlchemy.
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def _process(root: Path) -> ManagedProcess:
    found = files.process(root)
    return ManagedProcess(found.name, found.root, found.marker)


def _backend(home: Path, backend: str) -> tuple[str, dict[str, str]]:
    """The backend store URI and the environment the server needs to sign in to it."""
    if backend == "sqlite":
        return _backend_uri(_root(home)), {}
    if backend == "postgres":
        from . import postgres

        return postgres.mlflow_backend_uri(home), postgres.mlflow_environment(home)
    raise LaunchError(f"unknown MLflow backend {backend!r}: one of {', '.join(BACKENDS)}")


def _prepare(
    root: Path, port: int, backend_uri: str | None = None, backend_env: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    if importlib.util.find_spec("mlflow") is None:
        raise LaunchError(f"mlflow is not installed for {sys.executable}")
    if importlib.util.find_spec("flask_wtf") is None:
        raise LaunchError(f"MLflow's auth app needs mlflow[auth] (Flask-WTF) for {sys.executable}")
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    backend_uri = backend_uri or _backend_uri(root)
    security = LocalMlflowSecurity(root)
    # On PostgreSQL the auth app's users go to the same database (own tables, own alembic table).
    security.ensure(auth_database_uri=None if backend_uri.startswith("sqlite:") else backend_uri)
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        backend_uri,
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
    env = {**os.environ, **(backend_env or {})}
    # MLflow 3's server also launches a job runner with ~7 huey consumer processes
    # (GenAI jobs) and a /dev/shm queue that an unclean stop leaks; the fleet needs
    # neither. An explicit setting in the caller's environment still wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(security.config_file)
    # The auth app's CSRF key (its sign-up form); MLflow reads it from the environment only.
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = security.secret_key()
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        env.pop(name, None)  # they would override basic_auth.ini
    # The default security middleware already accepts Host 127.0.0.1/localhost, so it
    # stays on (no --disable-security-middleware).
    return argv, env


def start(home: Path, port: int = DEFAULT_PORT, timeout: float = 120, backend: str = DEFAULT_BACKEND) -> str:
    """Start the server unless it runs; return its URI ``http://127.0.0.1:<port>``.

    ``home`` is the local-services root; MLflow keeps its files in ``home/mlflow``. ``backend`` is
    ``sqlite`` or ``postgres`` (the local PostgreSQL of ``home``, which must run).
    Blocks until ``GET /health`` answers 200, then creates the fleet's users (idempotent).
    Raises RuntimeError (LaunchError) quoting the server log if it dies or is not ready within
    ``timeout`` seconds, if the server at the port does not take this home's admin password, or
    if it already runs on the other backend.
    """
    root = _root(home)
    backend_uri, backend_env = _backend(home, backend)
    process = _process(root)
    pid = process.running_pid()
    if pid is not None and backend_uri not in (cmdline(pid) or backend_uri):
        raise LaunchError(
            f"MLflow from {root} already runs on another backend than {backend}: "
            "stop it first (`make mlflow-stop`) to change it"
        )
    uri = process.start(
        endpoint=f"http://127.0.0.1:{port}",
        ports=(port,),
        probe=is_ready,
        prepare=lambda: _prepare(root, port, backend_uri, backend_env),
        timeout=timeout,
    )
    provision_users(home, uri)
    return uri


def provision_users(home: Path, uri: str) -> None:
    """Create the fleet's users on the server of ``home`` at ``uri`` (or reset their passwords to
    this home's files) and give each its role, as the server's admin."""
    security = LocalMlflowSecurity(_root(home))
    if not security.is_complete():
        raise LaunchError(f"{security.root} has no MLflow credentials: start its server first")
    if not requires_auth(uri):
        raise LaunchError(
            f"the MLflow server at {uri} accepts anonymous requests (started before it ran behind "
            "auth, or not from this home): stop it (`make mlflow-stop`) and start it again"
        )
    from mlflow.exceptions import MlflowException

    from modelfleet_common.mlflow_users import provision_users as provision

    try:
        provision(uri, security.password(ADMIN), security.passwords())
    except MlflowException as error:
        raise LaunchError(
            f"could not create the MLflow users at {uri} as admin of {security.root}: {error.message}"
        ) from error
    if security.auth_db.exists():
        security.auth_db.chmod(0o600)  # the users' password hashes
    progress(NAME, f"users {', '.join(USERS)} and their roles are in place (admin: {security.root})")


def requires_auth(uri: str, timeout: float = 10.0) -> bool:
    """Whether the server at ``uri`` refuses an anonymous read (401)."""
    response = httpx.get(
        f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        timeout=timeout,
        trust_env=False,
    )
    return response.status_code == httpx.codes.UNAUTHORIZED


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
    """CLI: ``start|stop|status [--home DIR] [--port N] [--timeout S] [--backend sqlite|postgres]``."""
    parser = make_parser(NAME, DEFAULT_PORT)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="backend store (start): SQLite in the home (default), or the database mlflow of the "
        "local PostgreSQL of the same home (`make postgres`)",
    )
    args = parser.parse_args(argv)
    port = args.port or DEFAULT_PORT
    return run_cli(
        NAME,
        args,
        start=lambda home: start(home, port, args.timeout, args.backend),
        stop=stop,
        status=lambda home: status(home, args.port),
    )


if __name__ == "__main__":
    sys.exit(main())
