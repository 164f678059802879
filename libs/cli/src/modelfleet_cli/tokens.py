"""`modelfleet tokens`: bearer tokens for serving's /predict and /feedback.

A token is `mfs_` and 43 random URL-safe characters (256 bits). Serving's tokens file
(`FLEET_SERVING_TOKENS_FILE`) stores only its SHA-256, with its scopes and optional model prefix:

    tokens:
      - name: churn-app
        sha256: 9f86d08...
        scopes: [predict, feedback]
        model_prefix: churn-

`modelfleet tokens create` prints a new token once (give it to the client; it is never stored) and
its entry; with `--file` the entry is appended to that file (created 0600). In Kubernetes the file is
the `tokens.yaml` key of a Secret mounted into serving (docs/rollout.md, "Serving's API").
The local fleet makes its own file and a token for the CLI and the demo (`local_serving_token`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from modelfleet_common.private_files import write_private

from .output import JsonFlag, emit_json

SCOPES = ("predict", "feedback")
TOKEN_PREFIX = "mfs_"

app = typer.Typer(help="Bearer tokens for serving's /predict and /feedback.", no_args_is_help=True)


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token: what serving's tokens file stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_entry(name: str, token: str, scopes: list[str], model_prefix: str = "") -> dict[str, Any]:
    """The tokens-file entry of `token`; refuses unknown scopes."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    entry: dict[str, Any] = {"name": name, "sha256": token_hash(token), "scopes": list(dict.fromkeys(scopes))}
    if model_prefix:
        entry["model_prefix"] = model_prefix
    return entry


def add_entry(path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` to a tokens file (created 0600); refuses a name the file already lists."""
    document: dict[str, Any] = {"tokens": []}
    if path.exists():
        document = yaml.safe_load(path.read_text()) or {"tokens": []}
    entries = document.setdefault("tokens", [])
    if any(existing.get("name") == entry["name"] for existing in entries):
        raise ValueError(f"{path} already lists a token named {entry['name']!r}; pick another --name")
    entries.append(entry)
    write_private(path, HEADER + yaml.safe_dump(document, sort_keys=False))


HEADER = """\
# Serving's bearer tokens (FLEET_SERVING_TOKENS_FILE): SHA-256 of each token, never the token.
# scopes: predict (POST /predict), feedback (POST /feedback); model_prefix limits the models.
# `modelfleet tokens create --file THIS_FILE` adds one; serving re-reads the file when it changes.
"""

#: The local fleet's token for the CLI and the demo: predict and feedback on every model.
LOCAL_TOKEN_NAME = "local-cli"


def local_tokens_file(home: Path) -> Path:
    return home / "serving" / "tokens.yaml"


def local_serving_token(home: Path) -> tuple[Path, str]:
    """The local fleet's tokens file and the CLI's token in it, both made once per local home (0600)."""
    tokens_file = local_tokens_file(home)
    token_file = home / "serving" / f"{LOCAL_TOKEN_NAME}.token"
    if token_file.exists() and tokens_file.exists():
        token = token_file.read_text().strip()
        listed = yaml.safe_load(tokens_file.read_text()) or {}
        if any(e.get("sha256") == token_hash(token) for e in listed.get("tokens") or []):
            return tokens_file, token
    token = new_token()
    entry = token_entry(LOCAL_TOKEN_NAME, token, list(SCOPES))
    document = {"tokens": [entry]}
    if tokens_file.exists():
        kept = (yaml.safe_load(tokens_file.read_text()) or {}).get("tokens") or []
        document["tokens"] = [e for e in kept if e.get("name") != LOCAL_TOKEN_NAME] + [entry]
    write_private(token_file, token + "\n")
    write_private(tokens_file, HEADER + yaml.safe_dump(document, sort_keys=False))
    return tokens_file, token


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who will hold the token (shown in serving's logs).")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="predict and/or feedback; repeat for both. Default: predict."),
    ] = None,
    model_prefix: Annotated[
        str, typer.Option(help="Only models whose name starts with this (e.g. churn-); default all.")
    ] = "",
    file: Annotated[
        Path | None, typer.Option(help="Append the entry to this tokens file (created 0600).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a token: prints it once, and its tokens-file entry (or appends the entry to --file)."""
    if not _NAME.match(name):
        raise typer.BadParameter("letters, digits and . _ : @ - only", param_hint="--name")
    token = new_token()
    try:
        entry = token_entry(name, token, scope or ["predict"], model_prefix)
        if file is not None:
            add_entry(file, entry)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    if as_json:
        emit_json({"name": name, "token": token, "entry": entry, "file": str(file) if file else None})
        return
    typer.echo(f"token (shown once, give it to {name}; send it as 'Authorization: Bearer <token>'):")
    typer.echo(f"  {token}")
    if file is not None:
        typer.echo(f"entry added to {file}")
    else:
        typer.echo("entry for serving's tokens file (under `tokens:`):")
        typer.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
