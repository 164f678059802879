"""Creating the fleet's MLflow users: each with its password and one role holding its `GRANTS`.

Needs `mlflow[auth]` (MLflow's auth client imports the server's auth app, as the server does).
CLI (a Kubernetes Job, compose): `python -m modelfleet_common.mlflow_users provision --uri URI
--admin-password-file F --credentials-dir D`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

from modelfleet_common.mlflow_auth import ADMIN, GRANTS, WORKSPACE, read_password, role_name


class AdminClient(AuthServiceClient):
    """MLflow's auth client with explicit admin credentials (not this process's environment)."""

    def __init__(self, tracking_uri: str, username: str, password: str) -> None:
        super().__init__(tracking_uri)
        self._creds = MlflowHostCreds(tracking_uri, username=username, password=password)  # type: ignore[no-untyped-call]

    def _request(self, endpoint: str, method: str, *, expected_status: int = 200, **kwargs: Any) -> Any:
        response = http_request(self._creds, endpoint, method, **kwargs)  # type: ignore[no-untyped-call]
        response = verify_rest_response(response, endpoint, expected_status=expected_status)
        return {} if response.status_code == 204 or not response.content else response.json()


def _exists(admin: AdminClient, username: str) -> bool:
    try:
        admin.get_user(username)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def provision_users(
    tracking_uri: str, admin_password: str, passwords: Mapping[str, str], admin_username: str = ADMIN
) -> None:
    """Create (or reset the password of) each user of `passwords` and give it exactly its role.

    Idempotent: run after every start of the server. Each user must be one of `GRANTS`; its role
    `modelfleet-<user>` ends up with exactly the grants of `GRANTS` (others are removed from it).
    """
    unknown = sorted(set(passwords) - set(GRANTS))
    if unknown:
        raise ValueError(f"no MLflow grants for {unknown}; known users: {sorted(GRANTS)}")
    admin = AdminClient(tracking_uri, admin_username, admin_password)
    roles = {role.name: role for role in admin.list_roles(WORKSPACE)}
    for username, password in passwords.items():
        if _exists(admin, username):
            admin.update_user_password(username, password)
        else:
            admin.create_user(username, password)
        name = role_name(username)
        role = roles.get(name) or admin.create_role(WORKSPACE, name, f"modelfleet {username}")
        wanted = {(kind, "*", level) for kind, level in GRANTS[username].items()}
        for grant in admin.list_role_permissions(role.id):
            key = (grant.resource_type, grant.resource_pattern, grant.permission)
            if key in wanted:
                wanted.discard(key)
            else:
                admin.remove_role_permission(grant.id)
        for kind, pattern, level in sorted(wanted):
            admin.add_role_permission(role.id, kind, pattern, level)
        if all(assigned.id != role.id for assigned in admin.list_user_roles(username)):
            admin.assign_role(username, role.id)


def main(argv: list[str] | None = None) -> int:
    """`provision --uri URI --admin-password-file F --password-files PATTERN`: the users of `GRANTS`
    whose password file (PATTERN with `{user}`, e.g. `/etc/mlflow-users/{user}/password`) exists."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelfleet_common.mlflow_users")
    commands = parser.add_subparsers(dest="command", required=True)
    provision = commands.add_parser("provision", help="create the fleet's MLflow users and their roles")
    provision.add_argument("--uri", required=True, help="the MLflow server (its basic-auth app)")
    provision.add_argument("--admin-password-file", type=Path, required=True)
    provision.add_argument(
        "--password-files", required=True, help="where each user's password is, with {user} in the path"
    )
    args = parser.parse_args(argv)
    if "{user}" not in args.password_files:
        parser.error("--password-files needs {user} in it, e.g. /etc/mlflow-users/{user}/password")
    files = {user: Path(args.password_files.replace("{user}", user)) for user in GRANTS}
    passwords = {user: read_password(path) for user, path in files.items() if path.is_file()}
    if not passwords:
        parser.error(f"no password file at {args.password_files} for any of {sorted(GRANTS)}")
    provision_users(args.uri, read_password(args.admin_password_file), passwords)
    print(f"MLflow users provisioned at {args.uri}: {', '.join(sorted(passwords))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
