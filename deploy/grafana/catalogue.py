"""The fleet's metric catalogue, read from the code that declares the metrics.

Every metric a service exports is a `prometheus_client` `Counter`, `Gauge`, `Histogram`, ...
declared with its name as a string literal somewhere under `contracts/src`, `libs/*/src` or
`services/*/src`. This module reads those declarations from the source (without importing the
services: serving lives in its own environment) and returns the metric families Prometheus
sees, so the dashboards' generator and its test check every query against one list: the code's.

The names are as scraped: a counter's family ends in `_total` (prometheus_client adds the suffix
when the declaration leaves it out), a histogram's is its base name (queries use `<name>_bucket`,
`_sum`, `_count`). `tests/integration` checks the other half: that a running fleet exports them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: The prometheus_client metric types, by the name a declaration calls.
METRIC_TYPES = frozenset({"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"})
PREFIX = "fleet_"
#: A metric name as it appears in a PromQL expression.
METRIC_NAME = re.compile(r"\bfleet_[a-z0-9_]+")
#: A query variable's `label_values(<selector>, <label>)`.
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*\w+\)$")
#: What a query may add to a histogram's (or summary's) family name.
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


class CatalogueError(Exception):
    """A metric is declared in a way this module cannot read (names the file and the line)."""


@dataclass(frozen=True)
class Metric:
    """One metric family: its name as scraped, its type and where the code declares it."""

    name: str
    type: str
    declared_at: str


def source_files(repo: Path = REPO) -> list[Path]:
    roots = [
        repo / "contracts" / "src",
        *sorted(repo.glob("libs/*/src")),
        *sorted(repo.glob("services/*/src")),
    ]
    return sorted(path for root in roots for path in root.rglob("*.py"))


def _called(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _name_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((keyword.value for keyword in call.keywords if keyword.arg == "name"), None)


def _family(declared: str, metric_type: str) -> str:
    if metric_type == "Counter":
        return declared.removesuffix("_total") + "_total"
    if metric_type == "Info":
        return declared.removesuffix("_info") + "_info"
    return declared


def declared_metrics(repo: Path = REPO) -> dict[str, Metric]:
    """Every `fleet_` metric family declared in the code, by its name as scraped."""
    metrics: dict[str, Metric] = {}
    for path in source_files(repo):
        where = path.relative_to(repo)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or _called(node) not in METRIC_TYPES:
                continue
            argument = _name_argument(node)
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                if argument.value.startswith(PREFIX):
                    metric_type = _called(node) or ""
                    name = _family(argument.value, metric_type)
                    metrics[name] = Metric(name, metric_type, f"{where}:{node.lineno}")
            elif isinstance(argument, ast.JoinedStr) and ast.unparse(argument).startswith(f"f'{PREFIX}"):
                raise CatalogueError(
                    f"{where}:{node.lineno}: a metric named by an f-string ({ast.unparse(argument)}): "
                    "write the name as a literal so the dashboards' check can see it"
                )
    return metrics


def unknown_metrics(expression: str, catalogue: dict[str, Metric]) -> set[str]:
    """The `fleet_` series an expression reads that no declared metric exports.

    A histogram's (or summary's) family exports `<name>_bucket`, `_sum` and `_count` too.
    """
    unknown = set()
    for series in METRIC_NAME.findall(expression):
        if series in catalogue:
            continue
        family = next((series.removesuffix(s) for s in SERIES_SUFFIXES if series.endswith(s)), None)
        metric = catalogue.get(family or "")
        if metric is None or metric.type not in {"Histogram", "Summary"}:
            unknown.add(series)
    return unknown


def dashboard_expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' queries and its variables' selectors."""
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
        found.append(match["selector"])
    return found
