"""`modelfleet tokens`: a token is printed once, only its hash is stored, in a file only its owner reads."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import yaml
from typer.testing import CliRunner

from modelfleet_cli.main import app
from modelfleet_cli.tokens import local_serving_token


def test_create_prints_the_token_once_and_appends_only_its_hash_to_a_private_file(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yaml"
    args = ["tokens", "create", "--name", "churn-app", "--scope", "predict", "--scope", "feedback"]
    result = CliRunner().invoke(app, [*args, "--model-prefix", "churn-", "--file", str(tokens_file)])
    assert result.exit_code == 0, result.output
    token = next(line.strip() for line in result.output.splitlines() if line.strip().startswith("mfs_"))
    [entry] = yaml.safe_load(tokens_file.read_text())["tokens"]
    assert entry == {
        "name": "churn-app",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "scopes": ["predict", "feedback"],
        "model_prefix": "churn-",
    }
    assert token not in tokens_file.read_text()
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600


def test_create_refuses_an_unknown_scope_and_a_name_already_listed(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yaml"
    runner = CliRunner()
    assert runner.invoke(app, ["tokens", "create", "--name", "a", "--scope", "admin"]).exit_code != 0
    assert runner.invoke(app, ["tokens", "create", "--name", "a", "--file", str(tokens_file)]).exit_code == 0
    again = runner.invoke(app, ["tokens", "create", "--name", "a", "--file", str(tokens_file)])
    assert again.exit_code != 0
    assert len(yaml.safe_load(tokens_file.read_text())["tokens"]) == 1


def test_the_local_fleet_makes_its_cli_token_once_and_keeps_it(tmp_path: Path) -> None:
    tokens_file, token = local_serving_token(tmp_path)
    assert local_serving_token(tmp_path) == (tokens_file, token)
    [entry] = yaml.safe_load(tokens_file.read_text())["tokens"]
    assert entry["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert entry["scopes"] == ["predict", "feedback"]
    for path in (tokens_file, tokens_file.with_name("local-cli.token")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
