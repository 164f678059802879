"""The CLI speaks to people and to scripts: results on stdout (whole rows in a pipe, or JSON), errors
and progress on stderr, one exit status per outcome, `--version`, numbers rounded for people."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from modelfleet_cli import main
from modelfleet_cli.exit_codes import ExitCode
from modelfleet_cli.main import app
from modelfleet_common.naming import TopicNamer
from modelfleet_contracts import DatasetVersionCreated
from modelfleet_contracts.data import ColumnInfo
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import ALL_TOPICS

runner = CliRunner()


def leaf_commands() -> dict[str, Any]:
    """Every command a person runs, by its full name (`tokens create`), from the typer app."""
    found: dict[str, Any] = {}

    def walk(command: Any, context: typer.Context, path: str) -> None:
        if isinstance(command, TyperGroup):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                walk(sub, typer.Context(sub, info_name=name, parent=context), f"{path} {name}".strip())
        else:
            found[path] = (command, context)

    root = typer.main.get_command(app)
    walk(root, typer.Context(root, info_name="modelfleet"), "")
    return found


def test_every_command_that_prints_has_a_json_option() -> None:
    commands = leaf_commands()
    assert {"topics", "status", "audit", "verify", "ingest", "tokens create"} <= set(commands)
    without = [
        path
        for path, (command, context) in commands.items()
        if not any(isinstance(p, TyperOption) and "--json" in p.opts for p in command.get_params(context))
    ]
    assert without == []


def test_version_prints_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == ExitCode.OK
    assert result.stdout == f"modelfleet {metadata.version('modelfleet-cli')}\n"


def test_topics_in_a_pipe_shows_every_name_whole_one_row_per_line_whatever_columns_says() -> None:
    result = runner.invoke(
        app, ["topics"], env={"COLUMNS": "80", "FLEET_TOPIC_PREFIX": "a-long-staging-prefix."}
    )
    assert result.exit_code == ExitCode.OK, result.output
    namer = TopicNamer("a-long-staging-prefix.")
    for topic in ALL_TOPICS:
        [row] = [line for line in result.stdout.splitlines() if f" {namer.topic(topic)} " in line]
        assert topic.description in row
    assert result.stderr == ""


def test_topics_json_is_the_whole_of_stdout_with_the_same_keys_for_every_topic() -> None:
    result = runner.invoke(app, ["topics", "--json"], env={"FLEET_TOPIC_PREFIX": "staging."})
    assert result.exit_code == ExitCode.OK, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == len(ALL_TOPICS) + 1  # and the dead letters
    assert {tuple(row) for row in rows} == {("topic", "carries", "key", "retention", "what")}
    assert rows[0]["topic"] == TopicNamer("staging.").topic(ALL_TOPICS[0])


def test_two_outputs_at_once_are_a_usage_error() -> None:
    result = runner.invoke(app, ["topics", "--json", "--strimzi"])
    assert result.exit_code == ExitCode.USAGE
    assert "choose one output" in result.stderr
    assert result.stdout == ""


def test_a_bad_argument_is_refused_on_stderr_with_the_usage_status() -> None:
    result = runner.invoke(app, ["retrain", "Churn SE!", "--json"])
    assert result.exit_code == ExitCode.USAGE
    assert "is not a model name" in result.stderr
    assert result.stdout == ""


def test_a_published_request_in_json_says_which_event_went_out(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Event] = []
    monkeypatch.setattr(main, "_send", sent.append)
    result = runner.invoke(app, ["retire", "churn-se", "--reason", "product discontinued", "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    [event] = sent
    assert json.loads(result.stdout) == {
        "event_type": "model.spec.retired",
        "key": "churn-se",
        "event_id": str(event.event_id),
    }


def test_keygen_prints_only_the_public_line_on_stdout_so_it_can_be_appended_to_a_keys_file(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["keygen", str(tmp_path / "alice.pem"), "--approver", "alice"])
    assert result.exit_code == ExitCode.OK, result.output
    name, public_key = result.stdout.split()
    assert name == "alice"
    assert public_key == (tmp_path / "alice.pem.pub").read_text().split()[-1]
    assert "keep it secret" in result.stderr


class FakeIngest:
    """The store and ingest of one `modelfleet ingest`: the upload lands, the verdict is `answer`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answer: str | None) -> None:
        self.sent: list[Event] = []
        self.answer = answer
        monkeypatch.setattr(
            main.Uploader, "from_settings", lambda: lambda dataset, uri: f"file:///store/{dataset}/b.csv"
        )
        monkeypatch.setattr(main, "_send", self.sent.append)
        monkeypatch.setattr(main, "read_events", self.read_events)

    async def read_events(self, settings: object, topics: object) -> list[Event]:
        if self.answer is None:
            return []
        [batch] = self.sent
        return [
            DatasetVersionCreated(
                producer="ingest",
                causation_id=batch.event_id,
                correlation_id=batch.correlation_id,
                dataset="machines",
                version="ab" * 32,
                uri="file:///store/machines/ab.parquet",
                row_count=1234,
                columns=[ColumnInfo(name="rpm", dtype="double"), ColumnInfo(name="age", dtype="int64")],
                source_uri="file:///store/machines/b.csv",
            )
        ]


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    path = tmp_path / "b.csv"
    path.write_text("rpm,age\n1480,7\n")
    return path


