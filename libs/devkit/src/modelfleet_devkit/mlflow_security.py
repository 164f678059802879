"""What secures the local MLflow server: its basic-auth configuration and one password per user.

Where those files are (under ``<home>/mlflow``, secrets ``0600``, their folder ``0700``) and how a
client signs in with them is the CLI's to read (`modelfleet_cli.local_home.mlflow`); making them is
this module's. They are made on the first start and kept. The users are created (or their passwords
reset to the files) after each start, as admin, through MLflow's auth API
(`modelfleet_common.mlflow_users`).
"""

from __future__ import annotations

import secrets

from modelfleet_cli.local_home.mlflow import ADMIN, SECRET_KEY, USERS, MlflowCredentials
from modelfleet_common.private_files import write_private


class LocalMlflowSecurity(MlflowCredentials):
    """The local MLflow server's auth configuration and credentials, made when missing."""

    def ensure(self, auth_database_uri: str | None = None) -> None:
        """Make whatever is missing: each user's password, the CSRF key, the auth configuration
        (its users in ``auth_database_uri``, default ``auth.db`` beside it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.credentials_dir.mkdir(exist_ok=True)
        self.credentials_dir.chmod(0o700)
        for path in [*(self.password_file(user) for user in self.users), self.credentials_dir / SECRET_KEY]:
            if not path.is_file():
                write_private(path, secrets.token_urlsafe(32) + "\n")
        # Rewritten each time (it quotes this home's paths); MLflow reads `admin_password` only
        # to create the admin when its user store is empty.
        write_private(self.config_file, self.auth_config(auth_database_uri))

    def auth_config(self, database_uri: str | None = None) -> str:
        """MLflow's basic-auth configuration of this server; its users in ``database_uri`` (default:
        ``auth.db`` beside it)."""
        database_uri = database_uri or f"sqlite:///{self.auth_db.as_posix()}"
        return (
            "[mlflow]\n"
            "# Nobody may do anything without a grant: anonymous requests get 401, a user 403.\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {database_uri}\n"
            f"admin_username = {ADMIN}\n"
            f"admin_password = {self.password(ADMIN)}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "# One worker: a credential check (PBKDF2) is cached a minute, and a password change\n"
            "# through the API clears it at once.\n"
            "auth_cache_ttl_seconds = 60\n"
        )

    def passwords(self) -> dict[str, str]:
        """Each fleet user's password (not the admin's)."""
        return {user: self.password(user) for user in USERS}
