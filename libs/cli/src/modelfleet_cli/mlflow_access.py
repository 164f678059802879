"""Which MLflow user a CLI command signs in as.

An explicit configuration wins: `FLEET_MLFLOW_USERNAME` with `FLEET_MLFLOW_PASSWORD_FILE`, or
MLflow's own `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`. Otherwise, when the tracking
URI is the local server of `FLEET_LOCAL_HOME` (`make mlflow`, behind auth), a command signs in as
its read-only `cli` user, with the password read from its 0600 file; no other server ever gets it.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelfleet_common.mlflow_auth import use_mlflow_credentials
from modelfleet_common.settings import ServiceSettings
from modelfleet_contracts.topics import CLI

from .local_home import default_home
from .local_home import mlflow as local_mlflow


def sign_in(settings: ServiceSettings, home: Path | None = None) -> str | None:
    """Make this process's MLflow clients sign in; return the user (None: anonymous or MLflow's own)."""
    if user := use_mlflow_credentials(settings):
        return user
    home = default_home() if home is None else home
    local = local_mlflow.user_environment(home, CLI, settings.mlflow_tracking_uri)
    os.environ.update(local)  # the user and the password file's path, not the password
    return local.get("FLEET_MLFLOW_USERNAME")
