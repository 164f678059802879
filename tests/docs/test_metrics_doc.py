"""The metrics table of docs/monitoring.md is what the services' metric objects say today."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelfleet_common.metric_catalogue import MetricFamily, families

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_metrics", REPO / "docs" / "generate_metrics.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_metrics_table_is_current(generator: ModuleType) -> None:
    generated = generator.table({service: generator.exported(service) for service in generator.SERVICES})
    committed = generator.DOC.read_text()
    assert generator.with_table(committed, generated) == committed, "run `make metrics-doc` and commit it"


def declared_in_source() -> dict[str, str]:
    """Every `fleet_` metric the sources declare with a literal name (a prometheus_client
    Counter, Gauge, Histogram, ... call), as scraped, with where: the generator must have found each."""
    kinds = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
    found: dict[str, str] = {}
    roots = [REPO / "contracts" / "src", *REPO.glob("libs/*/src"), *REPO.glob("services/*/src")]
    for path in sorted(p for root in roots for p in root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            name = node.args[0]
            if called in kinds and isinstance(name, ast.Constant) and str(name.value).startswith("fleet_"):
                scraped = (
                    f"{str(name.value).removesuffix('_total')}_total" if called == "Counter" else name.value
                )
                found[str(scraped)] = f"{path.relative_to(REPO)}:{node.lineno}"
    return found


def test_every_metric_the_code_declares_is_in_the_table(generator: ModuleType) -> None:
    documented = set(re.findall(r"^\| `(fleet_[a-z0-9_]+)` \|", generator.DOC.read_text(), re.MULTILINE))
    declared = declared_in_source()
    assert len(declared) > 30
    missing = {name: where for name, where in declared.items() if name not in documented}
    assert not missing, f"declared but not in the table (built only after startup?): {missing}"


def test_a_registrys_families_carry_their_scraped_name_type_labels_and_help() -> None:
    registry = CollectorRegistry()
    Counter("fleet_things", "Things done.", ["risk_class"], registry=registry)
    Gauge("fleet_level", "A level.", registry=registry)
    Histogram("fleet_wait_seconds", "Waits.", ["route"], registry=registry)
    assert families(registry) == [
        MetricFamily("fleet_level", "gauge", (), "A level."),
        MetricFamily("fleet_things_total", "counter", ("risk_class",), "Things done."),
        MetricFamily("fleet_wait_seconds", "histogram", ("route",), "Waits."),
    ]


def test_the_table_names_every_service_of_a_metric_and_says_so_once_all_export_it(
    generator: ModuleType,
) -> None:
    def family(name: str) -> dict[str, object]:
        return {"name": name, "type": "gauge", "labels": ["topic"], "help": "Help | with a bar."}

    table = generator.table({"a": [family("fleet_x"), family("fleet_y")], "b": [family("fleet_x")]})
    assert table.splitlines()[2:] == [
        "| `fleet_x` | gauge | `topic` | every service | Help \\| with a bar. |",
        "| `fleet_y` | gauge | `topic` | a | Help \\| with a bar. |",
    ]
