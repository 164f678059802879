"""The CLI refuses bad arguments with a specific message and explains the fleet's topics."""

from __future__ import annotations

import base64

import pytest
from typer.testing import CliRunner

from modelfleet_cli.exit_codes import ExitCode
from modelfleet_cli.main import app

runner = CliRunner()


def test_topics_lists_every_topic_with_its_physical_name(monkeypatch) -> None:
    monkeypatch.setenv("FLEET_TOPIC_PREFIX", "staging.")
    result = runner.invoke(app, ["topics"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "staging.fleet.model-specs.v1" in result.output
    assert "staging.fleet.dead-letter.v1" in result.output


def test_retrain_refuses_a_name_that_is_not_a_model_name() -> None:
    result = runner.invoke(app, ["retrain", "Churn SE!"], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "is not a model name" in result.output


def test_retire_needs_a_reason() -> None:
    result = runner.invoke(app, ["retire", "churn-se", "--reason", "  "], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "say why the model is retired" in result.output


def test_an_unreachable_broker_is_one_clear_error_on_stderr_with_its_own_exit_status() -> None:
    result = runner.invoke(
        app,
        ["retrain", "churn-se"],
        env={"COLUMNS": "250", "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "could not publish to Kafka at 127.0.0.1:1" in result.stderr
    assert result.stdout == ""


def test_an_approval_is_signed_with_the_approvers_key_over_the_artifact_fleet_expiry_and_nonce(
    tmp_path, monkeypatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from modelfleet_cli import main
    from modelfleet_contracts.rollout import approval_message

    published = []
    monkeypatch.setattr(main, "_publish", lambda event, as_json=False: published.append(event))
    key = tmp_path / "alice.pem"
    made = runner.invoke(app, ["keygen", str(key), "--approver", "alice"], env={"COLUMNS": "250"})
    assert made.exit_code == 0, made.output
    name, public_key = made.stdout.split()
    assert name == "alice"

    def approve(*options: str) -> None:
        result = runner.invoke(
            app,
            [
                "approve",
                "churn-se",
                "7",
                "--key-file",
                str(key),
                "--approver",
                "alice",
                "--digest",
                "d" * 64,
                *list(options),
            ],
            env={"COLUMNS": "250", "FLEET_TOPIC_PREFIX": "fleet-a."},
        )
        assert result.exit_code == 0, result.output

    approve()
    approve("--expires-in", "30m")
    day, half_hour = published
    assert (day.model, day.version, day.approver) == ("churn-se", "7", "alice")
    assert (day.digest, day.topic_prefix) == ("d" * 64, "fleet-a.")
    assert day.expires_at - datetime.now(UTC) == pytest.approx(timedelta(hours=24), abs=timedelta(minutes=1))
    assert half_hour.expires_at - datetime.now(UTC) == pytest.approx(
        timedelta(minutes=30), abs=timedelta(minutes=1)
    )
    assert day.nonce
    assert half_hour.nonce
    assert day.nonce != half_hour.nonce
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    verifier.verify(
        base64.b64decode(day.signature),
        approval_message("churn-se", "7", "d" * 64, "fleet-a.", day.expires_at, day.nonce),
    )


def test_approve_refuses_an_expiry_that_is_not_a_duration(tmp_path) -> None:
    key = tmp_path / "alice.pem"
    runner.invoke(app, ["keygen", str(key)])
    result = runner.invoke(
        app,
        ["approve", "churn-se", "7", "--key-file", str(key), "--expires-in", "tomorrow"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 2
    assert "is not a duration" in result.output


def test_keygen_never_overwrites_a_key(tmp_path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("precious")
    result = runner.invoke(app, ["keygen", str(key)], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "refusing to overwrite a key" in result.output
    assert key.read_text() == "precious"


def test_approve_and_rollback_refuse_what_is_not_a_version(tmp_path) -> None:
    approve = runner.invoke(app, ["approve", "churn-se", "latest", "--key-file", str(tmp_path / "none.pem")])
    assert approve.exit_code == 2
    assert "is not a registry version" in approve.output
    rollback = runner.invoke(app, ["rollback", "churn-se", "--to", "v2", "--reason", "bad canary"])
    assert rollback.exit_code == 2
    assert "is not a registry version" in rollback.output


def test_rollback_needs_a_reason() -> None:
    result = runner.invoke(app, ["rollback", "churn-se", "--reason", " "], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "say why the model is rolled back" in result.output
