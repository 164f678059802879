"""The local PostgreSQL's pure parts: binaries, OS user, configuration, credentials, client settings.

The server itself (initdb, start, the roles refused each other's schema) is exercised by
tests/integration/test_postgres.py.
"""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

import pytest

from modelfleet_common.postgres_roles import (
    FLEET_DATABASE,
    MLFLOW,
    ROLES,
    SUPERUSER,
    check_name,
    mlflow_url,
    read_password,
    state_url,
)
from modelfleet_common.postgres_roles import main as roles_main
from modelfleet_contracts.topics import SERVICES
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit import postgres as local_postgres
from modelfleet_devkit._process import LaunchError
from modelfleet_devkit.mlflow_security import LocalMlflowSecurity
from modelfleet_devkit.postgres import (
    LocalPostgresSecurity,
    OsUser,
    blocked_directory,
    find_bin_dir,
    hba_conf,
    os_user,
    pgpass_line,
    server_argv,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fake_version(lib: Path, version: str) -> Path:
    bin_dir = lib / version / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("postgres", "initdb"):
        (bin_dir / tool).write_text("#!/bin/sh\n")
    return bin_dir


def test_the_newest_debian_server_is_chosen(tmp_path: Path) -> None:
    fake_version(tmp_path, "9")
    newest = fake_version(tmp_path, "16")
    (tmp_path / "17" / "bin").mkdir(parents=True)  # a client-only install: no server
    assert find_bin_dir(tmp_path, environ={}) == newest


def test_an_explicit_bin_dir_wins_and_must_hold_the_server(tmp_path: Path) -> None:
    custom = fake_version(tmp_path / "custom", "15")
    assert find_bin_dir(tmp_path / "none", environ={"FLEET_POSTGRES_BIN_DIR": str(custom)}) == custom
    with pytest.raises(LaunchError, match="no `postgres` and `initdb`"):
        find_bin_dir(tmp_path, environ={"FLEET_POSTGRES_BIN_DIR": str(tmp_path)})


def test_without_the_binaries_the_error_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"`apt-get install postgresql`"):
        find_bin_dir(tmp_path / "absent", environ={})


def test_root_runs_the_server_as_the_postgres_user_and_others_as_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert os_user(euid=1000) == OsUser()
    assert OsUser().wrap(["postgres", "-D", "data"], cwd=Path("/x")) == ["postgres", "-D", "data"]
    monkeypatch.setattr(local_postgres.shutil, "which", lambda name: f"/usr/bin/{name}")
    user = OsUser("postgres", 101, 104)
    # env and setpriv exec the server: the pid recorded is the postmaster's own.
    assert user.wrap(["postgres", "-D", "data"], cwd=Path("/x/data")) == [
        "/usr/bin/env",
        "--chdir=/x/data",
        "/usr/bin/setpriv",
        "--reuid=101",
        "--regid=104",
        "--init-groups",
        "--",
        "postgres",
        "-D",
        "data",
    ]


def test_root_without_a_postgres_user_is_told_to_install_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr(local_postgres.pwd, "getpwnam", missing)
    with pytest.raises(LaunchError, match=r"refuses to run as root.*apt-get install postgresql"):
        os_user(euid=0)


def test_a_directory_the_server_user_cannot_enter_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "home" / "postgres"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    stranger = closed.stat().st_uid + 4242
    try:
        assert blocked_directory(inner, stranger, set(), top=closed) == closed
        closed.chmod(0o711)  # entering is enough
        assert blocked_directory(inner, stranger, set(), top=closed) is None
        closed.chmod(0o710)  # through the group
        assert blocked_directory(inner, stranger, {closed.stat().st_gid}, top=closed) is None
        assert blocked_directory(inner, stranger, set(), top=closed) == closed
    finally:
        closed.chmod(0o755)
    # Not made yet: whoever makes it makes it enterable.
    assert blocked_directory(closed / "later" / "postgres", stranger, set(), top=closed) is None


def test_every_connection_needs_a_scram_password_over_loopback_tcp() -> None:
    lines = [line.split() for line in hba_conf().splitlines() if line and not line.startswith("#")]
    assert lines, "pg_hba.conf allows nothing"
    for kind, _database, _users, address, method in lines:
        assert (kind, address, method) == ("host", "127.0.0.1/32", "scram-sha-256")
    access = {database: set(users.split(",")) for _, database, users, _, _ in lines}
    assert access == {"all": {SUPERUSER}, FLEET_DATABASE: set(SERVICES), MLFLOW: {MLFLOW}}
    assert "trust" not in hba_conf().replace("no trust", "")


def test_the_server_listens_on_loopback_tcp_only(tmp_path: Path) -> None:
    argv = server_argv(Path("/usr/lib/postgresql/15/bin"), tmp_path / "data", 5544)
    assert argv[:3] == ["/usr/lib/postgresql/15/bin/postgres", "-D", str(tmp_path / "data")]
    settings = dict(option.split("=", 1) for option in argv[4::2])
    assert argv[3::2] == ["-c"] * len(settings)
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["port"] == "5544"
    assert settings["unix_socket_directories"] == ""  # no socket
    assert settings["password_encryption"] == "scram-sha-256"
    assert settings["hba_file"] == str(tmp_path / "data" / "pg_hba.conf")


