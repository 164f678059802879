"""A running fleet exports the metrics operations rely on, and everything its alerts and dashboards read.

- Each service's /metrics has every metric of the catalogue it owns (HELP and TYPE), and every
  metric the generated table of docs/monitoring.md says it exports.
- Every `fleet_` metric an alert rule (`deploy/prometheus/*.yaml`) or a dashboard
  (`deploy/grafana/dashboards/*.json`) reads is exported by some service.
- The values move: a model trained, evaluated, registered and promoted is counted by each
  service with its risk class; /predict requests are counted with the model's risk class and
  their status code, and timed; the monitor's drill-down gauges show the model's window; the
  consumers' lag is measured.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from modelfleet_cli.local_home import REPO
from modelfleet_contracts import ModelPromoted
from modelfleet_contracts.topics import MODEL_PROMOTIONS, MODEL_REGISTRATIONS

from . import fleet as fleet_helpers
from .assembly_data import model_spec, write_fleet
from .fleet import RunningFleet, SecuredBroker, ServiceProcess, running_fleet

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "trainer", "evaluator", "registry", "deployer", "monitor", "serving")
CONTROL_PLANE = SERVICES[:-1]

#: The metric catalogue of issue #14, by the service that owns each metric: alerts and dashboards
#: are written against these exact names (as scraped: a counter's with `_total`).
EVERY_SERVICE = (
    "fleet_events_handled_total",
    "fleet_handler_retries_total",
    "fleet_dead_letters_total",
    "fleet_ready",
    "fleet_consumer_lag",
    # faststream's own, under the fleet's prefix
    "fleet_received_messages_total",
    "fleet_received_processed_messages_total",
    "fleet_received_processed_messages_duration_seconds",
    "fleet_published_messages_total",
)
CATALOGUE: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "trainer": ("fleet_trainer_trainings_total",),
    "evaluator": ("fleet_evaluator_evaluations_total",),
    "registry": ("fleet_registry_registrations_total",),
    "deployer": (
        "fleet_models",
        "fleet_deployer_rollout_decisions_total",
        "fleet_deployer_canary_age_seconds",
    ),
    "monitor": (
        "fleet_monitor_drift_checks_total",
        "fleet_monitor_drift_detected_total",
        "fleet_monitor_decay_detected_total",
        "fleet_monitor_slo_breaches_total",
        "fleet_monitor_reviews_total",
        "fleet_monitor_reference_errors_total",
        "fleet_monitor_models",
        "fleet_monitor_window_update_seconds",
        "fleet_model_requests",
        "fleet_model_error_rate",
        "fleet_model_latency_p99_seconds",
        "fleet_model_live_metric",
        "fleet_model_holdout_metric",
        "fleet_model_business_value",
        "fleet_model_version",
    ),
    "serving": (
        "fleet_serving_requests_total",
        "fleet_serving_request_duration_seconds",
        "fleet_serving_models_loaded",
    ),
}

#: `# TYPE <name> <type>` of the exposition format: declared even before a metric has samples.
TYPE_LINE = re.compile(r"^# TYPE (?P<name>\S+) (?P<type>\S+)$", re.MULTILINE)
HELP_LINE = re.compile(r"^# HELP (?P<name>\S+) ", re.MULTILINE)
METRIC_NAME = re.compile(r"\bfleet_[a-z0-9_]+")
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")
#: A row of the generated table in docs/monitoring.md: | `name` | type | labels | services | meaning |
DOC_ROW = re.compile(
    r"^\| `(?P<name>fleet_[a-z0-9_]+)` \| \w+ \| [^|]* \| (?P<services>[^|]+) \|", re.MULTILINE
)


def scrape(service: ServiceProcess) -> str:
    return httpx.get(f"{service.url}/metrics", timeout=10).text


def declared(text: str) -> set[str]:
    """The metric names an exposition declares with both HELP and TYPE."""
    return {m["name"] for m in TYPE_LINE.finditer(text)} & {m["name"] for m in HELP_LINE.finditer(text)}


def read_names(expression: str) -> set[str]:
    """The `fleet_` metrics a PromQL expression reads, a histogram's series as its family."""
    return {
        next((name.removesuffix(s) for s in SERIES_SUFFIXES if name.endswith(s)), name)
        for name in METRIC_NAME.findall(expression)
    }


