"""The fleet's metric catalogue, as the services' metric objects declare it, and checks of queries.

The catalogue is the metrics table of `docs/monitoring.md`: `docs/generate_metrics.py` (`make
metrics-doc`) writes it from every service's registry, built by importing the service's app in its
own environment (`modelfleet_common.metric_catalogue`), and `tests/docs/test_metrics_doc.py` fails
while it differs from the code. Reading that table here (instead of importing seven services in
two environments on every run) gives the dashboards' generator and its test the exact names,
types and labels the code exports, faststream's own metrics included, from one place.

Names are as scraped: a counter's family ends in `_total`; a histogram's series add `_bucket`
(with the label `le`), `_sum` and `_count`. `tests/integration/test_metrics_exported.py` checks
the other half: that a running fleet exports every metric the dashboards read.
"""

from __future__ import annotations

import re
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
METRICS_DOC = REPO / "docs" / "monitoring.md"
#: Where the table starts and ends: the markers its generator writes.
_GENERATOR = runpy.run_path(str(REPO / "docs" / "generate_metrics.py"))
BEGIN: str = _GENERATOR["BEGIN"]
END: str = _GENERATOR["END"]
#: A row of the table: | `name` | type | `label`, `label` (or —) | services | meaning |
ROW = re.compile(
    r"^\| `(?P<name>fleet_[a-z0-9_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \| (?P<services>[^|]+) \|"
)
#: A metric name as it appears in a PromQL expression, with its label matchers if any.
SELECTOR = re.compile(r"\b(?P<name>fleet_[a-z0-9_]+)(?:\{(?P<matchers>[^}]*)\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\((?P<labels>[^)]*)\)")
MATCHER_LABEL = re.compile(r"(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
#: Series a family of each type exports besides its own name.
SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
#: Labels Prometheus puts on every scraped series (the target's), and a histogram bucket's bound.
TARGET_LABELS = frozenset({"job", "instance"})
BUCKET_LABEL = "le"
#: A query variable's `label_values(<selector>, <label>)`.
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


class CatalogueError(Exception):
    """The catalogue cannot be read, or a dashboard holds a query this module cannot check."""


@dataclass(frozen=True)
class Metric:
    """One metric family as scraped: its name, type (counter, gauge, ...), labels and exporters."""

    name: str
    type: str
    labels: frozenset[str]
    services: str


def declared_metrics(doc: Path = METRICS_DOC) -> dict[str, Metric]:
    """Every `fleet_` metric family the services declare, by name (the generated table's rows)."""
    _, begin, rest = doc.read_text().partition(BEGIN)
    table, end, _ = rest.partition(END)
    if not begin or not end:
        raise CatalogueError(f"{doc} has no generated metrics table between {BEGIN!r} and {END!r}")
    metrics: dict[str, Metric] = {}
    for line in table.strip().splitlines()[2:]:  # after the header and its rule
        row = ROW.match(line)
        if row is None:
            raise CatalogueError(f"{doc}: not a row of the metrics table: {line!r}")
        labels = frozenset(re.findall(r"`(\w+)`", row["labels"]))
        metrics[row["name"]] = Metric(row["name"], row["type"], labels, row["services"].strip())
    if not metrics:
        raise CatalogueError(f"{doc}: the generated metrics table is empty (run `make metrics-doc`)")
    return metrics


def _family(series: str, catalogue: dict[str, Metric]) -> Metric | None:
    if series in catalogue:
        return catalogue[series]
    for metric_type, suffixes in SERIES_SUFFIXES.items():
        for suffix in suffixes:
            family = catalogue.get(series.removesuffix(suffix))
            if series.endswith(suffix) and family is not None and family.type == metric_type:
                return family
    return None


def unknown_metrics(expression: str, catalogue: dict[str, Metric]) -> set[str]:
    """The `fleet_` series an expression reads that no service exports."""
    return {m["name"] for m in SELECTOR.finditer(expression) if _family(m["name"], catalogue) is None}


def unknown_labels(expression: str, catalogue: dict[str, Metric]) -> set[str]:
    """Labels an expression matches on or groups by that none of the metrics it reads has.

    A selector's matchers must be labels of its own metric; `by (...)`/`without (...)` labels
    must be labels of some metric the expression reads. Target labels (`job`, `instance`) are
    on every series, `le` on a histogram's buckets.
    """
    unknown: set[str] = set()
    readable = set(TARGET_LABELS)
    for selector in SELECTOR.finditer(expression):
        family = _family(selector["name"], catalogue)
        if family is None:
            continue
        own = (
            family.labels
            | TARGET_LABELS
            | ({BUCKET_LABEL} if selector["name"].endswith("_bucket") else set())
        )
        readable |= own
        matchers = re.sub(r'"(?:[^"\\]|\\.)*"', '""', selector["matchers"] or "")  # values aside
        matched = {m["label"] for m in MATCHER_LABEL.finditer(matchers)}
        unknown |= {f"{selector['name']}{{{label}}}" for label in matched - own}
    for grouping in GROUPING.finditer(expression):
        grouped = {label.strip() for label in grouping["labels"].split(",") if label.strip()}
        unknown |= grouped - readable
    return unknown


def problems(expression: str, catalogue: dict[str, Metric]) -> list[str]:
    """What is wrong with an expression against the catalogue, in words (empty: nothing)."""
    found = []
    if metrics := unknown_metrics(expression, catalogue):
        found.append(f"metrics no service exports: {', '.join(sorted(metrics))}")
    if labels := unknown_labels(expression, catalogue):
        found.append(f"labels the metrics do not have: {', '.join(sorted(labels))}")
    return found


def dashboard_expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' queries and its variables' queries.

    A variable's `label_values(selector, label)` is read as `group by (label) (selector)`: the
    same series and label, as PromQL a parser and the label check understand.
    """
    found = [target["expr"] for panel in document.get("panels", []) for target in panel.get("targets", [])]
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        if match is None:
            raise CatalogueError(
                f"variable {variable['name']}: {query!r} is not label_values(selector, label)"
            )
        found.append(f"group by ({match['label']}) ({match['selector']})")
    return found
