"""Who may call /predict and /feedback: bearer tokens with scopes, from a file of their hashes.

The tokens file (`FLEET_SERVING_TOKENS_FILE`) is YAML, one entry per token; it holds only the
SHA-256 of each token, so reading it (a backup, a `kubectl get secret`) gives no way in:

    tokens:
      - name: churn-app                 # who holds it: shown in logs, never the token
        sha256: 9f86d081884c7d65...     # hex SHA-256 of the token's UTF-8 bytes
        scopes: [predict, feedback]     # predict: POST /predict; feedback: POST /feedback
        model_prefix: churn-            # optional: only models whose name starts with it

`modelfleet tokens create` makes a token and prints its entry. The file fits a Kubernetes Secret
mounted as a file (key `tokens.yaml`); it is re-read when it changes (at most every few seconds),
so a token is added or revoked without a restart. A file that no longer parses keeps the entries
read before, with an error in the log: a bad edit must not lock every client out.

A presented token is hashed and compared with every entry in constant time (`hmac.compare_digest`,
no early exit), so the answer time does not tell how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

logger = logging.getLogger("modelfleet.serving")

Scope = Literal["predict", "feedback"]
SCOPES: tuple[Scope, ...] = ("predict", "feedback")
REALM = "modelfleet-serving"


class TokenEntry(BaseModel):
    """One accepted token, by its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="Who holds the token.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the token.")
    scopes: tuple[Scope, ...] = Field(min_length=1, description="What the token may call.")
    model_prefix: str = Field(default="", description="Only models whose name starts with it; '' = all.")


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)


class TokensFileError(ValueError):
    """The tokens file is missing, unreadable or not in the documented format."""


def token_hash(token: str) -> str:
    """The hex SHA-256 the tokens file stores for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: Path) -> list[TokenEntry]:
    """The entries of a tokens file; `TokensFileError` names what is wrong with it."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise TokensFileError(f"cannot read the serving tokens file {path}: {error}") from error
    try:
        return TokensFile.model_validate(document).tokens
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise TokensFileError(f"the serving tokens file {path} is not valid: {problems}") from error


@dataclass(frozen=True)
class Grant:
    """What the caller of a request may do."""

    name: str
    scopes: frozenset[str]
    model_prefix: str = ""

    def allows_model(self, model: str) -> bool:
        return model.startswith(self.model_prefix)


#: The grant of every request when auth is disabled (FLEET_SERVING_AUTH=disabled).
ANONYMOUS = Grant(name="anonymous (auth disabled)", scopes=frozenset(SCOPES))


class Denied(Exception):
    """401 (no or unknown token) or 403 (the token may not do this); `challenge` is WWW-Authenticate."""

    def __init__(self, status: int, message: str, challenge: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


class Authenticator:
    """Maps an `Authorization` header to a `Grant`, or raises `Denied`."""

    def grant(self, authorization: str | None, scope: Scope) -> Grant:
        raise NotImplementedError


class OpenDoor(Authenticator):
    """Auth disabled: every request is anonymous and may do everything. Unsafe."""

    def grant(self, authorization: str | None, scope: Scope) -> Grant:
        return ANONYMOUS


class TokenAuthenticator(Authenticator):
    """Bearer tokens checked against the hashes of a tokens file, re-read when it changes."""

    def __init__(
        self,
        path: Path,
        *,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._entries = read_tokens_file(path)  # at startup a bad file stops serving
        self._stamp = _stamp(path)
        self._checked_at = clock()

    @property
    def entries(self) -> list[TokenEntry]:
        self._maybe_reload()
        return self._entries

    def grant(self, authorization: str | None, scope: Scope) -> Grant:
        if not authorization:
            raise Denied(401, "a bearer token is required (Authorization: Bearer <token>)", _challenge())
        match = _BEARER.match(authorization)
        if match is None:
            raise Denied(
                401, "the Authorization header must be 'Bearer <token>'", _challenge("invalid_request")
            )
        entry = self._lookup(match.group(1))
        if entry is None:
            raise Denied(401, "the bearer token is not valid", _challenge("invalid_token"))
        if scope not in entry.scopes:
            raise Denied(
                403,
                f"the token {entry.name!r} lacks the {scope!r} scope (it has {', '.join(entry.scopes)})",
                _challenge("insufficient_scope", scope),
            )
        return Grant(name=entry.name, scopes=frozenset(entry.scopes), model_prefix=entry.model_prefix)

    def _lookup(self, token: str) -> TokenEntry | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: TokenEntry | None = None
        for entry in self.entries:
            # Every entry is compared, a match does not end the loop: constant time in the token.
            if hmac.compare_digest(bytes.fromhex(entry.sha256), presented):
                found = entry
        return found

    def _maybe_reload(self) -> None:
        now = self.clock()
        if now - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            if now - self._checked_at < self.recheck_seconds:
                return
            self._checked_at = now
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            try:
                entries = read_tokens_file(self.path)
            except TokensFileError as error:
                logger.error("serving tokens file not reloaded: %s; the previous tokens stay valid", error)
                return
            self._entries, self._stamp = entries, stamp
            logger.info("serving tokens file reloaded", extra={"tokens": len(entries)})


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _challenge(error: str | None = None, scope: str | None = None) -> str:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def authenticator_from_settings(auth: str, tokens_file: Path | None) -> Authenticator:
    """The authenticator serving runs with; refuses to start without tokens unless auth is disabled."""
    if auth == "disabled":
        logger.warning(
            "FLEET_SERVING_AUTH=disabled: anyone who reaches serving can predict and send labels "
            "that steer canaries and become training rows; never use this outside a closed test network"
        )
        return OpenDoor()
    if tokens_file is None:
        raise TokensFileError(
            "serving requires bearer tokens: set FLEET_SERVING_TOKENS_FILE to a tokens file "
            "(`modelfleet tokens create` makes one entry), or FLEET_SERVING_AUTH=disabled (unsafe)"
        )
    return TokenAuthenticator(tokens_file)