def test_credentials_are_private_random_and_kept(tmp_path: Path) -> None:
    security = LocalPostgresSecurity(tmp_path / "postgres")
    security.ensure()
    assert mode(security.credentials_dir) == 0o700
    passwords = {role: security.password(role) for role in security.roles}
    assert set(passwords) == {SUPERUSER, *SERVICES, MLFLOW}
    assert len(set(passwords.values())) == len(passwords)
    assert all(len(password) >= 32 for password in passwords.values())
    for role in security.roles:
        assert mode(security.password_file(role)) == 0o600
    assert mode(security.mlflow_pgpass) == 0o600
    assert security.mlflow_pgpass.read_text() == f"127.0.0.1:*:mlflow:mlflow:{passwords[MLFLOW]}\n"
    security.ensure()
    assert {role: security.password(role) for role in security.roles} == passwords
    assert security.is_complete()
    with pytest.raises(ValueError, match="no role 'cli'"):
        security.password_file("cli")


def test_pgpass_fields_are_escaped() -> None:
    assert pgpass_line("127.0.0.1", "db", "me", r"a:b\c") == "127.0.0.1:*:db:me:a\\:b\\\\c\n"


def test_urls_name_the_role_and_database_never_a_password() -> None:
    assert state_url("trainer", "postgres", 5432) == "postgresql+psycopg://trainer@postgres:5432/modelfleet"
    assert mlflow_url("127.0.0.1", 5433) == "postgresql+psycopg://mlflow@127.0.0.1:5433/mlflow"
    for bad in ("Trainer", "drop table", "a;b", "", "x" * 64):
        with pytest.raises(ValueError, match="plain PostgreSQL name"):
            check_name(bad)
    assert (*SERVICES, MLFLOW) == ROLES


def test_a_stopped_server_gives_no_settings_but_says_to_start_it(tmp_path: Path) -> None:
    root = tmp_path / "postgres"
    process = local_postgres._process(root)
    LocalPostgresSecurity(root).ensure()
    process.root.mkdir(parents=True, exist_ok=True)
    process.pid_file.write_text("1\n")  # not ours: the server does not run
    with pytest.raises(LaunchError, match=r"no local PostgreSQL runs.*make postgres"):
        local_postgres.client_environment(tmp_path, "trainer")


def test_client_environment_of_a_running_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_postgres, "endpoint", lambda home: "127.0.0.1:5544")
    env = local_postgres.client_environment(tmp_path, "deployer")
    assert env == {
        "FLEET_STATE_URL": "postgresql+psycopg://deployer@127.0.0.1:5544/modelfleet",
        "FLEET_STATE_PASSWORD_FILE": str(
            tmp_path.resolve() / "postgres" / "credentials" / "deployer.password"
        ),
    }
    with pytest.raises(ValueError, match="not a service"):
        local_postgres.client_environment(tmp_path, "mlflow")
    assert local_postgres.mlflow_backend_uri(tmp_path) == "postgresql+psycopg://mlflow@127.0.0.1:5544/mlflow"
    assert local_postgres.mlflow_environment(tmp_path) == {
        "PGPASSFILE": str(tmp_path.resolve() / "postgres" / "credentials" / "mlflow.pgpass")
    }


def test_mlflow_on_postgres_keeps_its_users_there_and_its_password_in_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_postgres, "endpoint", lambda home: "127.0.0.1:5544")
    monkeypatch.setattr(local_mlflow.importlib.util, "find_spec", lambda name: object())
    uri, env = local_mlflow._backend(tmp_path, "postgres")
    argv, server_env = local_mlflow._prepare(tmp_path / "mlflow", 5000, uri, env)
    assert argv[argv.index("--backend-store-uri") + 1] == "postgresql+psycopg://mlflow@127.0.0.1:5544/mlflow"
    assert server_env["PGPASSFILE"].endswith("credentials/mlflow.pgpass")
    assert not any("password" in part.lower() for part in argv)
    config = configparser.ConfigParser()
    config.read_string(LocalMlflowSecurity(tmp_path / "mlflow").config_file.read_text())
    assert config["mlflow"]["database_uri"] == uri
    # The default stays SQLite, users included.
    sqlite_uri, sqlite_env = local_mlflow._backend(tmp_path, "sqlite")
    argv, _ = local_mlflow._prepare(tmp_path / "mlflow", 5000, sqlite_uri, sqlite_env)
    assert argv[argv.index("--backend-store-uri") + 1].startswith("sqlite:////")
    config.read_string(LocalMlflowSecurity(tmp_path / "mlflow").config_file.read_text())
    assert config["mlflow"]["database_uri"].endswith("/mlflow/auth.db")
    with pytest.raises(LaunchError, match="unknown MLflow backend"):
        local_mlflow._backend(tmp_path, "mysql")


def test_the_provisioning_cli_needs_a_pattern_and_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = tmp_path / "admin"
    admin.write_text("secret\n")
    with pytest.raises(SystemExit):
        roles_main(["provision", "--host", "h", "--admin-password-file", str(admin), "--password-files", "x"])
    assert "{role}" in capsys.readouterr().err
    pattern = str(tmp_path / "{role}.password")
    with pytest.raises(SystemExit):
        roles_main(
            ["provision", "--host", "h", "--admin-password-file", str(admin), "--password-files", pattern]
        )
    assert "no password file" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_password(tmp_path / "empty")


def test_a_home_the_server_user_cannot_enter_keeps_its_cluster_elsewhere(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    root = closed / "home" / "postgres"
    root.mkdir(parents=True)
    stranger = OsUser("stranger", closed.stat().st_uid + 4242, closed.stat().st_gid + 4242)
    assert local_postgres._cluster_home(root, OsUser()) == root  # the caller itself runs it
    closed.chmod(0o700)
    try:
        elsewhere = local_postgres._cluster_home(root, stranger)
        # Another home gets another place, the same home the same one.
        assert elsewhere.parent == local_postgres.FALLBACK_DIR
        assert elsewhere == local_postgres._cluster_home(root, stranger)
        assert local_postgres._cluster_home(tmp_path / "other", stranger) != elsewhere
    finally:
        closed.chmod(0o755)
