"""MLflow behind its `basic-auth` app: who in the fleet may do what, and how a client signs in.

The fleet's MLflow server runs `mlflow server --app-name basic-auth` with
`default_permission = NO_PERMISSIONS`: a request without valid credentials is refused (401), and a
signed-in user can touch only what a grant (or being its creator) gives it. Each MLflow client of
the fleet is a user of its own, given one role whose grants are `GRANTS`: a permission on every
experiment and on every registered model (`*`), because services create both per model as models
arrive, so per-object grants would have to be made by an admin after each creation.

Signing in: MLflow's clients take a password from `MLFLOW_TRACKING_PASSWORD` (in the process
environment) or from a request-auth provider plugin. `PasswordFileAuth` is such a plugin (entry
point `mlflow.request_auth_provider` of modelfleet-common): with
`MLFLOW_TRACKING_AUTH=modelfleet-password-file`, every request carries HTTP basic auth of
`FLEET_MLFLOW_USERNAME` and the password read from `FLEET_MLFLOW_PASSWORD_FILE`, read on each
request, so a rotated file applies without a restart and the password is never in an environment.
A service calls `use_mlflow_credentials(settings)` at start; Ray workers the trainer starts inherit
the variables (not the password).

Only processes that talk to MLflow import this module (it needs the `mlflow` package); creating
the users is `modelfleet_common.mlflow_users` (it needs `mlflow[auth]`, as the server does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests.auth import HTTPBasicAuth

from modelfleet_common.settings import ServiceSettings

#: `MLFLOW_TRACKING_AUTH` value that selects `PasswordFileAuth`.
PROVIDER_NAME = "modelfleet-password-file"
USERNAME_VARIABLE = "FLEET_MLFLOW_USERNAME"
PASSWORD_FILE_VARIABLE = "FLEET_MLFLOW_PASSWORD_FILE"
#: Every variable that can make an MLflow client sign in (for launchers that must not pass theirs on).
CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_AUTH",
    USERNAME_VARIABLE,
    PASSWORD_FILE_VARIABLE,
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)

#: The server's bootstrap admin: creates the users below and grants them their role, nothing else.
ADMIN = "admin"
#: Roles are per workspace; with workspaces off (the fleet's server) everything is in "default".
WORKSPACE = "default"
EXPERIMENT = "experiment"
REGISTERED_MODEL = "registered_model"

#: Each MLflow user of the fleet → its grants on every experiment and every registered model.
#: Least privilege per resource type: read where the user only reads, EDIT (update, never delete
#: or change permissions) where it writes, DENY where it has no business; DENY on a type also
#: refuses creating one. The deployer, ingest and the monitor never call MLflow: no user.
GRANTS: Mapping[str, Mapping[str, str]] = {
    # Creates one experiment per model, runs in it, logs parameters, metrics and model files.
    "trainer": {EXPERIMENT: "EDIT", REGISTERED_MODEL: "DENY"},
    # Reads the trainer's runs and files, logs its evaluation metrics and verdict tag on the run;
    # reads the champion's registered version to compare with.
    "evaluator": {EXPERIMENT: "EDIT", REGISTERED_MODEL: "READ"},
    # Registers a passed run's model: reads the run, creates registered models, versions,
    # tags and aliases.
    "registry": {EXPERIMENT: "READ", REGISTERED_MODEL: "EDIT"},
    # Downloads the files of the registered versions it routes to (stored under their runs).
    "serving": {EXPERIMENT: "READ", REGISTERED_MODEL: "READ"},
    # `modelfleet lineage` and `modelfleet verify`: read only.
    "cli": {EXPERIMENT: "READ", REGISTERED_MODEL: "READ"},
}


def role_name(user: str) -> str:
    return f"modelfleet-{user}"


class MlflowCredentialsError(MlflowException):
    """The MLflow credentials of this process are missing or unreadable."""


def read_password(path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise MlflowCredentialsError(
            f"MLflow password file {path} cannot be read: {error.strerror or error}"
        ) from error
    if not password:
        raise MlflowCredentialsError(f"MLflow password file {path} is empty")
    return password


class PasswordFileAuth(RequestAuthProvider):
    """MLflow request auth: basic auth of `FLEET_MLFLOW_USERNAME` with the password in a file."""

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> HTTPBasicAuth:
        username = os.environ.get(USERNAME_VARIABLE)
        password_file = os.environ.get(PASSWORD_FILE_VARIABLE)
        if not username or not password_file:
            raise MlflowCredentialsError(
                f"MLFLOW_TRACKING_AUTH={PROVIDER_NAME} needs {USERNAME_VARIABLE} and "
                f"{PASSWORD_FILE_VARIABLE}; set: "
                f"{[name for name in (USERNAME_VARIABLE, PASSWORD_FILE_VARIABLE) if os.environ.get(name)]}"
            )
        return HTTPBasicAuth(username, read_password(Path(password_file)))


def credentials_environment(username: str, password_file: Path) -> dict[str, str]:
    """The variables that make MLflow clients of a process sign in as `username` (no password)."""
    return {
        "MLFLOW_TRACKING_AUTH": PROVIDER_NAME,
        USERNAME_VARIABLE: username,
        PASSWORD_FILE_VARIABLE: str(password_file),
    }


def use_mlflow_credentials(settings: ServiceSettings) -> str | None:
    """Make this process's MLflow clients sign in as `settings.mlflow_username`; return the user.

    Without a configured user nothing changes (a server without auth, or credentials MLflow reads
    by itself, `MLFLOW_TRACKING_USERNAME`/`PASSWORD`). Raises MlflowCredentialsError when the
    password file cannot be read or the plugin is not installed (modelfleet-common's entry point).
    """
    if settings.mlflow_username is None and settings.mlflow_password_file is None:
        return None
    if settings.mlflow_username is None or settings.mlflow_password_file is None:
        raise MlflowCredentialsError(
            f"{USERNAME_VARIABLE} and {PASSWORD_FILE_VARIABLE} go together; only "
            f"{USERNAME_VARIABLE if settings.mlflow_username else PASSWORD_FILE_VARIABLE} is set"
        )
    read_password(settings.mlflow_password_file)
    os.environ.update(credentials_environment(settings.mlflow_username, settings.mlflow_password_file))
    from mlflow.tracking.request_auth.registry import fetch_auth

    if fetch_auth(PROVIDER_NAME) is None:  # type: ignore[no-untyped-call]
        raise MlflowCredentialsError(
            f"MLflow has no request auth provider {PROVIDER_NAME!r}: modelfleet-common is installed "
            "without its entry points (reinstall it, e.g. `make install`)"
        )
    return settings.mlflow_username
