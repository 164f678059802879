"""The CLI refuses bad arguments with a specific message and explains the fleet's topics."""

from __future__ import annotations

from typer.testing import CliRunner

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


def test_an_unreachable_broker_is_one_clear_error() -> None:
    result = runner.invoke(
        app,
        ["retrain", "churn-se"],
        env={"COLUMNS": "250", "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert result.exit_code == 1
    assert "could not publish to Kafka at 127.0.0.1:1" in result.output
