"""Write a service's AsyncAPI document, generated from its app, in a stable order.

faststream builds the document from the broker's subscribers and publishers; some of those are
kept in sets, so their order varies between runs. Sorting the keys makes the committed document
reproducible, so a test can tell when it is stale.

Each receive operation also names its consumer group (the Kafka operation binding's `groupId`,
absent where the service reads without one): what an operator needs to watch its lag, and what
the production overlay's KEDA triggers are generated from.

    python -m modelfleet_common.asyncapi modelfleet_trainer.app:app docs/asyncapi/trainer.yaml
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml


def render(target: str) -> str:
    """The AsyncAPI document of `module:attribute` as YAML with sorted keys."""
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    document = app.schema.to_specification().to_jsonable()
    _bind_consumer_groups(document, app.broker.subscribers)
    rendered: str = yaml.safe_dump(document, sort_keys=True, allow_unicode=True)
    return rendered


def _bind_consumer_groups(document: dict[str, Any], subscribers: Any) -> None:
    """Give every receive operation the `groupId` of the subscriber that reads its channel."""
    groups: dict[str, set[str]] = {}
    for subscriber in subscribers:
        if subscriber.group_id:
            for topic in subscriber.topic_names:
                groups.setdefault(topic, set()).add(subscriber.group_id)
    channels = document.get("channels", {})
    for operation in document.get("operations", {}).values():
        if operation.get("action") != "receive":
            continue
        channel = channels[operation["channel"]["$ref"].rsplit("/", 1)[-1]]
        found = groups.get(channel["address"], set())
        if len(found) > 1:
            raise ValueError(f"{channel['address']} is read by several consumer groups: {sorted(found)}")
        if found:
            operation["bindings"] = {
                "kafka": {"bindingVersion": "0.4.0", "groupId": {"type": "string", "enum": sorted(found)}}
            }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[2]).write_text(render(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
