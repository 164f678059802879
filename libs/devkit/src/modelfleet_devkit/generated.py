"""Files made from the code: write them, or check that the committed ones are current.

Every generator of the repository (the production overlay's KEDA objects, the alert rules, the
dashboards, the metrics table...) renders its files as text and hands them here, so `--check`
(run by the tests) and the rewrite (run by `make`) behave the same everywhere: a file whose text
already matches is left alone, a stale one is named with the command that remakes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


def stale_files(files: Mapping[Path, str]) -> list[Path]:
    """The files whose committed text differs from `files` (or that do not exist)."""
    return [path for path, text in files.items() if not path.is_file() or path.read_text() != text]


def write_files(files: Mapping[Path, str]) -> list[Path]:
    """Write the stale files of `files`; the ones written."""
    written = stale_files(files)
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
    return written


def with_section(document: str, begin: str, end: str, generated: str) -> str:
    """`document` with the text between the `begin` and `end` marker lines replaced by `generated`."""
    head, found_begin, rest = document.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found_begin or not found_end:
        raise ValueError(f"the document lacks the markers {begin!r} ... {end!r} of its generated section")
    return f"{head}{begin}\n{generated.strip(chr(10))}\n{end}{tail}"


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def generator_main(
    render: Callable[[], Mapping[Path, str]], *, description: str, remake: str, argv: list[str] | None = None
) -> int:
    """A generator's command line: write what `render` makes, or with `--check` exit 1 if stale.

    `remake` is the command that regenerates the files (`make dashboards`, say), named when stale.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a committed file is stale"
    )
    check = parser.parse_args(argv).check
    files = render()
    if check:
        stale = stale_files(files)
        if stale:
            print(f"stale: {', '.join(map(_shown, stale))}: run `{remake}` and commit", file=sys.stderr)
            return 1
        return 0
    written = write_files(files)
    for path in files:
        print(f"{'wrote' if path in written else 'current'} {_shown(path)}")
    return 0
