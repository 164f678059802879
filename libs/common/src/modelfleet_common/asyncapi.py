"""Write a service's AsyncAPI document, generated from its app, in a stable order.

faststream builds the document from the broker's subscribers and publishers; some of those are
kept in sets, so their order varies between runs. Sorting the keys makes the committed document
reproducible, so a test can tell when it is stale.

    python -m modelfleet_common.asyncapi modelfleet_trainer.app:app docs/asyncapi/trainer.yaml
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml


def render(target: str) -> str:
    """The AsyncAPI document of `module:attribute` as YAML with sorted keys."""
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    document = app.schema.to_specification().to_jsonable()
    rendered: str = yaml.safe_dump(document, sort_keys=True, allow_unicode=True)
    return rendered


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[2]).write_text(render(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
