"""The service table of docs/architecture.md, generated from the AsyncAPI documents.

    .venv/bin/python docs/service_table.py          # rewrite the table (run by `make asyncapi`)
    .venv/bin/python docs/service_table.py --check  # exit 1 when the committed table is stale

Each service's `docs/asyncapi/<service>.yaml` is generated from its app (`make asyncapi`): its
receive operations are the topics it consumes, its send operations the topics it publishes. The
table names them as the topic catalog does (`modelfleet_contracts.topics`), in catalog order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelfleet_common.naming import TopicNamer
from modelfleet_contracts.topics import ALL_TOPICS, SERVICES
from modelfleet_devkit.generated import generator_main, with_section

DOCS = Path(__file__).resolve().parent
ARCHITECTURE = DOCS / "architecture.md"
BEGIN = "<!-- generated from docs/asyncapi/*.yaml by docs/service_table.py (make asyncapi) -->"
END = "<!-- end of the generated service table -->"


def topics_of(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The catalog names of the topics a service's AsyncAPI document consumes and publishes."""
    by_address = {TopicNamer().topic(topic): topic.name for topic in ALL_TOPICS}
    order = {topic.name: index for index, topic in enumerate(ALL_TOPICS)}
    consumed: set[str] = set()
    published: set[str] = set()
    for name, operation in document.get("operations", {}).items():
        channel = document["channels"][operation["channel"]["$ref"].rpartition("/")[2]]
        address = channel["address"]
        if address not in by_address:
            raise ValueError(f"operation {name} uses {address}, which is not in the topic catalog")
        (consumed if operation["action"] == "receive" else published).add(by_address[address])
    return sorted(consumed, key=order.__getitem__), sorted(published, key=order.__getitem__)


def render(asyncapi_dir: Path = DOCS / "asyncapi") -> str:
    """The table, one row per service, between its markers."""
    rows = [BEGIN, "| service | consumes | publishes |", "|---|---|---|"]
    for service in SERVICES:
        path = asyncapi_dir / f"{service}.yaml"
        consumed, published = topics_of(yaml.safe_load(path.read_text()))
        rows.append(f"| {service} | {', '.join(consumed) or '-'} | {', '.join(published) or '-'} |")
    rows.append(END)
    return "\n".join(rows) + "\n"


def current(text: str) -> str:
    """The generated table as `text` (docs/architecture.md) holds it, markers included."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{ARCHITECTURE} has no generated service table ({BEGIN!r} ... {END!r})")
    return text[start : end + len(END)] + "\n"


def rendered() -> dict[Path, str]:
    """docs/architecture.md with its table as the AsyncAPI documents give it."""
    table = render().removeprefix(BEGIN + "\n").removesuffix(END + "\n")
    return {ARCHITECTURE: with_section(ARCHITECTURE.read_text(), BEGIN, END, table)}


if __name__ == "__main__":
    raise SystemExit(generator_main(rendered, description=__doc__.splitlines()[0], remake="make asyncapi"))
