"""The local MLflow server's credentials, and how a process signs in to MLflow with a password file."""

from __future__ import annotations

import configparser
import os
import stat
from pathlib import Path

import pytest
from mlflow.tracking.request_auth.registry import fetch_auth
from requests.auth import HTTPBasicAuth

from modelfleet_cli.local_home.mlflow import ADMIN, USERS
from modelfleet_common.mlflow_auth import (
    GRANTS,
    PROVIDER_NAME,
    MlflowCredentialsError,
    PasswordFileAuth,
    use_mlflow_credentials,
)
from modelfleet_common.mlflow_users import provision_users
from modelfleet_common.settings import ServiceSettings
from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit.mlflow_security import LocalMlflowSecurity


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_private_random_and_kept(tmp_path: Path) -> None:
    security = LocalMlflowSecurity(tmp_path / "mlflow")
    security.ensure()
    assert mode(security.credentials_dir) == 0o700
    passwords = {user: security.password(user) for user in security.users}
    assert set(passwords) == {ADMIN, *USERS}
    assert len(set(passwords.values())) == len(passwords)  # random, one each
    assert all(len(p) >= 32 for p in passwords.values())
    for user in security.users:
        assert mode(security.password_file(user)) == 0o600
    assert mode(security.config_file) == 0o600  # it holds the admin's first password

    security.ensure()  # a second start keeps every password
    assert {user: security.password(user) for user in security.users} == passwords
    assert security.is_complete()


def test_auth_config_denies_by_default(tmp_path: Path) -> None:
    security = LocalMlflowSecurity(tmp_path / "mlflow")
    security.ensure()
    config = configparser.ConfigParser()
    config.read(security.config_file)
    section = config["mlflow"]
    assert section["default_permission"] == "NO_PERMISSIONS"
    assert section["admin_username"] == ADMIN
    assert section["admin_password"] == security.password(ADMIN)
    assert section["database_uri"] == f"sqlite:///{security.auth_db}"


def test_every_local_user_has_grants_and_no_one_may_delete() -> None:
    assert set(USERS) == set(GRANTS)
    levels = {level for grants in GRANTS.values() for level in grants.values()}
    assert levels <= {"READ", "EDIT", "DENY"}  # never MANAGE (delete, change permissions)
    # Only the registry writes registered models; only trainer and evaluator write runs.
    assert [u for u, g in GRANTS.items() if g["registered_model"] == "EDIT"] == ["registry"]
    assert sorted(u for u, g in GRANTS.items() if g["experiment"] == "EDIT") == ["evaluator", "trainer"]


def test_unknown_user_is_refused(tmp_path: Path) -> None:
    security = LocalMlflowSecurity(tmp_path / "mlflow")
    with pytest.raises(ValueError, match="no user 'deployer'"):
        security.password_file("deployer")
    with pytest.raises(ValueError, match=r"no MLflow grants for \['deployer'\]"):
        provision_users("http://127.0.0.1:9", "x", {"deployer": "y"})


def test_password_file_auth_reads_the_file_on_each_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "trainer.password"
    secret.write_text("first\n")
    monkeypatch.setenv("FLEET_MLFLOW_USERNAME", "trainer")
    monkeypatch.setenv("FLEET_MLFLOW_PASSWORD_FILE", str(secret))
    auth = PasswordFileAuth().get_auth()
    assert (auth.username, auth.password) == ("trainer", "first")
    secret.write_text("rotated\n")
    assert PasswordFileAuth().get_auth().password == "rotated"

    secret.write_text("\n")
    with pytest.raises(MlflowCredentialsError, match="is empty"):
        PasswordFileAuth().get_auth()
    monkeypatch.delenv("FLEET_MLFLOW_PASSWORD_FILE")
    with pytest.raises(
        MlflowCredentialsError, match="needs FLEET_MLFLOW_USERNAME and FLEET_MLFLOW_PASSWORD_FILE"
    ):
        PasswordFileAuth().get_auth()


def test_use_mlflow_credentials_signs_mlflow_in_without_the_password_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_AUTH", "FLEET_MLFLOW_USERNAME", "FLEET_MLFLOW_PASSWORD_FILE"):
        monkeypatch.setenv(name, "")  # restored (to unset) after the test
        monkeypatch.delenv(name)
    assert use_mlflow_credentials(ServiceSettings()) is None

    secret = tmp_path / "evaluator.password"
    secret.write_text("s3cret\n")
    settings = ServiceSettings(mlflow_username="evaluator", mlflow_password_file=secret)
    assert use_mlflow_credentials(settings) == "evaluator"
    assert os.environ["MLFLOW_TRACKING_AUTH"] == PROVIDER_NAME
    assert "s3cret" not in "".join(os.environ.values())
    # MLflow finds the provider through modelfleet-common's entry point.
    auth = fetch_auth(PROVIDER_NAME)
    assert isinstance(auth, HTTPBasicAuth)
    assert (auth.username, auth.password) == ("evaluator", "s3cret")


def test_use_mlflow_credentials_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    with pytest.raises(MlflowCredentialsError, match="go together; only FLEET_MLFLOW_USERNAME"):
        use_mlflow_credentials(ServiceSettings(mlflow_username="trainer"))
    with pytest.raises(MlflowCredentialsError, match="cannot be read"):
        use_mlflow_credentials(
            ServiceSettings(mlflow_username="trainer", mlflow_password_file=tmp_path / "missing")
        )


def test_settings_read_the_mlflow_user_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_MLFLOW_USERNAME", "registry")
    monkeypatch.setenv("FLEET_MLFLOW_PASSWORD_FILE", str(tmp_path / "registry.password"))
    settings = ServiceSettings()
    assert settings.mlflow_username == "registry"
    assert settings.mlflow_password_file == tmp_path / "registry.password"


def test_local_credentials_go_only_to_the_local_server(tmp_path: Path) -> None:
    LocalMlflowSecurity(tmp_path / "mlflow").ensure()
    env = local_mlflow.client_environment(tmp_path, "serving")
    assert env == {
        "MLFLOW_TRACKING_AUTH": PROVIDER_NAME,
        "FLEET_MLFLOW_USERNAME": "serving",
        "FLEET_MLFLOW_PASSWORD_FILE": str(tmp_path / "mlflow" / "credentials" / "serving.password"),
    }
    # No server of this home runs: nothing, whatever the URI.
    assert local_mlflow.user_environment(tmp_path, "serving", "http://127.0.0.1:5000", environ={}) == {}
    # Credentials of the caller's own win; services without an MLflow user get none.
    explicit = {"MLFLOW_TRACKING_USERNAME": "me"}
    assert local_mlflow.user_environment(tmp_path, "serving", "http://127.0.0.1:5000", environ=explicit) == {}
    assert local_mlflow.user_environment(tmp_path, "deployer", "http://127.0.0.1:5000", environ={}) == {}
