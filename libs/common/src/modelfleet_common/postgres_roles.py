"""The fleet's PostgreSQL layout: one login role and one schema per service, and MLflow's database.

Where several replicas of a service share their state (`modelfleet_common.state`,
``FLEET_STATE_URL``), it lives in one database, ``modelfleet``, in a schema named after the service
and owned by the service's role of the same name. A role owns its schema and nothing else: it may
connect to ``modelfleet`` only, cannot use another service's schema (``permission denied for schema
trainer``) and cannot create anything in ``public``. MLflow's tracking store (and its auth app's
users) are in a database of their own, ``mlflow``, owned by the role ``mlflow``.

`provision` makes that layout, as a superuser, idempotently: roles are created or their passwords
reset to the given ones (so a rotated Secret applies on the next run), databases and schemas made
when missing, ownership and grants put right. The local launcher (`modelfleet_devkit.postgres`)
runs it after each start; compose and Kubernetes run the CLI as a one-shot job:

    python -m modelfleet_common.postgres_roles provision --host postgres --port 5432 \\
        --admin-password-file /etc/postgres-roles/postgres/password \\
        --password-files '/etc/postgres-roles/{role}/password'

which provisions the roles whose password file exists.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelfleet_contracts.topics import SERVICES

if TYPE_CHECKING:
    import psycopg

#: The database of every service's state (`FLEET_STATE_URL`), one schema per service.
FLEET_DATABASE = "modelfleet"
#: MLflow's role, and its database (tracking store and the auth app's users).
MLFLOW = "mlflow"
#: The superuser that provisions (the Debian and Docker images' default).
SUPERUSER = "postgres"
#: Every role the fleet may have: one per service, and MLflow's.
ROLES: tuple[str, ...] = (*SERVICES, MLFLOW)
#: SQLAlchemy's driver for PostgreSQL: psycopg 3 (`psycopg[binary]`), for services and MLflow alike.
DRIVER = "postgresql+psycopg"

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ProvisioningError(RuntimeError):
    """The server refused a step of the layout; the message names the step."""


def check_name(name: str) -> str:
    """Return `name` if it is a plain lower-case PostgreSQL identifier, else raise ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain PostgreSQL name ([a-z_][a-z0-9_]*, at most 63 characters)")
    return name


def state_url(service: str, host: str, port: int, database: str = FLEET_DATABASE) -> str:
    """`FLEET_STATE_URL` of `service`: its role at `host:port`, no password (that is in a file)."""
    return f"{DRIVER}://{check_name(service)}@{host}:{port}/{check_name(database)}"


def mlflow_url(host: str, port: int) -> str:
    """MLflow's backend store (and auth database) URI: role and database ``mlflow``, no password."""
    return f"{DRIVER}://{MLFLOW}@{host}:{port}/{MLFLOW}"


def read_password(path: Path) -> str:
    """The password in `path` (surrounding whitespace stripped); ValueError naming the file if
    it cannot be read or is empty."""
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ValueError(f"password file {path} cannot be read: {error.strerror or error}") from None
    if not password:
        raise ValueError(f"password file {path} is empty")
    return password


def provision(
    *,
    host: str,
    port: int,
    admin_password: str,
    passwords: Mapping[str, str],
    admin_user: str = SUPERUSER,
    connect_timeout: int = 10,
) -> list[str]:
    """Make the layout for the roles of `passwords` (services of the topic catalog, and ``mlflow``).

    Returns the roles provisioned. Raises `ProvisioningError` naming the step the server refused.
    """
    unknown = sorted(set(passwords) - set(ROLES))
    if unknown:
        raise ValueError(f"no PostgreSQL role for {unknown}; known roles: {list(ROLES)}")
    services = [role for role in SERVICES if role in passwords]
    import psycopg

    def connect(database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=host,
            port=port,
            user=admin_user,
            password=admin_password,
            dbname=database,
            connect_timeout=connect_timeout,
            autocommit=True,
        )

    try:
        with connect("postgres") as admin:
            for role in (role for role in ROLES if role in passwords):
                _role(admin, role, passwords[role])
            if services:
                _database(admin, FLEET_DATABASE, owner=admin_user, users=services)
            if MLFLOW in passwords:
                _database(admin, MLFLOW, owner=MLFLOW, users=[MLFLOW])
        if services:
            with connect(FLEET_DATABASE) as fleet:
                _schemas(fleet, services)
    except psycopg.Error as error:
        raise ProvisioningError(
            f"provisioning PostgreSQL at {host}:{port} as {admin_user} failed: {error}"
        ) from error
    return [role for role in ROLES if role in passwords]


