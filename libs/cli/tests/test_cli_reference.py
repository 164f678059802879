"""docs/cli.md is generated from the typer app (`make cli-docs`) and kept current by this test."""

from __future__ import annotations

from pathlib import Path

from modelfleet_cli.exit_codes import ExitCode
from modelfleet_cli.reference import render

CLI_MD = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_docs_cli_md_is_what_the_typer_app_generates() -> None:
    assert CLI_MD.read_text() == render(), "docs/cli.md is stale: run `make cli-docs`"


def test_the_reference_lists_every_command_with_its_options_and_every_exit_status() -> None:
    page = render()
    for command in ("topics", "status", "audit", "verify", "ingest", "tokens create"):
        assert f"## `modelfleet {command}`" in page
    assert "- `--json`: Print the result as JSON on stdout" in page
    assert "- `--wait / --no-wait`: Wait for ingest's verdict and print it. [default: wait]" in page
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` | {code.meaning} |" in page
