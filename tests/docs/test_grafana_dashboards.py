"""The Grafana dashboards are generated from code, current, and read only what the fleet exports.

`deploy/grafana/generate.py` builds them with the Grafana foundation SDK. These tests keep the
committed JSON equal to its output, every metric a query reads declared by the code (the catalogue
is read from the services' sources by `deploy/grafana/catalogue.py`; an integration test scrapes a
running fleet for the same names), every expression valid PromQL for Prometheus's own parser
(`promtool`, Debian's `prometheus` package), each risk class's SLO line its policy's value, and the
production overlay shipping the files to Grafana's dashboard sidecar.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from modelfleet_common.policies import RISK_CLASSES, load_policies

from .test_k8s_manifests import K8S, _render_command

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = {path.name: path for path in sorted((GRAFANA / "dashboards").glob("*.json"))}
#: Grafana's variables, replaced by a value of their kind so promtool can parse the expression.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$risk_class": "critical", "$model": "m", "$route": ".*"}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"grafana_{name}", GRAFANA / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


catalogue = _load("catalogue")


def _promql(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"a Grafana variable this test does not know in {expression}"
    return expression


def _promtool_check(tmp_path: Path, expressions: list[str]) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: CI installs Debian's `prometheus` package (.ci/run)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:expression:{number}", "expr": _promql(expression)}
                    for number, expression in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-expressions.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(path.read_text()) for name, path in DASHBOARDS.items()}


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    assert set(DASHBOARDS) == {"fleet-overview.json", "model-drilldown.json"}
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_query_reads_only_metrics_the_services_declare(dashboards: dict[str, dict[str, Any]]) -> None:
    declared = catalogue.declared_metrics()
    for name, document in dashboards.items():
        expressions = catalogue.dashboard_expressions(document)
        assert len(expressions) > 5, f"{name} has almost no queries"
        unknown = {metric for e in expressions for metric in catalogue.unknown_metrics(e, declared)}
        assert not unknown, f"{name} reads metrics no service declares: {sorted(unknown)}"


def test_the_catalogue_check_knows_histogram_series_and_catches_undeclared_metrics() -> None:
    declared = catalogue.declared_metrics()
    assert declared["fleet_dead_letters_total"].type == "Counter"
    histogram = next(metric.name for metric in declared.values() if metric.type == "Histogram")
    gauge = next(metric.name for metric in declared.values() if metric.type == "Gauge")
    assert not catalogue.unknown_metrics(
        f"rate({histogram}_bucket[5m]) / rate({histogram}_count[5m])", declared
    )
    assert catalogue.unknown_metrics(f"{gauge}_bucket + fleet_not_a_metric_total", declared) == {
        f"{gauge}_bucket",
        "fleet_not_a_metric_total",
    }


def test_a_metric_named_by_an_f_string_cannot_hide_from_the_catalogue(tmp_path: Path) -> None:
    source = tmp_path / "services" / "x" / "src" / "x"
    source.mkdir(parents=True)
    (source / "metrics.py").write_text('from prometheus_client import Gauge\nGauge(f"fleet_{name}", "doc")\n')
    with pytest.raises(catalogue.CatalogueError, match=r"services/x/src/x/metrics\.py:2"):
        catalogue.declared_metrics(tmp_path)


def test_every_expression_parses_as_promql(dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    expressions = [e for document in dashboards.values() for e in catalogue.dashboard_expressions(document)]
    result = _promtool_check(tmp_path, expressions)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(expressions)} rules found" in result.stdout


def test_promtool_rejects_an_expression_that_does_not_parse(tmp_path: Path) -> None:
    result = _promtool_check(tmp_path, ["sum by (stage (fleet_models)"])
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_each_risk_class_has_latency_and_error_panels_at_its_policys_slo(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    panels = {panel["title"]: panel for panel in dashboards["fleet-overview.json"]["panels"]}
    policies = load_policies(REPO / "policies")
    for risk_class in RISK_CLASSES:
        monitoring = policies[risk_class].spec.monitoring
        for title, slo in [
            (f"p99 latency, {risk_class}", (monitoring.max_latency_p99_ms or 0) / 1000 or None),
            (f"Error ratio, {risk_class}", monitoring.max_error_rate),
        ]:
            panel = panels[title]
            assert all(f'risk_class="{risk_class}"' in target["expr"] for target in panel["targets"])
            steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
            assert [step["value"] for step in steps if step["value"] is not None] == ([slo] if slo else [])


def test_the_model_drilldown_picks_a_model_from_the_monitors_version_gauge(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    document = dashboards["model-drilldown.json"]
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["query"]["query"] == "label_values(fleet_model_version, model)"
    queries = [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]
    assert all('model="$model"' in expr for expr in queries)


def test_every_panel_reads_the_chosen_prometheus_and_says_what_to_do(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, document in dashboards.items():
        for panel in document["panels"]:
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert len(panel["description"]) > 60, f"{where}: no description of what to do"
            assert panel["fieldConfig"]["defaults"]["unit"], f"{where}: no unit"
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert ref_ids, f"{where}: no query"
            assert all(ref_ids), f"{where}: a query without refId"
            assert len(set(ref_ids)) == len(ref_ids), f"{where}: refIds repeat"


def test_the_production_overlay_ships_the_dashboards_to_grafanas_sidecar() -> None:
    result = subprocess.run(
        _render_command(K8S / "overlays" / "production"), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    config_maps = [
        doc
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert len(config_maps) == 1
    config_map = config_maps[0]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "modelfleet"
    assert config_map["data"] == {name: path.read_text() for name, path in DASHBOARDS.items()}