def _role(admin: psycopg.Connection[tuple[object, ...]], role: str, password: str) -> None:
    from psycopg import sql

    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [check_name(role)]).fetchone()
    # A login role and nothing more: no superuser, no roles or databases of its own making. It
    # inherits (the default): MLflow's role owns its database's `public` schema only through the
    # implicit membership in pg_database_owner.
    statement = "ALTER ROLE {} WITH" if exists else "CREATE ROLE {} WITH"
    admin.execute(
        sql.SQL(
            statement + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            "INHERIT PASSWORD {}"
        ).format(sql.Identifier(role), sql.Literal(password))
    )


def _database(
    admin: psycopg.Connection[tuple[object, ...]], database: str, *, owner: str, users: Iterable[str]
) -> None:
    from psycopg import sql

    name = sql.Identifier(check_name(database))
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(name, sql.Identifier(owner))
        )
    else:
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, sql.Identifier(owner)))
    # PUBLIC (every role of the server) may connect to a new database and make temporary tables
    # in it: only the fleet's roles for this database may.
    admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
    roles = sql.SQL(", ").join(sql.Identifier(check_name(user)) for user in users)
    admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(name, roles))


def _schemas(fleet: psycopg.Connection[tuple[object, ...]], services: Iterable[str]) -> None:
    from psycopg import sql

    # Nobody shares anything through `public` (PostgreSQL 15 already takes CREATE from PUBLIC).
    fleet.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    for service in services:
        name = sql.Identifier(check_name(service))
        fleet.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(name, name))
        fleet.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(name, name))
        # Nothing granted on it to anyone else; no other role's schema is usable to this one.
        fleet.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(name))
        # Unqualified names land in its own schema (the state engine also names it explicitly).
        fleet.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                name, sql.Identifier(FLEET_DATABASE), name
            )
        )


def main(argv: list[str] | None = None) -> int:
    """`provision --host H --port P --admin-password-file F --password-files PATTERN`: the roles
    (services, ``mlflow``) whose password file (PATTERN with ``{role}``) exists."""
    parser = argparse.ArgumentParser(prog="python -m modelfleet_common.postgres_roles")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("provision", help="create the fleet's roles, schemas and databases")
    command.add_argument("--host", required=True)
    command.add_argument("--port", type=int, default=5432)
    command.add_argument("--admin-user", default=SUPERUSER, help=f"a superuser (default: {SUPERUSER})")
    command.add_argument("--admin-password-file", type=Path, required=True)
    command.add_argument(
        "--password-files",
        required=True,
        help="each role's password file, {role} in the path: /etc/postgres-roles/{role}/password",
    )
    args = parser.parse_args(argv)
    if "{role}" not in args.password_files:
        parser.error("--password-files needs {role} in it, e.g. /etc/postgres-roles/{role}/password")
    files = {role: Path(args.password_files.replace("{role}", role)) for role in ROLES}
    try:
        passwords = {role: read_password(path) for role, path in files.items() if path.is_file()}
        if not passwords:
            parser.error(f"no password file at {args.password_files} for any of {list(ROLES)}")
        roles = provision(
            host=args.host,
            port=args.port,
            admin_user=args.admin_user,
            admin_password=read_password(args.admin_password_file),
            passwords=passwords,
        )
    except (ValueError, ProvisioningError) as error:
        print(f"postgres_roles: error: {error}")
        return 1
    print(f"PostgreSQL roles provisioned at {args.host}:{args.port}: {', '.join(roles)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
