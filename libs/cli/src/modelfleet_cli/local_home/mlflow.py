"""The local MLflow server's files under ``<home>/mlflow``: whether it runs behind auth, and the
credentials each fleet user signs in with (the devkit's `modelfleet_devkit.mlflow` starts it and
`modelfleet_devkit.mlflow_security` makes these files).

- ``credentials/<user>.password`` (``0600``) for ``admin`` (the server's bootstrap admin) and every
  user of `modelfleet_common.mlflow_auth.GRANTS` (the services that call MLflow and ``cli``),
- ``credentials/flask-secret-key`` (the auth app's CSRF key),
- ``basic_auth.ini``: MLflow's auth configuration (`MLFLOW_AUTH_CONFIG_PATH`), ``auth.db``.

`user_environment` gives a process the settings that sign in as one user, only when it talks to
this home's running server (the local passwords never go to another server).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import ProcessFiles

NAME = "mlflow"
DEFAULT_PORT = 5000
#: Same names as `modelfleet_common.mlflow_auth` (which needs mlflow; this module must not).
ADMIN = "admin"
USERS = ("trainer", "evaluator", "registry", "serving", "cli")
SECRET_KEY = "flask-secret-key"
#: Variables that name MLflow credentials of their own (an MLflow server of your own).
EXPLICIT_CREDENTIALS = (
    "MLFLOW_TRACKING_AUTH",
    "FLEET_MLFLOW_USERNAME",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_TOKEN",
)


def root(home: Path) -> Path:
    """Where the local MLflow server of ``home`` keeps its files."""
    return Path(home).expanduser().resolve() / NAME


def process(mlflow_root: Path) -> ProcessFiles:
    """The server's pid, endpoint and log files."""
    # The artifact root is this home's absolute path, whatever the backend: it identifies our server.
    return ProcessFiles(NAME, mlflow_root, marker=str(mlflow_root / "artifacts"))


@dataclass(frozen=True)
class MlflowCredentials:
    """Paths of the local MLflow server's auth configuration and credentials."""

    root: Path

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def config_file(self) -> Path:
        return self.root / "basic_auth.ini"

    @property
    def auth_db(self) -> Path:
        return self.root / "auth.db"

    @property
    def users(self) -> tuple[str, ...]:
        return (ADMIN, *USERS)

    def password_file(self, user: str) -> Path:
        if user not in self.users:
            raise ValueError(f"the local MLflow server has no user {user!r}: {list(self.users)}")
        return self.credentials_dir / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text(encoding="utf-8").strip()

    def secret_key(self) -> str:
        return (self.credentials_dir / SECRET_KEY).read_text(encoding="utf-8").strip()

    def is_complete(self) -> bool:
        files = [self.config_file, self.credentials_dir / SECRET_KEY]
        files += [self.password_file(user) for user in self.users]
        return all(path.is_file() for path in files)


def is_secured(home: Path) -> bool:
    """Whether ``home`` has a local MLflow server behind auth (its credentials exist)."""
    return MlflowCredentials(root(home)).is_complete()


def password_file(home: Path, user: str) -> Path:
    """The file holding ``user``'s password on the local server of ``home`` (0600)."""
    return MlflowCredentials(root(home)).password_file(user)


def client_environment(home: Path, user: str) -> dict[str, str]:
    """Settings that make a process's MLflow clients sign in as ``user`` of the server of ``home``
    (`MLFLOW_TRACKING_AUTH` and ``FLEET_MLFLOW_USERNAME``/``FLEET_MLFLOW_PASSWORD_FILE``; the password
    stays in its file)."""
    return {
        "MLFLOW_TRACKING_AUTH": "modelfleet-password-file",
        "FLEET_MLFLOW_USERNAME": user,
        "FLEET_MLFLOW_PASSWORD_FILE": str(password_file(home, user)),
    }


def user_environment(
    home: Path, user: str, tracking_uri: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`client_environment` of ``user`` when ``tracking_uri`` is the running secured server of
    ``home`` and ``environ`` (default: this process's) names no MLflow credentials of its own;
    else empty (the local passwords never go to another server).

    Only the fleet's MLflow users (`USERS`, and ``admin``) have one: other services get nothing.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in EXPLICIT_CREDENTIALS) or user not in (*USERS, ADMIN):
        return {}
    running = process(root(home)).running_endpoint()
    if running is None or running.rstrip("/") != tracking_uri.rstrip("/") or not is_secured(home):
        return {}
    return client_environment(home, user)
