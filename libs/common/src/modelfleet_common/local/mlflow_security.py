"""What secures the local MLflow server: its basic-auth configuration and one password per user.

Files under ``<home>/mlflow`` (secrets ``0600``, their folder ``0700``):

- ``credentials/<user>.password`` for ``admin`` (the server's bootstrap admin) and every user of
  `modelfleet_common.mlflow_auth.GRANTS` (the services that call MLflow and ``cli``),
- ``credentials/flask-secret-key`` (the auth app's CSRF key),
- ``basic_auth.ini``: MLflow's auth configuration (`MLFLOW_AUTH_CONFIG_PATH`): no permission by
  default, the users in ``auth.db``, the admin's first password.

They are made on the first start and kept. The users are created (or their passwords reset to the
files) after each start, as admin, through MLflow's auth API (`modelfleet_common.mlflow_users`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from modelfleet_common.private_files import write_private

#: Same names as `modelfleet_common.mlflow_auth` (which needs mlflow; this module must not).
ADMIN = "admin"
USERS = ("trainer", "evaluator", "registry", "serving", "cli")
SECRET_KEY = "flask-secret-key"


@dataclass(frozen=True)
class LocalMlflowSecurity:
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
