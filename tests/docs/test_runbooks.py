"""Every alert has a runbook, and a runbook only tells people to run commands the CLI has.

docs/runbooks/<AlertName>.md says what the alert means, what to look at first, which `modelfleet`
command acts and when to escalate; each `modelfleet ...` a runbook names in code is checked against
the CLI itself (the typer app behind `modelfleet`): the command, its subcommand, every `--option`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from modelfleet_cli.main import app

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
RULES = REPO / "deploy" / "prometheus" / "fleet-rules.yaml"
SECTIONS = ["## What it means", "## Look first", "## Act", "## Escalate"]
#: A `modelfleet ...` in inline code (which may wrap onto the next line) or on a line of a code block.
COMMAND = re.compile(r"`(modelfleet\s[^`]+)`|^\s*(modelfleet\s.+)$", re.MULTILINE)


def _alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def _runbooks() -> dict[str, str]:
    return {path.stem: path.read_text() for path in RUNBOOKS.glob("*.md") if path.name != "README.md"}


def _cli() -> Any:
    """The click command behind `modelfleet` (typer's own copy of click: a group has `commands`)."""
    return typer.main.get_command(app)


def _problems(line: str, cli: Any) -> list[str]:
    """What in `modelfleet ...` the CLI does not have: an unknown command, subcommand or option."""
    words = line.split()[1:]
    command = cli
    while getattr(command, "commands", None) is not None:
        if not words or words[0] not in command.commands:
            group = command.name or "modelfleet"
            return [f"{line!r}: no command {words[0] if words else '(none)'!r} in `{group}`"]
        command = command.commands[words.pop(0)]
    known = {opt for param in command.params for opt in param.opts}
    return [
        f"{line!r}: `{command.name}` has no option {option}"
        for option in (word.split("=")[0] for word in words if word.startswith("--"))
        if option not in known
    ]


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    assert set(_runbooks()) == _alert_names()


def test_the_index_lists_every_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    for name in _runbooks():
        assert f"[{name}.md]({name}.md)" in index


@pytest.mark.parametrize("name", sorted(_runbooks()))
def test_a_runbook_says_what_the_alert_means_what_to_look_at_what_acts_and_when_to_escalate(
    name: str,
) -> None:
    text = _runbooks()[name]
    assert text.startswith(f"# {name}\n")
    positions = [text.find(section) for section in SECTIONS]
    missing = [section for section, position in zip(SECTIONS, positions, strict=True) if position < 0]
    assert missing == [], f"{name}.md lacks {missing}"
    assert positions == sorted(positions), f"{name}.md: sections out of order"
    assert COMMAND.search(text), f"{name}.md names no modelfleet command"


@pytest.mark.parametrize("name", sorted(_runbooks()))
def test_every_modelfleet_command_a_runbook_names_exists_with_its_options(name: str) -> None:
    cli = _cli()
    named = [" ".join((inline or block).split()) for inline, block in COMMAND.findall(_runbooks()[name])]
    assert named
    problems = [problem for line in named for problem in _problems(line, cli)]
    assert problems == []


def test_the_command_check_catches_a_command_or_option_the_cli_lacks() -> None:
    cli = _cli()
    assert _problems("modelfleet rollback MODEL --reason why --to 3", cli) == []
    assert _problems("modelfleet restart MODEL", cli) == [
        "'modelfleet restart MODEL': no command 'restart' in `modelfleet`"
    ]
    assert _problems("modelfleet rollback MODEL --force", cli) == [
        "'modelfleet rollback MODEL --force': `rollback` has no option --force"
    ]
