"""JSON Schema snapshots of the contracts, and the check that a change stays compatible.

Within one major version a contract may only grow: new optional fields, new enum values, looser
descriptions. Removing or renaming a field, changing its type, or adding a required field breaks
consumers that still run the old code, so it needs a new contract version and topic instead.

    python -m modelfleet_contracts.snapshots write   # refresh the committed snapshots
    python -m modelfleet_contracts.snapshots check   # exit 1 on a breaking change or a stale snapshot
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .envelope import Event
from .topics import ALL_EVENTS

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "schemas"

# Keys that document a schema without constraining what validates against it.
_DESCRIPTIVE_KEYS = frozenset({"description", "title", "default", "examples"})


def schema_of(contract: type[Event]) -> dict[str, Any]:
    """The JSON Schema of a contract, as validated on input."""
    return contract.model_json_schema(mode="validation")


def snapshot_path(contract: type[Event], root: Path = SNAPSHOT_DIR) -> Path:
    """Where the committed snapshot of a contract lives: `schemas/v<N>/<event_type>.json`."""
    event_type = contract.model_fields["event_type"].default
    version = contract.model_fields["schema_version"].default
    return root / f"v{version}" / f"{event_type}.json"


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    resolved: dict[str, Any] = root.get("$defs", {})[name]
    return resolved


def breaking_changes(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    old_root: dict[str, Any] | None = None,
    new_root: dict[str, Any] | None = None,
    path: str = "$",
) -> list[str]:
    """Every way `new` would reject or misread data that `old` described, as readable lines."""
    old_root = old if old_root is None else old_root
    new_root = new if new_root is None else new_root
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems: list[str] = []

    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: field removed or renamed")
            continue
        problems += breaking_changes(
            old_prop, new_props[name], old_root=old_root, new_root=new_root, path=f"{path}.{name}"
        )
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{path}.{name}: field became required")
    if old.get("additionalProperties") is not False and new.get("additionalProperties") is False:
        problems.append(f"{path}: no longer accepts additional properties")

    if "enum" in old and set(old["enum"]) - set(new.get("enum", old["enum"])):
        removed = sorted(set(old["enum"]) - set(new["enum"]))
        problems.append(f"{path}: enum values removed {removed}")

    for key in ("items", "additionalProperties"):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            problems += breaking_changes(
                old[key], new[key], old_root=old_root, new_root=new_root, path=f"{path}[]"
            )
    for key in ("anyOf", "oneOf"):
        if key in old or key in new:
            problems += _union_changes(
                old.get(key, []), new.get(key, []), old_root, new_root, path=path, key=key
            )

    for key in (
        "type",
        "const",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
    ):
        if key in old and old.get(key) != new.get(key):
            problems.append(f"{path}: `{key}` changed from {old[key]!r} to {new.get(key)!r}")
        elif key in new and key not in old and key not in ("format",):
            problems.append(f"{path}: new constraint `{key}`={new[key]!r}")
    return problems


def _union_changes(
    old_variants: list[dict[str, Any]],
    new_variants: list[dict[str, Any]],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    *,
    path: str,
    key: str,
) -> list[str]:
    """Old union variants that no new variant still accepts.

    An object variant is kept when some new object variant reads it without a breaking change, so
    a nested model may gain optional fields as the top level may; other variants must stay equal.
    """
    resolved_new = [_resolve(v, new_root) for v in new_variants]
    new_shapes = [_shape(v, new_root) for v in resolved_new]
    new_objects = [v for v in resolved_new if "properties" in v]
    problems: list[str] = []
    missing: list[str] = []
    for variant in (_resolve(v, old_root) for v in old_variants):
        if "properties" not in variant:
            if _shape(variant, old_root) not in new_shapes:
                missing.append(_shape(variant, old_root))
            continue
        attempts = [
            breaking_changes(variant, candidate, old_root=old_root, new_root=new_root, path=path)
            for candidate in new_objects
        ]
        if not attempts:
            missing.append(_shape(variant, old_root))
        elif all(attempts):
            # The closest new variant explains best what changed.
            closest: list[str] = min(attempts, key=len)
            problems += closest
    if missing:
        problems.append(f"{path}: {key} lost the variant(s) {missing}")
    return problems


def _shape(node: dict[str, Any], root: dict[str, Any]) -> str:
    """A comparable fingerprint of a union variant: its type, or the fields of an object."""
    if "properties" in node:
        return "object{" + ",".join(sorted(node["properties"])) + "}"
    kept = {k: v for k, v in node.items() if k not in _DESCRIPTIVE_KEYS}
    return json.dumps(kept, sort_keys=True)


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def check(root: Path = SNAPSHOT_DIR) -> list[str]:
    """Problems of the current contracts against the committed snapshots (empty when all is well)."""
    problems: list[str] = []
    for contract in ALL_EVENTS:
        path = snapshot_path(contract, root)
        current = schema_of(contract)
        if not path.exists():
            problems.append(f"{contract.__name__}: no snapshot at {path}; run `make schemas`")
            continue
        committed = json.loads(path.read_text())
        breaking = breaking_changes(committed, current)
        problems += [f"{contract.__name__} breaks v1 at {line}" for line in breaking]
        if not breaking and _render(current) != path.read_text():
            problems.append(f"{contract.__name__}: compatible change; refresh with `make schemas`")
    return problems


def write(root: Path = SNAPSHOT_DIR) -> list[Path]:
    """Write the snapshot of every contract; refuses if any change is breaking."""
    problems = [p for p in check(root) if " breaks " in p]
    if problems:
        raise SystemExit("refusing to overwrite snapshots:\n" + "\n".join(problems))
    written = []
    for contract in ALL_EVENTS:
        path = snapshot_path(contract, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(schema_of(contract)))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "write":
        for path in write():
            print(path)
        return 0
    problems = check()
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
