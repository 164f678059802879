"""The state engine on a real PostgreSQL: what one replica stores another reads, one key has one
holder at a time across replicas, a dead holder's lock is freed, and a role stays in its schema."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelfleet_common.idempotency import SqlIdempotencyStore
from modelfleet_common.settings import StateSettings
from modelfleet_common.state import StateEngine, StateUnavailable
from modelfleet_devkit import postgres as local_postgres

pytestmark = pytest.mark.integration


def settings_of(postgres_home: Path, service: str, **extra: object) -> StateSettings:
    env = local_postgres.client_environment(postgres_home, service)
    return StateSettings(
        url=env["FLEET_STATE_URL"], password_file=Path(env["FLEET_STATE_PASSWORD_FILE"]), **extra
    )


def replica(postgres_home: Path, service: str, tmp_path: Path) -> StateEngine:
    """What one replica of `service` opens: its role, its schema (no local file involved)."""
    return StateEngine.open(
        settings_of(postgres_home, service), service=service, state_dir=tmp_path / "unused"
    )


def test_what_one_replica_stores_the_other_reads_and_marks_are_shared(
    postgres_home: Path, tmp_path: Path
) -> None:
    first, second = replica(postgres_home, "deployer", tmp_path), replica(postgres_home, "deployer", tmp_path)
    key = f"m-{time.time_ns()}"
    first.key_values().put("rollouts", key, {"stage": "canary", "step": 1})
    assert second.key_values().get("rollouts", key) == {"stage": "canary", "step": 1}
    SqlIdempotencyStore(first, ttl_seconds=3600).mark(f"applied:{key}")
    assert SqlIdempotencyStore(second, ttl_seconds=3600).seen(f"applied:{key}")
    assert not (tmp_path / "unused").exists()
    first.close()
    second.close()


async def test_one_key_has_one_holder_at_a_time_across_replicas(postgres_home: Path, tmp_path: Path) -> None:
    first, second = replica(postgres_home, "deployer", tmp_path), replica(postgres_home, "deployer", tmp_path)
    key = f"model-{time.time_ns()}"
    order: list[str] = []

    async def hold(engine: StateEngine, name: str) -> None:
        async with engine.locks.hold(key):
            order.append(f"{name} in")
            await asyncio.sleep(0.3)
            order.append(f"{name} out")

    await asyncio.gather(hold(first, "a"), hold(second, "b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    first.close()
    second.close()


def test_a_killed_holder_frees_its_lock(postgres_home: Path, tmp_path: Path) -> None:
    env = local_postgres.client_environment(postgres_home, "trainer")
    key = f"training-{time.time_ns()}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio, sys
                from pathlib import Path
                from modelfleet_common.settings import StateSettings
                from modelfleet_common.state import StateEngine
                settings = StateSettings(url={env["FLEET_STATE_URL"]!r},
                                         password_file=Path({env["FLEET_STATE_PASSWORD_FILE"]!r}))
                engine = StateEngine.open(settings, service="trainer", state_dir=Path("unused"))
                async def main():
                    async with engine.locks.hold({key!r}):
                        print("held", flush=True)
                        await asyncio.sleep(600)
                asyncio.run(main())
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        other = replica(postgres_home, "trainer", tmp_path)

        async def acquire() -> float:
            started = time.monotonic()
            async with other.locks.hold(key):
                return time.monotonic() - started

        waiting = asyncio.run(asyncio.wait_for(_after_kill(holder, acquire), timeout=60))
        assert waiting >= 0.5  # it waited for the holder, and got the lock once the holder died
        other.close()
    finally:
        holder.kill()
        holder.wait(10)


async def _after_kill(holder: subprocess.Popen[str], acquire: object) -> float:
    task = asyncio.ensure_future(acquire())  # type: ignore[operator]
    await asyncio.sleep(1.0)
    assert not task.done(), "the lock was granted while its holder lived"
    holder.kill()
    return float(await task)


def test_a_service_role_cannot_open_another_services_schema(postgres_home: Path, tmp_path: Path) -> None:
    trainer_as_deployer = settings_of(postgres_home, "trainer", schema_name="deployer")
    with pytest.raises(StateUnavailable, match="permission denied for schema deployer"):
        StateEngine.open(trainer_as_deployer, service="trainer", state_dir=tmp_path)


def test_a_wrong_password_is_refused_naming_the_variables_without_the_password(
    postgres_home: Path, tmp_path: Path
) -> None:
    settings = settings_of(postgres_home, "trainer").model_copy(update={"password": None})
    wrong = settings.model_copy(update={"password": __import__("pydantic").SecretStr("not-the-password")})
    with pytest.raises(StateUnavailable, match="FLEET_STATE_PASSWORD_FILE") as refused:
        StateEngine.open(wrong, service="trainer", state_dir=tmp_path)
    assert "not-the-password" not in str(refused.value)
    assert "password authentication failed" in str(refused.value)
