"""How `modelfleet` speaks, for every command: results on stdout, everything else on stderr.

- `out`: results (tables, verdicts). In a terminal as wide as the terminal; in a pipe or a file as
  wide as the lines need (`PIPE_WIDTH`), so `modelfleet topics | cat` or `| grep` sees whole names
  and one table row per line, whatever `COLUMNS` says.
- `err`: errors, warnings and progress (`fail`, `warn`, `Activity`); never mixed into results.
- `--json` (`JsonFlag`): the result as JSON on stdout (`emit_json`), nothing else there; errors still
  go to stderr with their exit status (`exit_codes.ExitCode`). Keys are fixed by each command, numbers
  keep full precision (rounding for people is `modelfleet_common.humanize`, for text only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer
from rich.console import Console, ConsoleDimensions
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from .exit_codes import ExitCode

#: Width of a console that is not a terminal: wider than any line the CLI prints, so nothing folds.
PIPE_WIDTH = 10_000


class _Console(Console):
    """A rich Console as wide as a terminal when it writes to one, else `PIPE_WIDTH` (rich's own
    default, 80 columns or `COLUMNS`, would cut tables in a pipe)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


#: Results.
out: Console = _Console()
#: Errors, warnings and progress.
err: Console = _Console(stderr=True)

#: The `--json` option of every command that prints a result.
JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout (messages and errors stay on stderr)."),
]


def _plain(value: Any) -> Any:
    """JSON for the types results hold: times as ISO 8601, models and dataclasses as objects."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if callable(getattr(value, "model_dump", None)):  # a contract (pydantic model)
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Path | UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def to_json(data: Any) -> str:
    """`data` as the CLI prints it: indented, UTF-8 as is, keys in the order the command set them."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_plain)


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout: the whole of stdout in `--json` mode."""
    typer.echo(to_json(data))


def fail(message: str, detail: object = "", *, hint: str = "", code: ExitCode = ExitCode.FAILED) -> NoReturn:
    """Say what went wrong on stderr (and what to try), then exit with `code`."""
    err.print(Text.assemble((message, "red"), f": {detail}" if str(detail) else ""))
    if hint:
        err.print(Text(hint))
    raise typer.Exit(int(code))


def warn(message: str) -> None:
    """A warning on stderr: something a person should know that does not stop the command."""
    err.print(Text.assemble(("warning: ", "yellow"), message))


class Activity:
    """Progress of a long wait on stderr: a spinner whose text follows the wait when stderr is a
    terminal; otherwise one line when it starts and one per `step`, none for `update`."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._spinner = Spinner("dots", text=message)
        self._live: Live | None = None

    def __enter__(self) -> Activity:
        if err.is_terminal:
            # stdout stays stdout (rich's status would route it through stderr while it spins).
            self._live = Live(
                self._spinner, console=err, transient=True, redirect_stdout=False, redirect_stderr=False
            )
            self._live.start()
        else:
            err.print(Text(f"{self._message} ..."))
        return self

    def update(self, text: str) -> None:
        """The spinner's text (a terminal only: in a log a ticking counter is noise)."""
        self._spinner.update(text=f"{self._message}: {text}")

    def step(self, text: str) -> None:
        """A milestone: the spinner's text in a terminal, a line otherwise."""
        if self._live is None:
            err.print(Text(text))
        self.update(text)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