def rule_expressions() -> dict[str, list[str]]:
    """Every `expr` of the alerting and recording rules in deploy/prometheus/*.yaml, by file."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "deploy" / "prometheus").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        found[path.name] = [rule["expr"] for group in document["groups"] for rule in group["rules"]]
    return found


def dashboard_expressions() -> dict[str, list[str]]:
    """Every query of deploy/grafana/dashboards/*.json: targets' `expr` and variables' `query`."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return {
        path.name: list(walk(json.loads(path.read_text())))
        for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
    }


def wait_for(check: Callable[[], float], at_least: float, what: str, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    value = check()
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        value = check()
    assert value >= at_least, f"{what} = {value} < {at_least} after {timeout} s"
    return value


@pytest.fixture(scope="module")
def fleet(
    kafka_broker: SecuredBroker, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    root = tmp_path_factory.mktemp("metrics")
    # Lag, the deployer's gauges and the monitor's windows every second or two, not every 15 s.
    extra_env = {
        "FLEET_LAG_REFRESH_SECONDS": "1",
        "FLEET_DEPLOYER_METRICS_SECONDS": "1",
        "FLEET_MONITOR_REPORT_SECONDS": "2",
    }
    with running_fleet(root, kafka_broker, mlflow_uri, SERVICES, extra_env=extra_env) as running:
        write_fleet(running.root / "data", running.suffix)
        declared_data = running.cli("apply", str(running.root / "data" / "datasets.yaml"))
        assert declared_data.returncode == 0, declared_data.stdout + declared_data.stderr
        yield running


async def promoted_champion(fleet: RunningFleet) -> str:
    """A low-risk model applied and promoted to champion by the fleet itself."""
    model = f"metered{fleet.suffix}"
    document = model_spec(
        model, "sensors", ["vibration", "temperature", "machine"], "fails", "tabular-classifier", "1"
    )
    path = fleet.root / "metered.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    applied = fleet.cli("apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def promotions(found: list[Any]) -> list[Any]:
        return [e for e in found if isinstance(e, ModelPromoted) and e.model == model]

    assert promotions(await fleet.events(MODEL_PROMOTIONS, until=promotions, timeout=300))
    return model


def test_each_service_exports_the_catalogue_it_owns_and_the_documented_table(fleet: RunningFleet) -> None:
    exported = {name: declared(scrape(service)) for name, service in fleet.services.items()}
    for service in SERVICES:
        missing = sorted(set(EVERY_SERVICE + CATALOGUE[service]) - exported[service])
        assert not missing, f"{service} does not export {missing}"
        assert not [n for n in exported[service] if n.startswith("faststream")], f"{service}: prefix"

    rows = list(DOC_ROW.finditer((REPO / "docs" / "monitoring.md").read_text()))
    assert len(rows) >= sum(map(len, CATALOGUE.values())) + len(EVERY_SERVICE)
    for row in rows:
        owners = SERVICES if row["services"].strip() == "every service" else row["services"].split(", ")
        for owner in owners:
            assert row["name"] in exported[owner.strip()], (
                f"{owner} does not export {row['name']} (the doc says)"
            )


def test_every_metric_the_alerts_and_dashboards_read_is_exported(fleet: RunningFleet) -> None:
    expressions = {**rule_expressions(), **dashboard_expressions()}
    # Both the rules and the dashboards exist: a check over nothing would pass whatever they read.
    assert any(name.endswith(".yaml") for name in expressions), "no rules in deploy/prometheus/*.yaml"
    assert any(name.endswith(".json") for name in expressions), "no dashboards in deploy/grafana/dashboards"
    exported = set().union(*(declared(scrape(service)) for service in fleet.services.values()))
    read = {name: set().union(*map(read_names, found)) for name, found in expressions.items()}
    assert all(read.values()), f"a file whose queries read no fleet_ metric: {read}"
    unknown = {name: sorted(names - exported) for name, names in read.items() if names - exported}
    assert not unknown, f"read but exported by no service: {unknown}"


async def test_a_model_through_the_loop_moves_every_services_numbers(fleet: RunningFleet) -> None:
    champion = await promoted_champion(fleet)
    services = fleet.services
    trainer, evaluator, registry = services["trainer"], services["evaluator"], services["registry"]
    assert trainer.metric("fleet_trainer_trainings_total", reason="spec", outcome="succeeded") >= 1
    assert evaluator.metric("fleet_evaluator_evaluations_total", risk_class="low", verdict="passed") >= 1
    assert registry.metric("fleet_registry_registrations_total", risk_class="low") >= 1
    deployer = services["deployer"]
    assert (
        deployer.metric("fleet_deployer_rollout_decisions_total", risk_class="low", decision="promoted") >= 1
    )
    # The deployer's gauges count the models it owns, refreshed every second here.
    wait_for(
        lambda: deployer.metric("fleet_models", stage="promoted", risk_class="low"),
        1,
        "fleet_models{promoted,low}",
    )
    assert deployer.metric("fleet_deployer_canary_age_seconds", risk_class="low") == 0

    serving = services["serving"]
    labels = {"route": "/predict", "risk_class": "low"}
    before = serving.metric("fleet_serving_requests_total", **labels, code="200")
    timed_before = serving.metric("fleet_serving_request_duration_seconds_count", **labels)
    denied_before = serving.metric(
        "fleet_serving_requests_total", route="/predict", risk_class="unknown", code="401"
    )
    invalid_before = serving.metric("fleet_serving_requests_total", **labels, code="422")
    rng = random.Random(3)
    async with httpx.AsyncClient(timeout=120, headers=fleet_helpers.SERVING_HEADERS) as client:
        for i in range(5):
            row = {"vibration": rng.gammavariate(2, 1), "temperature": rng.gauss(70, 8), "machine": "pump"}
            body = {"model": champion, "request_id": f"m-{i}", "inputs": [row]}
            answer = await client.post(f"{serving.url}/predict", json=body)
            assert answer.status_code == 200, answer.text
        wrong = await client.post(
            f"{serving.url}/predict", json={"model": champion, "inputs": [{"vibration": 1}]}
        )
        assert wrong.status_code == 422
    async with httpx.AsyncClient(timeout=30) as anonymous:
        denied = await anonymous.post(f"{serving.url}/predict", json={"model": champion, "inputs": []})
    assert denied.status_code == 401
    assert serving.metric("fleet_serving_requests_total", **labels, code="200") == before + 5
    assert serving.metric("fleet_serving_requests_total", **labels, code="422") == invalid_before + 1
    assert serving.metric("fleet_serving_request_duration_seconds_count", **labels) == timed_before + 6
    assert (
        serving.metric("fleet_serving_requests_total", route="/predict", risk_class="unknown", code="401")
        == denied_before + 1
    )

    # The monitor reports the window of those predictions, and shows it per model and route.
    monitor = services["monitor"]
    wait_for(
        lambda: monitor.metric("fleet_model_requests", model=champion, route="champion"),
        1,
        f"fleet_model_requests{{model={champion}}}",
    )
    assert monitor.metric("fleet_model_version", model=champion, route="champion") == 1
    assert monitor.metric("fleet_model_holdout_metric", model=champion) > 0

    # Every consumer's lag is measured: the deployer's group on the registrations it consumed.
    registrations = fleet.namer.topic(MODEL_REGISTRATIONS)
    text = scrape(deployer)
    assert re.search(
        rf'^fleet_consumer_lag\{{group="[^"]+",topic="{re.escape(registrations)}"\}} ', text, re.M
    ), "no lag series of the deployer's registrations consumer"
    assert 'fleet_consumer_lag{group="none"' in scrape(serving)
