"""Local PostgreSQL on 127.0.0.1 from Debian's server binaries, no Docker: the fleet's shared state.

Runs ``/usr/lib/postgresql/<N>/bin/postgres`` (the newest N installed; `apt-get install postgresql`)
in the background with its files under ``<home>/postgres``: ``data/`` (the cluster, made by
``initdb`` on the first start), ``logs/postgres.out``, ``postgres.pid``, and ``credentials/``
(``0700``): one random password per role, ``<role>.password`` (``0600``), and ``mlflow.pgpass``
(libpq's password file for MLflow, `PGPASSFILE`).

Secured as a shared server would be: TCP on 127.0.0.1 only (no Unix socket), SCRAM-SHA-256
passwords for every connection (``pg_hba.conf`` has no ``trust`` or ``peer`` line), the superuser
``postgres`` for provisioning only. After each start `modelfleet_common.postgres_roles` makes the
fleet's layout (idempotent): database ``modelfleet`` with one login role and one schema per service
(ingest, trainer, evaluator, registry, deployer, monitor, serving), each owning only its own
schema, and database ``mlflow`` owned by the role ``mlflow`` (MLflow's backend store,
``make mlflow MLFLOW_BACKEND=postgres``). `client_environment` gives a service its
``FLEET_STATE_URL`` and ``FLEET_STATE_PASSWORD_FILE``.

PostgreSQL refuses to run as root: started by root, the server runs as the OS user ``postgres``
(which Debian's package creates) through ``setpriv``, and its data directory belongs to that user.
Where that user cannot enter the home (one below root's own ``/root``, mode 0700), the cluster is
made in ``/var/tmp/modelfleet-postgres/<hash of the home>/data`` and ``data`` links to it
(delete both to start afresh).

CLI: ``python -m modelfleet_devkit.postgres start|stop|status [--home DIR] [--port N]
[--timeout S]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelfleet_common.postgres_roles import (
    FLEET_DATABASE,
    MLFLOW,
    ROLES,
    SUPERUSER,
    ProvisioningError,
    mlflow_url,
    provision,
    state_url,
)
from modelfleet_common.private_files import write_private
from modelfleet_contracts.topics import SERVICES

from ._process import (
    LaunchError,
    ManagedProcess,
    Probe,
    is_alive,
    make_parser,
    progress,
    run_cli,
    terminate,
)

NAME = "postgres"
#: Not 5432: that is where the cluster Debian's `postgresql` package makes for itself listens.
DEFAULT_PORT = 5433
HOST = "127.0.0.1"
#: Where Debian installs each major version's server binaries.
DEBIAN_LIB = Path("/usr/lib/postgresql")
#: A directory holding `postgres` and `initdb`, to use instead of Debian's.
BIN_DIR_ENV = "FLEET_POSTGRES_BIN_DIR"
#: The OS user the server runs as when started by root.
OS_USER = "postgres"
INSTALL_HINT = "apt-get install postgresql"
#: Where the cluster goes when the server's OS user cannot reach the home (`_cluster_home`).
FALLBACK_DIR = Path("/var/tmp/modelfleet-postgres")
#: Each replica of each service pools a few connections (`FLEET_STATE_POOL_SIZE`), plus MLflow's.
MAX_CONNECTIONS = 300


def _root(home: Path) -> Path:
    return Path(home).expanduser().resolve() / NAME


def _data(root: Path) -> Path:
    """The cluster's directory: ``data/``, or a link to it where the server's user cannot reach the
    home (`_cluster_home`); the server is always given the resolved path."""
    return root / "data"


def _process(root: Path) -> ManagedProcess:
    # The data directory's absolute path (`-D ...`) is unique per home: it identifies our server.
    return ManagedProcess(NAME, root, marker=str(_data(root).resolve()))


def _cluster_home(root: Path, user: OsUser) -> Path:
    """Where the cluster's directory is made: ``root``, unless the server's OS user cannot enter it
    (a home below root's own ``/root``, mode 0700): then a directory of this home's own under
    `FALLBACK_DIR`, which ``root/data`` links to."""
    if user.uid is None or (blocked := blocked_directory(root, user.uid, user.groups())) is None:
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    progress(NAME, f"{user.name} cannot enter {blocked}: the cluster goes to {FALLBACK_DIR / digest}")
    return FALLBACK_DIR / digest


# --- the binaries and the OS user ---------------------------------------------------------------


def find_bin_dir(lib: Path = DEBIAN_LIB, environ: dict[str, str] | None = None) -> Path:
    """The directory of ``postgres`` and ``initdb``: `$FLEET_POSTGRES_BIN_DIR`, else Debian's newest
    ``/usr/lib/postgresql/<N>/bin``. Raises LaunchError with the install command when there is none."""
    environ = dict(os.environ) if environ is None else environ
    if explicit := environ.get(BIN_DIR_ENV):
        bin_dir = Path(explicit)
        if not all((bin_dir / tool).is_file() for tool in ("postgres", "initdb")):
            raise LaunchError(f"{BIN_DIR_ENV}={bin_dir} has no `postgres` and `initdb`")
        return bin_dir
    versions = sorted(
        (int(entry.name), entry / "bin")
        for entry in (lib.iterdir() if lib.is_dir() else ())
        if entry.name.isdigit() and all((entry / "bin" / tool).is_file() for tool in ("postgres", "initdb"))
    )
    if not versions:
        raise LaunchError(
            f"PostgreSQL's server binaries are not installed (no {lib}/<version>/bin/postgres): "
            f"`{INSTALL_HINT}` (Debian), or set {BIN_DIR_ENV} to a directory with postgres and initdb"
        )
    return versions[-1][1]


def server_major(bin_dir: Path) -> str:
    """The major version of the server in `bin_dir` ("15" for "postgres (PostgreSQL) 15.18 ...")."""
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise LaunchError(f"could not run `{bin_dir / 'postgres'} --version`: {error}") from error
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if match is None:
        raise LaunchError(f"could not read the version from `postgres --version`: {out.strip()!r}")
    return match.group(1)


@dataclass(frozen=True)
class OsUser:
    """Who the server runs as: ``None`` fields when it runs as the caller (not root)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None

    def wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """`argv` run as this user in `cwd`: ``env`` changes directory (PostgreSQL returns to its
        working directory at start, which must be one it may enter), then ``setpriv`` switches user
        and group; each execs the next, so the pid is the server's own (``runuser`` would stay as
        its parent)."""
        if self.name is None:
            return list(argv)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise LaunchError("`setpriv` (util-linux) is needed to run PostgreSQL as a non-root user")
        change = [shutil.which("env") or "env", f"--chdir={cwd}"]
        return [*change, setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv]

    def own(self, path: Path) -> None:
        """Give `path` to this user (the server reads or writes it)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def groups(self) -> set[int]:
        if self.name is None or self.gid is None:
            return set(os.getgroups()) | {os.getegid()}
        return set(os.getgrouplist(self.name, self.gid))


def os_user(euid: int | None = None) -> OsUser:
    """The caller itself, or (for root, whom PostgreSQL refuses) the OS user ``postgres``."""
    if (os.geteuid() if euid is None else euid) != 0:
        return OsUser()
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise LaunchError(
            f"PostgreSQL refuses to run as root and there is no OS user {OS_USER!r} to run it as: "
            f"`{INSTALL_HINT}` creates it (or start it as a non-root user)"
        ) from None
    return OsUser(OS_USER, entry.pw_uid, entry.pw_gid)


def blocked_directory(path: Path, uid: int, groups: set[int], top: Path = Path("/")) -> Path | None:
    """The first directory from `top` down to `path` (included) that user `uid` (in `groups`) may
    not enter, or None. Read from the mode bits, so it holds for any user, whoever asks."""
    for directory in [*reversed(path.parents), path]:
        if not directory.is_relative_to(top):
            continue
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None  # made later, by someone who can
        if uid == 0:
            continue
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


# --- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPostgresSecurity:
    """The local server's passwords: one file per role (``0600``, in a ``0700`` directory)."""

    root: Path

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def roles(self) -> tuple[str, ...]:
        return (SUPERUSER, *ROLES)

    def password_file(self, role: str) -> Path:
        if role not in self.roles:
            raise ValueError(f"the local PostgreSQL has no role {role!r}: {list(self.roles)}")
        return self.credentials_dir / f"{role}.password"

    @property
    def mlflow_pgpass(self) -> Path:
        """libpq's password file (`PGPASSFILE`) with MLflow's password, for the MLflow server."""
        return self.credentials_dir / "mlflow.pgpass"

    def password(self, role: str) -> str:
        return self.password_file(role).read_text(encoding="utf-8").strip()

    def is_complete(self) -> bool:
        return all(self.password_file(role).is_file() for role in self.roles) and self.mlflow_pgpass.is_file()

    def ensure(self) -> None:
        """Make each missing password (existing ones are kept) and MLflow's pgpass file."""
        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        self.credentials_dir.chmod(0o700)
        for role in self.roles:
            path = self.password_file(role)
            if not path.is_file():
                write_private(path, secrets.token_urlsafe(32) + "\n")
        write_private(self.mlflow_pgpass, pgpass_line(HOST, MLFLOW, MLFLOW, self.password(MLFLOW)))

    def passwords(self) -> dict[str, str]:
        """Each fleet role's password (not the superuser's)."""
        return {role: self.password(role) for role in ROLES}


def pgpass_line(host: str, database: str, role: str, password: str) -> str:
    """One line of libpq's password file, any port (``:`` and ``\\`` escaped as libpq wants)."""

    def escape(field: str) -> str:
        return field.replace("\\", "\\\\").replace(":", "\\:")

    return f"{escape(host)}:*:{escape(database)}:{escape(role)}:{escape(password)}\n"


# --- configuration ------------------------------------------------------------------------------


def hba_conf() -> str:
    """``pg_hba.conf``: SCRAM over TCP from 127.0.0.1; each role to its own database only."""
    services = ",".join(SERVICES)
    return (
        "# Written by modelfleet_devkit.postgres on every start; edits are overwritten.\n"
        "# TCP from 127.0.0.1 only, a SCRAM-SHA-256 password always: no trust, no peer, no socket.\n"
        "# A connection no line matches is refused.\n"
        "# TYPE  DATABASE        USER            ADDRESS         METHOD\n"
        f"host    all             {SUPERUSER:<15} {HOST}/32    scram-sha-256\n"
        f"host    {FLEET_DATABASE:<15} {services} {HOST}/32 scram-sha-256\n"
        f"host    {MLFLOW:<15} {MLFLOW:<15} {HOST}/32    scram-sha-256\n"
    )


def server_argv(bin_dir: Path, data: Path, port: int) -> list[str]:
    """The server's command line: its settings as ``-c`` options, so no file of initdb's is edited."""
    settings = {
        "listen_addresses": HOST,
        "port": str(port),
        # No Unix socket: nothing reaches the server but TCP with a password.
        "unix_socket_directories": "",
        "hba_file": str(data / "pg_hba.conf"),
        "password_encryption": "scram-sha-256",
        "max_connections": str(MAX_CONNECTIONS),
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }
    options = [part for key, value in settings.items() for part in ("-c", f"{key}={value}")]
    return [str(bin_dir / "postgres"), "-D", str(data), *options]


def _initdb(root: Path, bin_dir: Path, user: OsUser, security: LocalPostgresSecurity) -> None:
    """Make the cluster in ``data/`` once: superuser ``postgres`` with its password, SCRAM only."""
    data = _data(root)
    if (data / "PG_VERSION").is_file():
        return
    base = _cluster_home(root, user)
    base.mkdir(mode=0o711, parents=True, exist_ok=True)
    partial = base / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    user.own(partial)
    # initdb reads the superuser's password from a file the server's user can read: a copy that
    # lives only while initdb runs (the credentials directory is the caller's alone).
    password_copy = base / ".initdb-password"
    write_private(password_copy, security.password(SUPERUSER) + "\n")
    user.own(password_copy)
    command = user.wrap(
        cwd=base,
        argv=[
            str(bin_dir / "initdb"),
            "-D",
            str(partial),
            "-U",
            SUPERUSER,
            f"--pwfile={password_copy}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
    )
    progress(NAME, f"initialising the cluster in {data} (first start only)")
    try:
        proc = subprocess.run(command, check=False, cwd=base, capture_output=True, text=True, timeout=300)
    finally:
        password_copy.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise LaunchError(f"initdb failed (exit {proc.returncode})", f"{proc.stdout}\n{proc.stderr}")
    if base == root:
        partial.rename(data)
        return
    shutil.rmtree(base / "data", ignore_errors=True)
    partial.rename(base / "data")
    if data.is_symlink():
        data.unlink()
    data.symlink_to(base / "data", target_is_directory=True)


def _prepare(root: Path, port: int) -> tuple[list[str], None]:
    bin_dir = find_bin_dir()
    user = os_user()
    data = _data(root)
    security = LocalPostgresSecurity(root)
    if (data / "PG_VERSION").is_file() and not security.password_file(SUPERUSER).is_file():
        raise LaunchError(
            f"{data} exists but its superuser's password ({security.password_file(SUPERUSER)}) is gone: "
            f"delete {data} to start afresh (its data is lost)"
        )
    security.ensure()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    # A failed statement is logged with its text, which for a role is its password.
    (root / "logs").chmod(0o700)
    _initdb(root, bin_dir, user, security)
    made_by = (data / "PG_VERSION").read_text().strip()
    if made_by != (major := server_major(bin_dir)):
        raise LaunchError(
            f"{data} was made by PostgreSQL {made_by}, but {bin_dir} is PostgreSQL {major}: "
            f"install {made_by} ({BIN_DIR_ENV}) or delete {data} to start afresh"
        )
    data = data.resolve()
    hba = data / "pg_hba.conf"
    hba.write_text(hba_conf(), encoding="utf-8")
    hba.chmod(0o600)
    user.own(hba)
    return user.wrap(server_argv(bin_dir, data, port), cwd=data), None


# --- the API ----------------------------------------------------------------------------------


def start(home: Path, port: int = DEFAULT_PORT, timeout: float = 120) -> str:
    """Start the server unless it runs; return its address ``127.0.0.1:<port>``.

    ``home`` is the local-services root; PostgreSQL keeps its files in ``home/postgres``. Blocks
    until the superuser can sign in, then makes the fleet's roles, schemas and databases
    (idempotent: run on every start). Raises RuntimeError (LaunchError) quoting the server log if
    it dies or is not ready within ``timeout`` seconds, or if provisioning fails.
    """
    root = _root(home)
    address = _process(root).start(
        endpoint=f"{HOST}:{port}",
        ports=(port,),
        probe=_probe(root),
        prepare=lambda: _prepare(root, port),
        timeout=timeout,
    )
    security = LocalPostgresSecurity(root)
    try:
        roles = provision(
            host=HOST,
            port=port,
            admin_password=security.password(SUPERUSER),
            passwords=security.passwords(),
        )
    except ProvisioningError as error:
        raise LaunchError(str(error)) from error
    progress(NAME, f"roles {', '.join(roles)} with their schemas and databases are in place")
    return address


def stop(home: Path, timeout: float = 60.0) -> None:
    """Stop the server of ``home``: a fast shutdown (SIGINT: clients are disconnected, the data
    checkpointed), then SIGTERM and SIGKILL to its processes if it is still up after ``timeout``."""
    process = _process(_root(home))
    with process.lock():
        pid = process.running_pid()
        if pid is None:
            progress(NAME, "not running")
            return
        # The postmaster alone: it shuts its own processes down in order.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_alive(pid):
            terminate(pid, 10.0)
        process.pid_file.unlink(missing_ok=True)
        progress(NAME, f"stopped (pid {pid})")


def status(home: Path, port: int | None = None) -> tuple[bool, str]:
    """Return (answering, one-line description) of the server of ``home``.

    ``port`` defaults to the one the server was last started with.
    """
    root = _root(home)
    return _process(root).status(_probe(root), f"{HOST}:{port}" if port else None)


def endpoint(home: Path) -> str | None:
    """``127.0.0.1:<port>`` of the server of ``home`` if it runs."""
    process = _process(_root(home))
    return process.endpoint() if process.running_pid() else None


def server_port(home: Path) -> int:
    """The port of the running server of ``home``; LaunchError if it does not run."""
    address = endpoint(home)
    if address is None:
        raise LaunchError(f"no local PostgreSQL runs from {_root(home)}: start it (`make postgres`)")
    return int(address.rsplit(":", 1)[1])


def password_file(home: Path, role: str) -> Path:
    """The file holding ``role``'s password on the local server of ``home`` (0600)."""
    return LocalPostgresSecurity(_root(home)).password_file(role)


def client_environment(home: Path, service: str) -> dict[str, str]:
    """``FLEET_STATE_URL`` and ``FLEET_STATE_PASSWORD_FILE`` that connect ``service`` to its own
    schema on the running server of ``home`` (the password stays in its file)."""
    if service not in SERVICES:
        raise ValueError(f"{service!r} is not a service of the fleet: {list(SERVICES)}")
    return {
        "FLEET_STATE_URL": state_url(service, HOST, server_port(home)),
        "FLEET_STATE_PASSWORD_FILE": str(password_file(home, service)),
    }


def mlflow_backend_uri(home: Path) -> str:
    """MLflow's backend store on the running server of ``home`` (no password: `mlflow_environment`)."""
    return mlflow_url(HOST, server_port(home))


def mlflow_environment(home: Path) -> dict[str, str]:
    """What an MLflow server needs to sign in to `mlflow_backend_uri`: libpq's password file."""
    return {"PGPASSFILE": str(LocalPostgresSecurity(_root(home)).mlflow_pgpass)}


def _probe(root: Path) -> Probe:
    def probe(address: str, timeout: float) -> bool:
        security = LocalPostgresSecurity(root)
        if not security.password_file(SUPERUSER).is_file():
            return False
        host, _, port_text = address.rpartition(":")
        return is_ready(host, int(port_text), security.password(SUPERUSER), timeout)

    return probe


def is_ready(host: str, port: int, password: str, timeout: float = 5.0, user: str = SUPERUSER) -> bool:
    """Return True if ``user`` can sign in to the server at ``host:port`` with ``password``."""
    import psycopg

    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            # libpq takes whole seconds, at least 2.
            connect_timeout=max(2, int(timeout)),
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``start|stop|status [--home DIR] [--port N] [--timeout S]``."""
    args = make_parser(NAME, DEFAULT_PORT).parse_args(argv)
    chosen = args.port or DEFAULT_PORT
    return run_cli(
        NAME,
        args,
        start=lambda home: start(home, chosen, args.timeout),
        stop=stop,
        status=lambda home: status(home, args.port),
    )


if __name__ == "__main__":
    sys.exit(main())
