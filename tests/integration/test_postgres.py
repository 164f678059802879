"""The local PostgreSQL (Debian's server, `make postgres`): each service's role owns its own schema and
nothing else, every connection needs its password, and MLflow runs on its own database there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from sqlalchemy.exc import OperationalError, ProgrammingError

from modelfleet_devkit import mlflow as local_mlflow
from modelfleet_devkit import postgres as local_postgres

from .fleet import free_port

pytestmark = pytest.mark.integration


def connect_as(home: Path, service: str) -> sa.Engine:
    """An engine as the service would open it: FLEET_STATE_URL, the password from its file."""
    env = local_postgres.client_environment(home, service)
    password = Path(env["FLEET_STATE_PASSWORD_FILE"]).read_text().strip()
    return sa.create_engine(sa.make_url(env["FLEET_STATE_URL"]).set(password=password))


def refused(engine: sa.Engine, statement: str) -> str:
    """The server's reason for refusing `statement` (fails the test if it is accepted)."""
    with pytest.raises((ProgrammingError, OperationalError)) as caught, engine.begin() as connection:
        connection.execute(sa.text(statement))
    return str(caught.value.orig)


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def test_a_service_keeps_its_state_in_its_own_schema(postgres_home: Path, table: str) -> None:
    trainer = connect_as(postgres_home, "trainer")
    with trainer.begin() as connection:
        # Unqualified names land in its own schema (its search_path there).
        connection.execute(sa.text(f"CREATE TABLE {table} (model text PRIMARY KEY, revision int)"))
        connection.execute(sa.text(f"INSERT INTO {table} VALUES ('churn-se', 3)"))
    with trainer.connect() as connection:
        assert connection.execute(sa.text(f"SELECT revision FROM trainer.{table}")).scalar_one() == 3
        owner = connection.execute(
            sa.text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'trainer'")
        ).scalar_one()
    assert owner == "trainer"
    trainer.dispose()


def test_a_service_is_refused_another_services_schema(postgres_home: Path, table: str) -> None:
    trainer, ingest = connect_as(postgres_home, "trainer"), connect_as(postgres_home, "ingest")
    with trainer.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE trainer.{table} (k text)"))
        connection.execute(sa.text(f"INSERT INTO trainer.{table} VALUES ('secret')"))
    with ingest.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE ingest.{table} (k text)"))

    # Neither reads, writes nor creates in the other's schema, nor shares anything through public.
    assert "permission denied for schema trainer" in refused(ingest, f"SELECT * FROM trainer.{table}")
    assert "permission denied for schema trainer" in refused(
        ingest, f"INSERT INTO trainer.{table} VALUES ('x')"
    )
    assert "permission denied for schema trainer" in refused(ingest, "CREATE TABLE trainer.planted (k text)")
    assert "permission denied for schema ingest" in refused(trainer, f"SELECT * FROM ingest.{table}")
    assert "permission denied for schema public" in refused(ingest, "CREATE TABLE public.shared (k text)")
    # Nor may it hand itself more: no role, no database.
    assert "permission denied" in refused(ingest, "CREATE ROLE intruder LOGIN")
    assert "must be owner of schema trainer" in refused(ingest, "ALTER SCHEMA trainer OWNER TO ingest")
    trainer.dispose()
    ingest.dispose()


def test_every_connection_needs_its_own_password_and_database(postgres_home: Path) -> None:
    port = local_postgres.server_port(postgres_home)
    trainer_password = local_postgres.password_file(postgres_home, "trainer").read_text().strip()

    def reason(**kwargs: object) -> str:
        settings = {"host": "127.0.0.1", "port": port, "dbname": "modelfleet", **kwargs}
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(**settings, connect_timeout=5).close()  # type: ignore[arg-type]
        return str(caught.value)

    assert "password authentication failed" in reason(user="trainer", password="not-its-password")
    # No trust: a connection without a password is asked for one, and gets nowhere.
    assert "no password supplied" in reason(user="trainer", password="")
    assert "password authentication failed" in reason(user="ingest", password=trainer_password)
    # A service's role may reach only the fleet's database; MLflow's only its own.
    assert "no pg_hba.conf entry" in reason(user="trainer", password=trainer_password, dbname="mlflow")
    assert "no pg_hba.conf entry" in reason(user="trainer", password=trainer_password, dbname="postgres")
    mlflow_password = local_postgres.password_file(postgres_home, "mlflow").read_text().strip()
    assert "no pg_hba.conf entry" in reason(user="mlflow", password=mlflow_password)


def test_start_is_idempotent_and_keeps_the_data(postgres_home: Path, table: str) -> None:
    address = local_postgres.endpoint(postgres_home)
    assert address is not None
    deployer = connect_as(postgres_home, "deployer")
    with deployer.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (k text)"))
    # Provisioning again (passwords reset to their files, grants put right) changes nothing else.
    assert local_postgres.start(postgres_home, port=int(address.rsplit(":", 1)[1])) == address
    with deployer.connect() as connection:
        assert connection.execute(sa.text(f"SELECT count(*) FROM deployer.{table}")).scalar_one() == 0
    deployer.dispose()


@pytest.fixture
def mlflow_on_postgres(postgres_home: Path) -> Iterator[str]:
    """A second MLflow server of the PostgreSQL's home, on its database `mlflow`."""
    uri = local_mlflow.start(postgres_home, port=free_port(), timeout=180, backend="postgres")
    try:
        yield uri
    finally:
        local_mlflow.stop(postgres_home)


def test_mlflow_runs_on_its_postgres_database(
    mlflow_on_postgres: str, postgres_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = mlflow_on_postgres
    for name, value in local_mlflow.client_environment(postgres_home, "admin").items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(client.create_experiment(f"pg-{uuid.uuid4().hex[:8]}"))
    client.log_metric(run.info.run_id, "roc_auc", 0.91)
    name = f"pg-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"roc_auc": 0.91}
    assert client.get_model_version(name, version.version).run_id == run.info.run_id
    # Behind its auth app still, whose users are in the same database.
    anonymous = httpx.get(
        f"{uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, trust_env=False
    )
    assert anonymous.status_code == 401

    # Both migration histories ran there; nothing of the server's state went to SQLite files.
    pgpass = local_postgres.mlflow_environment(postgres_home)["PGPASSFILE"]
    backend = sa.create_engine(
        local_postgres.mlflow_backend_uri(postgres_home), connect_args={"passfile": pgpass}
    )
    with backend.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        runs = connection.execute(
            sa.text("SELECT count(*) FROM runs WHERE run_uuid = :id"), {"id": run.info.run_id}
        )
        assert runs.scalar_one() == 1
    backend.dispose()
    assert {"alembic_version", "alembic_version_auth", "experiments", "runs", "users"} <= tables
    assert not (postgres_home / "mlflow" / "mlflow.db").exists()
    assert not (postgres_home / "mlflow" / "auth.db").exists()
