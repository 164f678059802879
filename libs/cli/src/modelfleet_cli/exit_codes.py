"""What `modelfleet`'s exit status means: defined here, once; `docs/cli.md` lists this table."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of a `modelfleet` command, each with what it means for the person or script."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "Done: the command did what it says (for `verify`, every version checked is verified)."
    FAILED = (
        1,
        (
            "The fleet said no: a manifest file refused, a batch rejected by ingest, a version whose files "
            "do not match their signature; or an unexpected error."
        ),
    )
    USAGE = 2, "A wrong argument or option: nothing was done (the message says which and why)."
    UNREACHABLE = (
        3,
        ("Kafka, MLflow or the dataset store could not be reached, or refused the CLI: nothing was done."),
    )
    NOT_FOUND = 4, "The model, version or approval request named does not exist (yet)."
    TIMED_OUT = 5, "A wait ended without an answer (`ingest`: no verdict within `--timeout`)."