def test_ingest_waits_with_progress_on_stderr_and_prints_only_the_verdict_on_stdout(
    monkeypatch: pytest.MonkeyPatch, batch: Path
) -> None:
    FakeIngest(monkeypatch, answer="created")
    result = runner.invoke(app, ["ingest", "machines", str(batch)])
    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith(f"version {'ab' * 6} of machines: 1234 rows, 2 columns")
    # Not a terminal: one line says what the CLI waits for (a spinner would be noise in a log).
    assert "waiting up to 2 min for ingest's verdict ..." in result.stderr.splitlines()
    assert "uploaded" in result.stderr


def test_ingest_json_carries_the_verdict_with_every_column(
    monkeypatch: pytest.MonkeyPatch, batch: Path
) -> None:
    fake = FakeIngest(monkeypatch, answer="created")
    result = runner.invoke(app, ["ingest", "machines", str(batch), "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "created"
    assert verdict["event_id"] == str(fake.sent[0].event_id)
    assert (verdict["rows"], verdict["columns"][0]) == (1234, {"name": "rpm", "dtype": "double"})


def test_ingest_without_a_verdict_in_time_exits_timed_out(
    monkeypatch: pytest.MonkeyPatch, batch: Path
) -> None:
    FakeIngest(monkeypatch, answer=None)
    result = runner.invoke(app, ["ingest", "machines", str(batch), "--timeout", "0.5", "--json"])
    assert result.exit_code == ExitCode.TIMED_OUT
    assert json.loads(result.stdout)["verdict"] is None
    assert "no verdict within 0.5 s" in result.stderr


def test_verify_reports_progress_per_version_on_stderr_and_the_results_on_stdout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    keys = tmp_path / "trusted.keys"
    keys.write_text("")
    monkeypatch.setenv("FLEET_TRUSTED_KEYS_FILE", str(keys))
    monkeypatch.setattr(main, "sign_in", lambda settings: None)
    monkeypatch.setattr(main, "model_lineage", lambda client, model: [SimpleNamespace(version="1")])
    failed = SimpleNamespace(tags={"modelfleet.verdict": "failed"}, source="")
    monkeypatch.setattr(
        mlflow, "MlflowClient", lambda tracking_uri: SimpleNamespace(get_model_version=lambda m, v: failed)
    )

    result = runner.invoke(app, ["verify", "churn-se"])
    assert result.exit_code == ExitCode.OK, result.output
    assert "churn-se v1 (1 of 1): downloading its files" in result.stderr
    assert result.stdout == "churn-se v1: failed its evaluation: unsigned, never servable\n"
    as_json = runner.invoke(app, ["verify", "churn-se", "--json"])
    assert json.loads(as_json.stdout) == [
        {
            "model": "churn-se",
            "version": "1",
            "result": "unsigned",
            "signing_key_id": None,
            "problem": "failed its evaluation: unsigned, never servable",
        }
    ]


def test_verify_of_a_version_the_registry_lacks_exits_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    keys = tmp_path / "trusted.keys"
    keys.write_text("")
    monkeypatch.setenv("FLEET_TRUSTED_KEYS_FILE", str(keys))
    monkeypatch.setattr(main, "sign_in", lambda settings: None)
    monkeypatch.setattr(main, "model_lineage", lambda client, model: [SimpleNamespace(version="1")])
    monkeypatch.setattr(mlflow, "MlflowClient", lambda tracking_uri: None)
    result = runner.invoke(app, ["verify", "churn-se", "7"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "churn-se has no version 7" in result.stderr


def test_the_usage_status_is_the_one_typer_gives_a_bad_option() -> None:
    assert runner.invoke(app, ["status", "--no-such-option"]).exit_code == ExitCode.USAGE


def test_in_a_terminal_progress_is_a_spinner_that_leaves_no_line_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from modelfleet_cli import output

    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=80))
    with output.Activity("verifying 2 version(s) of churn-se") as activity:
        activity.step("churn-se v1 (1 of 2): downloading its files")
    shown = screen.getvalue()
    assert "verifying 2 version(s) of churn-se" in shown  # the spinner's text, redrawn in place
    assert "verifying 2 version(s) of churn-se ...\n" not in shown
    assert "churn-se v1 (1 of 2): downloading its files\n" not in shown
