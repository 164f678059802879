"""The fleet's alerts are generated from the risk policies, shipped twice, and proven by promtool.

`deploy/prometheus/generate.py` writes a plain rules file and the production overlay's
PrometheusRule from the policies; every alert links its runbook and has promtool unit tests in which
it fires and in which it does not; `promtool check rules` and `promtool test rules` pass (CI installs
Debian's `prometheus` package for promtool; there a missing promtool fails instead of skipping).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet_common.policies import RISK_CLASSES, load_policies

from .test_grafana_dashboards import catalogue

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "fleet-rules.yaml"
OPERATOR_RULES = REPO / "deploy" / "k8s" / "overlays" / "production" / "prometheus-rules.yaml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/modelfleet/modelfleet/blob/main/docs/runbooks/"

Rule = dict[str, Any]


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def _alerts() -> list[Rule]:
    return [rule for group in _groups() for rule in group["rules"] if "alert" in rule]


def _threshold(rule: Rule) -> float:
    """The number the rule's first comparison holds its metric against (`... > 0.005`)."""
    match = re.search(r"\}\)? > ([0-9.e+-]+)", rule["expr"])
    assert match, f"no threshold in {rule['expr']}"
    return float(match.group(1))


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing: CI installs it (Debian's prometheus package, .ci/run)")
    pytest.skip("promtool is not installed (apt-get install prometheus); CI runs this test")


def test_the_generated_rules_and_runbook_index_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(PROMETHEUS / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_prometheus_rule_holds_the_same_groups_as_the_plain_file_where_the_operator_finds_it() -> None:
    (rule,) = [doc for doc in yaml.safe_load_all(OPERATOR_RULES.read_text()) if doc]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "modelfleet"
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelfleet"
    assert rule["spec"]["groups"] == _groups()
    kustomization = yaml.safe_load((OPERATOR_RULES.parent / "kustomization.yaml").read_text())
    assert OPERATOR_RULES.name in kustomization["resources"]


def test_each_risk_class_alerts_at_its_own_policys_error_rate_and_p99() -> None:
    policies = load_policies(REPO / "policies")
    for name, field, scale in [
        ("FleetServingErrorRateHigh", "max_error_rate", 1.0),
        ("FleetServingLatencyHigh", "max_latency_p99_ms", 1000.0),
    ]:
        rules = {rule["labels"]["risk_class"]: rule for rule in _alerts() if rule["alert"] == name}
        assert set(rules) == set(RISK_CLASSES), name
        for risk_class, rule in rules.items():
            expected = getattr(policies[risk_class].spec.monitoring, field) / scale
            assert _threshold(rule) == pytest.approx(expected), f"{name} of {risk_class}"
            assert f'risk_class="{risk_class}"' in rule["expr"]
            paged = policies[risk_class].spec.rollout.requires_approval
            assert rule["labels"]["severity"] == ("critical" if paged else "warning")


def test_every_metric_the_rules_read_is_one_a_service_declares_with_those_labels() -> None:
    """Checked against the metric catalogue the dashboards use (one reading of what is exported)."""
    declared = catalogue.declared_metrics()
    expressions = [rule["expr"] for group in _groups() for rule in group["rules"]]
    assert any("fleet_" in expression for expression in expressions), "the rules read no fleet_ metric"
    wrong = {f"{e}: {problem}" for e in expressions for problem in catalogue.problems(e, declared)}
    assert wrong == set()


def test_servings_latency_buckets_reach_past_every_classs_p99_slo() -> None:
    """histogram_quantile never exceeds the largest finite bucket: an SLO above it could not fire."""
    source = REPO / "services" / "serving" / "src" / "modelfleet_serving" / "request_metrics.py"
    (buckets,) = [
        ast.literal_eval(node.value)
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["DURATION_BUCKETS"]
    ]
    policies = load_policies(REPO / "policies")
    for risk_class, policy in policies.items():
        assert policy.spec.monitoring.max_latency_p99_ms is not None
        assert max(buckets) > policy.spec.monitoring.max_latency_p99_ms / 1000, risk_class


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook() -> None:
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{rule['alert']}.md"
        assert (RUNBOOKS / f"{rule['alert']}.md").is_file(), f"docs/runbooks/{rule['alert']}.md is missing"
        assert re.fullmatch(r"\d+m", rule["for"]), f"{rule['alert']}: for {rule['for']}"


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    fires: set[str] = set()
    stays_quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else stays_quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fires == set(), "alerts no unit test shows firing"
    assert names - stays_quiet == set(), "alerts no unit test shows staying quiet"


def test_a_firing_case_names_its_labels_and_every_annotation() -> None:
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for expected in check.get("exp_alerts") or []:
                    assert expected["exp_labels"]["severity"], case["name"]
                    assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}


def test_promtool_accepts_the_rules_and_every_unit_test_passes() -> None:
    promtool = _promtool()
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        [promtool, "test", "rules", *(str(path.relative_to(PROMETHEUS)) for path in UNIT_TESTS)],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert tests.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_promtool_fails_a_rule_whose_threshold_was_changed_by_hand(tmp_path: Path) -> None:
    """The unit tests can fail: with critical's error-rate SLO loosened, its firing case fails."""
    promtool = _promtool()
    loosened = RULES.read_text().replace(
        'fleet:serving_request_errors:ratio_rate5m{risk_class="critical"} > 0.005',
        'fleet:serving_request_errors:ratio_rate5m{risk_class="critical"} > 0.05',
    )
    assert loosened != RULES.read_text()
    (tmp_path / "fleet-rules.yaml").write_text(loosened)
    (tmp_path / "tests").mkdir()
    shutil.copy(PROMETHEUS / "tests" / "serving.yaml", tmp_path / "tests" / "serving.yaml")
    result = subprocess.run(
        [promtool, "test", "rules", "tests/serving.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "alertname: FleetServingErrorRateHigh" in result.stdout + result.stderr
