"""The Grafana dashboards are generated from code, current, and read only what the fleet exports.

`deploy/grafana/generate.py` builds them with the Grafana foundation SDK. These tests keep the
committed JSON equal to its output, every metric and label a query reads one the services export
(the generated metrics table of docs/monitoring.md, read by `deploy/grafana/catalogue.py`; an
integration test scrapes a running fleet for the same names), every expression valid PromQL for
Prometheus's own parser (`promtool`, Debian's `prometheus` package), each risk class's SLO line
its policy's value, and the production overlay shipping the files to Grafana's dashboard sidecar.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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


def _promql(expression: str, **values: str) -> str:
    """The expression as Prometheus reads it, Grafana's variables replaced (by `values`, if given)."""
    for variable, value in (GRAFANA_VARIABLES | {f"${name}": v for name, v in values.items()}).items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"a Grafana variable this test does not know in {expression}"
    return expression


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: CI installs Debian's `prometheus` package (.ci/run)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return promtool


def _promtool_check(tmp_path: Path, expressions: list[str]) -> subprocess.CompletedProcess[str]:
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
    return subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True)


def _panel_query(document: dict[str, Any], title: str, ref_id: str = "A") -> str:
    (panel,) = [panel for panel in document["panels"] if panel["title"] == title]
    (target,) = [target for target in panel["targets"] if target["refId"] == ref_id]
    expression: str = target["expr"]
    return expression


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(path.read_text()) for name, path in DASHBOARDS.items()}


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    assert set(DASHBOARDS) == {"fleet-overview.json", "model-drilldown.json"}
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_query_reads_only_metrics_and_labels_the_services_export(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    exported = catalogue.declared_metrics()
    for name, document in dashboards.items():
        expressions = catalogue.dashboard_expressions(document)
        assert len(expressions) > 5, f"{name} has almost no queries"
        wrong = {f"{e}: {problem}" for e in expressions for problem in catalogue.problems(e, exported)}
        assert not wrong, f"{name}:\n" + "\n".join(sorted(wrong))


def test_the_catalogue_is_the_generated_table_of_what_each_service_exports() -> None:
    exported = catalogue.declared_metrics()
    assert exported["fleet_serving_requests_total"].labels == {"route", "risk_class", "code"}
    assert exported["fleet_serving_request_duration_seconds"].type == "histogram"
    assert exported["fleet_model_holdout_metric"].labels == {"model"}
    assert exported["fleet_ready"].labels == frozenset()


def test_the_catalogue_check_catches_unknown_metrics_and_labels_but_knows_histogram_series() -> None:
    exported = catalogue.declared_metrics()
    latency = "fleet_serving_request_duration_seconds"
    assert not catalogue.problems(
        f"histogram_quantile(0.99, sum by (route, le) (rate({latency}_bucket[5m])))"
        f" / sum by (job) (rate({latency}_count[5m]))",
        exported,
    )
    assert catalogue.unknown_metrics("fleet_ready_bucket + fleet_not_a_metric_total", exported) == {
        "fleet_ready_bucket",
        "fleet_not_a_metric_total",
    }
    assert catalogue.unknown_labels('fleet_models{risk_class="low", model="m"}', exported) == {
        "fleet_models{model}"
    }
    assert catalogue.unknown_labels("sum by (model) (fleet_models)", exported) == {"model"}
    assert catalogue.unknown_labels(f"sum by (le) (rate({latency}_count[5m]))", exported) == {"le"}


def test_a_variable_reads_a_label_its_metric_has() -> None:
    document = {
        "templating": {
            "list": [{"name": "v", "type": "query", "query": {"query": "label_values(fleet_models, model)"}}]
        }
    }
    (expression,) = catalogue.dashboard_expressions(document)
    assert expression == "group by (model) (fleet_models)"
    assert catalogue.unknown_labels(expression, catalogue.declared_metrics()) == {"model"}


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


def test_every_legend_names_only_labels_its_query_keeps(dashboards: dict[str, dict[str, Any]]) -> None:
    """`{{label}}` in a legend shows nothing when the query aggregated that label away."""
    for name, document in dashboards.items():
        for panel in document["panels"]:
            for target in panel.get("targets", []):
                kept = {
                    label.strip()
                    for grouping in re.findall(r"\bby \(([^)]*)\)", target["expr"])
                    for label in grouping.split(",")
                }
                shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))
                assert shown <= kept, f"{name}: {panel['title']}: legend {target['legendFormat']!r}"


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


def test_the_queries_compute_what_their_panels_say_on_series_like_the_fleets(
    dashboards: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Prometheus's own engine (`promtool test rules`) evaluates panel queries on made-up series."""
    overview = dashboards["fleet-overview.json"]
    requests = 'fleet_serving_requests_total{{risk_class="{risk}",route="/predict",code="{code}"}}'
    bucket = (
        'fleet_serving_request_duration_seconds_bucket{{risk_class="critical",route="/predict",le="{le}"}}'
    )
    checks = 'fleet_monitor_drift_checks_total{{risk_class="{risk}"}}'
    drifted = 'fleet_monitor_drift_detected_total{{risk_class="{risk}"}}'
    lag = 'fleet_consumer_lag{{group="fleet.monitor.prediction-logs",topic="t",instance="{replica}"}}'
    cases = [
        # (what, input series: values per minute, query, eval minute, expected samples)
        (
            "no 5xx is an error ratio of 0, not an empty panel",
            {requests.format(risk="critical", code="200"): "0+60x10"},
            _panel_query(overview, "Error ratio, critical"),
            10,
            [("{}", 0.0)],
        ),
        (
            "6 503s a minute beside 60 200s are 6/66 of the answers",
            {
                requests.format(risk="critical", code="200"): "0+60x10",
                requests.format(risk="critical", code="503"): "0+6x10",
                requests.format(risk="low", code="500"): "0+600x10",  # another class's errors
            },
            _panel_query(overview, "Error ratio, critical"),
            10,
            [("{}", 6 / 66)],
        ),
        (
            "every request between 50 and 100 ms is a p99 of 99.5 ms (linear within the bucket)",
            {
                bucket.format(le="0.05"): "0x10",
                bucket.format(le="0.1"): "0+60x10",
                bucket.format(le="+Inf"): "0+60x10",
            },
            _panel_query(overview, "p99 latency, critical"),
            10,
            [('{route="/predict"}', 0.0995)],
        ),
        (
            "a class that never drifted has a drifted share of 0; one drift in ten windows is 0.1",
            {
                checks.format(risk="low"): "0+10x70",
                checks.format(risk="high"): "0+10x70",
                drifted.format(risk="high"): "0+1x70",
            },
            _panel_query(overview, "Drifted share of windows"),
            70,
            [('{risk_class="low"}', 0.0), ('{risk_class="high"}', 0.1)],
        ),
        (
            "a group's lag is the sum over the replicas that own its partitions",
            {lag.format(replica="a"): "5x10", lag.format(replica="b"): "7x10"},
            _panel_query(overview, "Consumer lag"),
            10,
            [('{group="fleet.monitor.prediction-logs",topic="t"}', 12.0)],
        ),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": what,
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in inputs.items()],
                "promql_expr_test": [
                    {
                        "expr": _promql(query, risk_class=".*"),
                        "eval_time": f"{minute}m",
                        "exp_samples": [{"labels": labels, "value": value} for labels, value in expected],
                    }
                ],
            }
            for what, inputs, query, minute, expected in cases
        ],
    }
    path = tmp_path / "dashboard-queries.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
