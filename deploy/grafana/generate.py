"""Generate the fleet's Grafana dashboards from code, with the Grafana foundation SDK.

    .venv/bin/python deploy/grafana/generate.py          # (re)write dashboards/*.json
    .venv/bin/python deploy/grafana/generate.py --check  # exit 1 if a committed file is stale

- `dashboards/fleet-overview.json`: the whole fleet: models by stage and risk class, rollout
  decisions, trainings, evaluations, drift, decay and SLO breaches, serving traffic with each
  risk class's latency and error SLO (the lines come from `policies/<class>.yaml`), consumer lag,
  dead letters, retries and which services are ready.
- `dashboards/model-drilldown.json`: one model (the `model` variable): its versions per route,
  latency p99, error rate, requests, live metric against its holdout metric and business value,
  from the monitor's latest window (the `fleet_model_*` gauges).

Every query may only read metrics the services export, with labels they have (`catalogue.py`
reads them from the metrics table of docs/monitoring.md, generated from the services' metric
objects); the generator refuses to write a dashboard that reads another, and `tests/docs/
test_grafana_dashboards.py` checks the files are current, their metrics and labels exported and their
PromQL valid (`promtool`). `make dashboards` runs this; the production overlay ships the JSON as
a ConfigMap for the Grafana sidecar (`deploy/grafana/kustomization.yaml`).
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from catalogue import REPO, dashboard_expressions, declared_metrics, problems
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

from modelfleet_common.policies import RISK_CLASSES, load_policies
from modelfleet_contracts.policies import RiskPolicy
from modelfleet_contracts.specs import RiskClass
from modelfleet_devkit.generated import generator_main

GRAFANA = Path(__file__).resolve().parent
DASHBOARDS = GRAFANA / "dashboards"
POLICIES = REPO / "policies"

#: Every panel reads the Prometheus the `datasource` variable picks (any Prometheus-type one).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["modelfleet"]
#: Per-hour panels count over a sliding hour; rates use Grafana's interval (at least 4 scrapes).
HOUR = "1h"
RATE = "$__rate_interval"
#: Units: seconds, a 0-1 ratio shown as %, requests and events per second, counts, plain numbers.
SECONDS, RATIO, COUNT, NUMBER = units.Seconds, units.PercentUnit, units.Short, units.Number
REQUESTS_PER_SECOND, EVENTS_PER_SECOND = units.RequestsPerSecond, units.EventsPerSecond

Builder = Any  # a panel builder of the SDK (timeseries.Panel, stat.Panel)
REF_IDS = "ABCDEFGH"


def query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builder.ThresholdsConfig:
    return (
        dashboard_builder.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def graph(title: str, description: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(8)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for ref_id, item in zip(REF_IDS, queries, strict=False):
        panel = panel.with_target(item.ref_id(ref_id))
    return panel


def slo_graph(
    title: str, description: str, unit: str, slo: float | None, item: prometheus.Dataquery
) -> Builder:
    """A panel with the SLO as a dashed red line (and the area above it red), if the policy sets one."""
    panel = graph(title, description, unit, item).span(6).height(7)
    if slo is None:
        return panel
    style = common.GraphTresholdsStyleMode.DASHED_AND_AREA  # (the SDK's spelling)
    return panel.thresholds(thresholds((None, "transparent"), (slo, "red"))).thresholds_style(
        common_builder.GraphThresholdsStyleConfig().mode(style)
    )


def single(title: str, description: str, unit: str, item: prometheus.Dataquery) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(8)
        .with_target(item.ref_id(REF_IDS[0]).instant())
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def datasource_variable() -> dashboard_builder.DatasourceVariable:
    return (
        dashboard_builder.DatasourceVariable("datasource")
        .label("Prometheus")
        .type("prometheus")
        .description("The Prometheus that scrapes the fleet's /metrics (a ServiceMonitor per service).")
    )


def label_variable(name: str, label: str, source: str, description: str) -> dashboard_builder.QueryVariable:
    return (
        dashboard_builder.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query({"query": f"label_values({source}, {name})", "refId": f"{name}-values"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def new_dashboard(uid: str, title: str, description: str) -> dashboard_builder.Dashboard:
    return (
        dashboard_builder.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(datasource_variable())
    )


def with_rows(
    board: dashboard_builder.Dashboard, rows: Iterable[tuple[str, list[Builder]]]
) -> dashboard_builder.Dashboard:
    """The rows and their panels in order, laid out left to right, with ids 1, 2, ... (stable)."""
    ids = itertools.count(1)
    for title, panels in rows:
        board = board.with_row(dashboard_builder.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    return board


# --- fleet overview ---------------------------------------------------------------------------------

RISK = 'risk_class=~"$risk_class"'


def fleet_overview() -> dashboard_builder.Dashboard:
    policies = load_policies(POLICIES)
    board = (
        new_dashboard(
            "modelfleet-overview",
            "modelfleet / Fleet overview",
            "The whole fleet: models by stage, the closed loop's decisions, drift, serving SLOs, Kafka.",
        )
        .with_variable(
            label_variable(
                "risk_class",
                "Risk class",
                "fleet_models",
                "Filters the panels labelled by risk class (the SLO panels are one per class).",
            )
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .link(
            dashboard_builder.DashboardLink("Model drill-down")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(False)
            .keep_time(True)
            .include_vars(False)
        )
    )
    return with_rows(board, fleet_rows(policies))


def fleet_rows(policies: dict[RiskClass, RiskPolicy]) -> Iterator[tuple[str, list[Builder]]]:
    checked = f"sum by (risk_class) (increase(fleet_monitor_drift_checks_total{{{RISK}}}[{HOUR}]))"
    drifted = f"sum by (risk_class) (increase(fleet_monitor_drift_detected_total{{{RISK}}}[{HOUR}]))"
    yield (
        "Models and rollouts",
        [
            single(
                "Models by stage",
                "Models per rollout stage, from the deployer's rollout state (fleet_models). "
                "A growing awaiting_approval waits for people: `modelfleet status` lists them and "
                "`modelfleet approve MODEL VERSION` signs one off. No value at all: the deployer is "
                "not scraped or not ready (see Ready replicas below).",
                COUNT,
                query(f"sum by (stage) (fleet_models{{{RISK}}})", "{{stage}}"),
            )
            .span(12)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME),
            graph(
                "Models by risk class and stage",
                "The same gauge over time, per risk class. A jump in rolled_back or a model stuck "
                "in canary: `modelfleet audit MODEL` says why each decision was taken.",
                COUNT,
                query(f"sum by (risk_class, stage) (fleet_models{{{RISK}}})", "{{risk_class}} {{stage}}"),
            ).span(12),
            graph(
                "Rollout decisions per hour",
                "The deployer's decisions over a sliding hour: shadow, canary, step, promoted, "
                "rolled_back, retired. Rollbacks rising: open the model drill-down of the models "
                "`modelfleet status` shows rolled back and `modelfleet audit MODEL` for the reason "
                "(latency, errors or live metric against the champion).",
                COUNT,
                query(
                    f"sum by (decision) (increase(fleet_deployer_rollout_decisions_total{{{RISK}}}[{HOUR}]))",
                    "{{decision}}",
                ),
            ).span(12),
            graph(
                "Oldest canary or shadow in progress",
                "Age of the oldest rollout still in shadow or canary, per risk class (0 when none). "
                "A line that only climbs is a stuck rollout: too little traffic for the policy's "
                "rollout.min_requests_per_step, or missing labels (rollout.min_live_labels); "
                "`modelfleet status` shows which model, `modelfleet rollback MODEL` ends it.",
                SECONDS,
                query(
                    f"max by (risk_class) (fleet_deployer_canary_age_seconds{{{RISK}}})",
                    "{{risk_class}}",
                ),
            ).span(12),
        ],
    )
    yield (
        "Training, gates and drift",
        [
            graph(
                "Trainings per hour",
                "Trainings over a sliding hour by what triggered them and how they ended. Failed "
                "trainings: the trainer's log and the MLflow run say why; `modelfleet retrain MODEL` "
                "asks again once the cause is fixed. A storm of drift-triggered trainings: check the "
                "drift panels before blaming the trainer.",
                COUNT,
                query(
                    f"sum by (reason, outcome) (increase(fleet_trainer_trainings_total[{HOUR}]))",
                    "{{reason}} {{outcome}}",
                ),
            ).span(12),
            graph(
                "Evaluations and registrations per hour",
                "Candidates the evaluator passed or failed, and versions the registry registered, "
                "over a sliding hour. Every candidate failing: the gates (policies/*.yaml) or the "
                "data changed; `modelfleet lineage MODEL` shows each evaluation's numbers.",
                COUNT,
                query(
                    f"sum by (verdict) (increase(fleet_evaluator_evaluations_total{{{RISK}}}[{HOUR}]))",
                    "evaluations {{verdict}}",
                ),
                query(
                    f"sum(increase(fleet_registry_registrations_total{{{RISK}}}[{HOUR}]))",
                    "registrations",
                ),
            ).span(12),
            graph(
                "Drift windows checked and drifted per hour",
                "Prediction windows the monitor compared with their reference, and those that "
                "drifted, per risk class over a sliding hour. Checked at 0 with traffic flowing: "
                "the monitor is not reading prediction logs (consumer lag below).",
                COUNT,
                query(checked, "checked {{risk_class}}"),
                query(drifted, "drifted {{risk_class}}"),
            ),
            graph(
                "Drifted share of windows",
                "Drifted windows / checked windows per risk class over a sliding hour. Many models "
                "drifting at once is more often an upstream data change than real drift: look at the "
                "inputs before letting a wave of retrains through (`modelfleet audit MODEL`).",
                RATIO,
                # A class that never drifted has no drifted series yet: 0, not "no data".
                query(f"({drifted} or 0 * {checked}) / {checked}", "{{risk_class}}"),
            ).max(1),
            graph(
                "Decays and SLO breaches per hour",
                "Label windows whose live metric fell below its bound, and serving SLO breaches the "
                "monitor saw, over a sliding hour. Breaches of one SLO across a class point at "
                "serving itself (the serving panels below); decays at data or labels.",
                COUNT,
                query(
                    f"sum by (risk_class) (increase(fleet_monitor_decay_detected_total{{{RISK}}}[{HOUR}]))",
                    "decay {{risk_class}}",
                ),
                query(
                    f"sum by (risk_class, slo) "
                    f"(increase(fleet_monitor_slo_breaches_total{{{RISK}}}[{HOUR}]))",
                    "breach {{slo}} {{risk_class}}",
                ),
            ),
        ],
    )
    serving: list[Builder] = [
        graph(
            "Serving requests per second",
            "Requests per route and risk class (`unknown`: a model serving does not know). A drop "
            "to 0 with clients still calling: serving is not ready (Ready replicas) or the "
            "ingress sends traffic elsewhere.",
            REQUESTS_PER_SECOND,
            query(
                f"sum by (risk_class, route) (rate(fleet_serving_requests_total{{{RISK}}}[{RATE}]))",
                "{{route}} {{risk_class}}",
            ),
        ).span(12),
        graph(
            "Serving responses by status code",
            "Responses per HTTP status code. 5xx are serving's errors (they count against the "
            "error SLO); 401/403 are callers without a valid token (`modelfleet tokens`); 404 a "
            "model or version serving does not route.",
            REQUESTS_PER_SECOND,
            query(
                f"sum by (code) (rate(fleet_serving_requests_total{{{RISK}}}[{RATE}]))",
                "{{code}}",
            ),
        ).span(12),
    ]
    for risk_class in RISK_CLASSES:
        monitoring = policies[risk_class].spec.monitoring
        latency_slo = monitoring.max_latency_p99_ms / 1000 if monitoring.max_latency_p99_ms else None
        serving.append(
            slo_graph(
                f"p99 latency, {risk_class}",
                f"p99 of serving's request duration for {risk_class} models, per route. The red line "
                f"is the class's SLO (monitoring.max_latency_p99_ms in policies/{risk_class}.yaml when "
                "the dashboards were generated; a spec may tighten it). Above it: a slow model "
                "version (drill-down, by model) or saturated replicas (CPU, KEDA's replica count); "
                "`modelfleet rollback MODEL` returns a model to its last good version.",
                SECONDS,
                latency_slo,
                query(
                    "histogram_quantile(0.99, sum by (route, le) "
                    f'(rate(fleet_serving_request_duration_seconds_bucket{{risk_class="{risk_class}"}}[{RATE}])))',
                    "{{route}}",
                ),
            )
        )
    for risk_class in RISK_CLASSES:
        serving.append(
            slo_graph(
                f"Error ratio, {risk_class}",
                f"Share of {risk_class} requests answered with a 5xx. The red line is the class's SLO "
                f"(monitoring.max_error_rate in policies/{risk_class}.yaml). Above it: serving's log "
                "names the failing model; a new version's errors roll it back by themselves, a "
                "champion's need `modelfleet rollback MODEL`.",
                RATIO,
                policies[risk_class].spec.monitoring.max_error_rate,
                # No 5xx series yet is a ratio of 0 (while there is traffic), not "no data".
                query(
                    f'(sum(rate(fleet_serving_requests_total{{risk_class="{risk_class}", code=~"5.."}}'
                    f"[{RATE}])) or vector(0)) / "
                    f'sum(rate(fleet_serving_requests_total{{risk_class="{risk_class}"}}[{RATE}]))',
                    "5xx ratio",
                ),
            )
        )
    serving.append(
        graph(
            "Models loaded per serving replica",
            "Model versions in each serving replica's memory. Replicas far apart: one is still "
            "loading after a restart; all falling: artifacts are refused (signatures, "
            "`modelfleet verify`).",
            COUNT,
            query("sum by (instance) (fleet_serving_models_loaded)", "{{instance}}"),
        ).span(24)
    )
    yield "Serving", serving
    yield (
        "Kafka and services",
        [
            graph(
                "Consumer lag",
                "Messages behind per consumer group and topic, summed over the replicas that own its "
                "partitions. Lag that keeps growing: the service is too slow or stopped (Ready "
                "replicas); KEDA adds replicas up to the partition count in the production overlay. "
                "Group none is serving's routing-table readers (every replica reads every table, "
                "summed here over the replicas).",
                COUNT,
                query("sum by (group, topic) (fleet_consumer_lag)", "{{group}} {{topic}}"),
            ).span(12),
            graph(
                "Dead letters per hour",
                "Messages sent to the dead-letter topic (fleet.dead-letter.v1 under the fleet's topic "
                "prefix) over a sliding hour, by the topic they came from and the error. Any: read them "
                "there (the x-dlq-* headers say where from, which service and why), fix the producer "
                "or the contract, then publish them again.",
                COUNT,
                query(
                    f"sum by (topic, error_type) (increase(fleet_dead_letters_total[{HOUR}]))",
                    "{{topic}} {{error_type}}",
                ),
            ).span(12),
            graph(
                "Events handled per second",
                "Events handled successfully (offset committed), per topic. A topic falling to 0 while "
                "its producers publish: its consumers are stuck (Consumer lag grows) or failing "
                "(retries and dead letters beside this panel).",
                EVENTS_PER_SECOND,
                query(f"sum by (topic) (rate(fleet_events_handled_total[{RATE}]))", "{{topic}}"),
            ),
            graph(
                "Handler retries per second",
                "Handler attempts that failed and were retried with backoff, per topic. Sustained "
                "retries: a dependency (MLflow, PostgreSQL, the dataset store) is failing; the "
                "service's log names it.",
                EVENTS_PER_SECOND,
                query(f"sum by (topic) (rate(fleet_handler_retries_total[{RATE}]))", "{{topic}}"),
            ),
            single(
                "Ready replicas per service",
                "Replicas of each service (the scrape job) that report ready to consume. 0 for a "
                "service: its pods are not up or not ready (`kubectl -n modelfleet get pods`, then "
                "the pod's log). A service missing here is not scraped at all.",
                COUNT,
                query("sum by (job) (fleet_ready)", "{{job}}"),
            )
            .thresholds(thresholds((None, "red"), (1, "green")))
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME),
        ],
    )


# --- model drill-down -------------------------------------------------------------------------------

MODEL = 'model="$model", route=~"$route"'


def model_drilldown() -> dashboard_builder.Dashboard:
    board = (
        new_dashboard(
            "modelfleet-model",
            "modelfleet / Model drill-down",
            "One model: versions per route, latency, errors, requests, live vs. holdout metric, "
            "business value, from the monitor's latest window.",
        )
        .with_variable(
            label_variable(
                "model",
                "Model",
                "fleet_model_version",
                "Models the monitor reports a window for (fleet_model_version).",
            )
        )
        .with_variable(
            label_variable(
                "route",
                "Route",
                'fleet_model_version{model="$model"}',
                "champion, challenger or shadow.",
            )
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .link(
            dashboard_builder.DashboardLink("Fleet overview")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(False)
            .keep_time(True)
            .include_vars(False)
        )
    )
    note = (
        " Each value is the monitor's latest window of this model and route (ModelHealthReported); "
        "max over replicas, as two may report a model for a moment while partitions move."
    )
    panels: list[tuple[str, list[Builder]]] = [
        (
            "Now",
            [
                single(
                    "Version per route",
                    "The version each route serves. No route: the monitor has no window for the "
                    "model yet (no traffic) or the model was retired; `modelfleet status` shows its "
                    "stage." + note,
                    NUMBER,
                    query(f"max by (route) (fleet_model_version{{{MODEL}}})", "{{route}}"),
                )
                .decimals(0)
                .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
                .span(12)
                .height(5),
                single(
                    "Holdout metric",
                    "The champion's score on its holdout set, in the live metric's measure (accuracy, "
                    "or negated MAE): the bar the live metric is held to. No value: the monitor has "
                    "no champion reference for the model yet; `modelfleet lineage MODEL` shows the "
                    "evaluation behind it.",
                    NUMBER,
                    query('max(fleet_model_holdout_metric{model="$model"})', "holdout"),
                )
                .decimals(3)
                .span(12)
                .height(5),
            ],
        ),
        (
            "Health",
            [
                graph(
                    "Latency p99",
                    "p99 latency per route. Above the risk class's SLO "
                    "(monitoring.max_latency_p99_ms) on the challenger: the deployer rolls it back; "
                    "on the champion: `modelfleet rollback MODEL` to the last good version." + note,
                    SECONDS,
                    query(f"max by (route) (fleet_model_latency_p99_seconds{{{MODEL}}})", "{{route}}"),
                ),
                graph(
                    "Error rate",
                    "Failed predictions / predictions per route. Errors on one route only: that "
                    "version (serving's log names the exception); on every route: the callers' "
                    "inputs changed (compare the drift panels of the fleet overview)." + note,
                    RATIO,
                    query(f"max by (route) (fleet_model_error_rate{{{MODEL}}})", "{{route}}"),
                ).max(1),
                graph(
                    "Requests per window",
                    "Predictions in the latest window per route. The challenger's share follows the "
                    "canary step; 0 on the champion while clients call: they call another model name "
                    "or serving does not route it (`modelfleet status`)." + note,
                    COUNT,
                    query(f"max by (route) (fleet_model_requests{{{MODEL}}})", "{{route}}"),
                ),
                graph(
                    "Live metric vs. holdout",
                    "The live metric on labelled predictions per route (accuracy, or negated MAE: "
                    "higher is better), against the champion's holdout score. Live well below "
                    "holdout: decay; the monitor asks for a retrain "
                    "(retrain.on_decay) or `modelfleet retrain MODEL`. No live line: no labels "
                    "arrived (feedback)." + note,
                    NUMBER,
                    query(f"max by (route) (fleet_model_live_metric{{{MODEL}}})", "live {{route}}"),
                    query('max(fleet_model_holdout_metric{model="$model"})', "holdout"),
                ),
                graph(
                    "Business value per window",
                    "Business KPI earned per window (labelled correct predictions x value), per "
                    "route. A challenger earning less than the champion at the same traffic share "
                    "should not be promoted: `modelfleet audit MODEL`." + note,
                    NUMBER,
                    query(f"max by (route) (fleet_model_business_value{{{MODEL}}})", "{{route}}"),
                ),
                graph(
                    "Versions per route",
                    "The version each route served over time: every step is a promotion, rollback "
                    "or new challenger; `modelfleet audit MODEL` says why each happened." + note,
                    NUMBER,
                    query(f"max by (route) (fleet_model_version{{{MODEL}}})", "{{route}}"),
                )
                .decimals(0)
                .line_interpolation(common.LineInterpolation.STEP_AFTER),
            ],
        ),
    ]
    return with_rows(board, panels)


# --- writing and checking ---------------------------------------------------------------------------

BUILDERS = {"fleet-overview.json": fleet_overview, "model-drilldown.json": model_drilldown}


def render(build: Any) -> str:
    document = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    catalogue = declared_metrics()
    wrong = [
        f"  {expression}: {problem}"
        for expression in dashboard_expressions(document)
        for problem in problems(expression, catalogue)
    ]
    if wrong:
        raise SystemExit(
            f"{document['title']}: queries the services' metrics do not answer (the table of "
            "docs/monitoring.md, `make metrics-doc`, lists what they export):\n" + "\n".join(wrong)
        )
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    """Each dashboard file and its JSON."""
    return {DASHBOARDS / name: render(build) for name, build in BUILDERS.items()}


if __name__ == "__main__":
    sys.exit(generator_main(rendered, description=__doc__.split("\n\n")[0], remake="make dashboards"))
