"""Which batches ingest may read: the rules, kept apart from the I/O that applies them (`store`).

A batch is read only when its URI lies under one of the allowed roots (by default the dataset
store, whose `uploads/` area `modelfleet ingest` copies files into). Local paths are compared after
resolving `..` and symlinks; other URIs by filesystem (`s3` and `s3a` are one) and normalized path,
and a URI with a `..` segment or a chain (`a::b`) is refused outright. Even under a root, only a
regular file of at most the size limit is read, never a pseudo-file of `/proc`, `/sys` or `/dev`.

Every refusal says what to do and quotes nothing but the URI it was given: no byte of the file.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

# Problem codes of a batch ingest refused to read (see `validation` for the others).
OUTSIDE_ALLOWED_ROOTS: Final = "outside_allowed_roots"
NOT_A_REGULAR_FILE: Final = "not_a_regular_file"
TOO_LARGE: Final = "too_large"

#: Pseudo-filesystems whose "files" are process memory, kernel state or devices: never read.
PSEUDO_ROOTS: Final = ("/proc", "/sys", "/dev")


class UnknownScheme(Exception):
    """No fsspec filesystem is installed for the URI's protocol."""


@dataclass(frozen=True)
class Refusal:
    """Why a batch is not read: a problem code and an actionable message (no file content)."""

    code: str
    message: str


@dataclass(frozen=True)
class Place:
    """A URI split into its fsspec filesystem class and a normalized absolute path on it."""

    filesystem: type[AbstractFileSystem]
    path: str

    @property
    def local(self) -> bool:
        return issubclass(self.filesystem, LocalFileSystem)

    def within(self, root: Place) -> bool:
        """Whether this place is `root` or below it (same filesystem, path under the root's)."""
        if self.filesystem is not root.filesystem:
            return False
        base = root.path.rstrip("/")
        return self.path == root.path or self.path.startswith(f"{base}/")


def place_of(uri: str) -> Place:
    """Where `uri` points, without touching any filesystem. Raises `UnknownScheme` for a protocol
    without an installed fsspec implementation, and `ValueError` for a chained URI or a path with
    `..` segments on a non-local filesystem (local paths are resolved by the caller instead)."""
    if "::" in uri:
        raise ValueError("chained URIs (`a::b`) are not read: name the file itself")
    protocol, _ = fsspec.core.split_protocol(uri)
    try:
        filesystem = fsspec.get_filesystem_class(protocol or "file")
    except (ImportError, ValueError) as error:
        raise UnknownScheme(str(error)) from error
    path = str(filesystem._strip_protocol(uri))
    if issubclass(filesystem, LocalFileSystem):
        return Place(filesystem, path)
    if ".." in path.split("/"):
        raise ValueError("a URI with `..` segments is not read: name the file by its own path")
    normalized = posixpath.normpath(path) if path else path
    return Place(filesystem, normalized.rstrip("/") or normalized)


def outside_roots(uri: str, roots: Sequence[str]) -> Refusal:
    """The refusal of a batch that is not under any allowed root."""
    return Refusal(
        OUTSIDE_ALLOWED_ROOTS,
        f"{uri} is outside the places ingest reads batches from (FLEET_INGEST_ALLOWED_ROOTS: "
        f"{', '.join(roots)}; `..` and symlinks are resolved first): submit it with "
        "`modelfleet ingest DATASET FILE`, which uploads it to the dataset store, or have the "
        "operator add its root to FLEET_INGEST_ALLOWED_ROOTS",
    )


def pseudo_file(uri: str, resolved: str) -> Refusal | None:
    """The refusal of a path in `/proc`, `/sys` or `/dev`, whatever the roots say."""
    if any(resolved == root or resolved.startswith(f"{root}/") for root in PSEUDO_ROOTS):
        return Refusal(
            NOT_A_REGULAR_FILE,
            f"{uri} is in {', '.join(PSEUDO_ROOTS)} (process, kernel or device state), never a batch: "
            "submit a .csv or .parquet file",
        )
    return None


def unreadable_kind(uri: str, mode: int, size: int, max_bytes: int) -> Refusal | None:
    """The refusal of a local file by what `stat` says: not a regular file, or too large."""
    if not stat.S_ISREG(mode):
        return Refusal(
            NOT_A_REGULAR_FILE,
            f"{uri} is {_kind(mode)}, not a regular file: submit a .csv or .parquet file",
        )
    return too_large(uri, size, max_bytes)


def not_a_file(uri: str, kind: str) -> Refusal:
    """The refusal of a non-local object that is not a file (a directory, say)."""
    return Refusal(NOT_A_REGULAR_FILE, f"{uri} is a {kind}, not a file: submit one .csv or .parquet file")


def too_large(uri: str, size: int, max_bytes: int) -> Refusal | None:
    """The refusal of a batch above the size limit (None when it fits)."""
    if size <= max_bytes:
        return None
    return Refusal(
        TOO_LARGE,
        f"{uri} holds {size} bytes, more than the {max_bytes} bytes ingest reads in one batch "
        "(FLEET_INGEST_MAX_BYTES): split it into several `append` batches",
    )


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")
