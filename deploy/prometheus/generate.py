"""Generate the fleet's Prometheus alerting and recording rules from the risk policies.

    .venv/bin/python deploy/prometheus/generate.py          # (re)write the files
    .venv/bin/python deploy/prometheus/generate.py --check  # exit 1 if a committed file is stale

Writes the same rule groups twice, and the runbooks' index:

- `deploy/prometheus/fleet-rules.yaml`: a plain Prometheus rules file (`rule_files:`), for a
  Prometheus without the Operator; it scrapes each service under the job named after it
  (`ingest`, ..., `serving`), as the production overlay's ServiceMonitors do;
- `deploy/k8s/overlays/production/prometheus-rules.yaml`: a Prometheus Operator `PrometheusRule`
  in namespace `modelfleet`, labelled `app.kubernetes.io/part-of: modelfleet` for the Prometheus'
  `ruleSelector`;
- `docs/runbooks/README.md`: every alert, its severity, when it fires (with the numbers) and its
  runbook, `docs/runbooks/<AlertName>.md` (written by people; tests/docs/test_runbooks.py checks
  each exists and names only commands the CLI has).

The numbers come from where they are decided, never copied: each risk class's error-rate and p99
SLOs from its policy (`policies/<class>.yaml`, `monitoring.max_error_rate`,
`monitoring.max_latency_p99_ms`, read with the services' own `load_policies`), the stuck-canary
bound from the policy's rollout (`canary_steps`, `shadow`, `min_requests_per_step`: see
`canary_bound_seconds`), the consumer-lag bound from the KEDA scaling of the production overlay
(`deploy/k8s/generate.py`: lag per replica times the most replicas). `deploy/prometheus/tests/`
holds promtool unit tests for every alert (`make alerts-test`).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from modelfleet_common.policies import RISK_CLASSES, load_policies, resolve_policy
from modelfleet_contracts.policies import RiskPolicy
from modelfleet_contracts.specs import RiskClass
from modelfleet_contracts.topics import SERVICES
from modelfleet_devkit.generated import generator_main

PROMETHEUS = Path(__file__).resolve().parent
REPO = PROMETHEUS.parents[1]
RULES_FILE = PROMETHEUS / "fleet-rules.yaml"
OPERATOR_FILE = REPO / "deploy" / "k8s" / "overlays" / "production" / "prometheus-rules.yaml"
RUNBOOKS = REPO / "docs" / "runbooks"
#: Where the runbooks are read: the repository as published (its images are ghcr.io/modelfleet/*).
RUNBOOK_BASE = "https://github.com/modelfleet/modelfleet/blob/main/docs/runbooks/"


def severity(policy: RiskPolicy) -> str:
    """Who is woken by a serving SLO breach: a class whose versions need a signed approval to take
    traffic (`rollout.requires_approval`) pages (`critical`); the others wait for working hours."""
    return "critical" if resolve_policy(policy).rollout.requires_approval else "warning"


#: Fewest /predict requests per second of a risk class for its error rate and p99 to be judged
#: (30 in the 5-minute window): below it a single slow or failed request is the whole statistic.
MIN_REQUESTS_PER_SECOND = 0.1

#: The stuck-canary bound assumes a model in rollout answers at least this many requests a second
#: (86,400 a day); a quieter model may trip it, and its runbook says so.
CANARY_MIN_MODEL_RATE = 1.0
#: Least time a shadow stage or canary step takes whatever the traffic: it also waits for
#: `min_live_labels` labels (joined from feedback by ingest) and for the monitor's health windows.
CANARY_STAGE_FLOOR_SECONDS = 3600

#: Drift storm: this share of the drift windows checked in the last hour drifted, and at least
#: this many. A model drifts now and then; a third of the fleet at once is an upstream change
#: (a broken feature pipeline, a unit change) that retraining on would only bake in.
DRIFT_STORM_SHARE = 0.3
DRIFT_STORM_MIN_WINDOWS = 10

#: Failed trainings: this share of the last hour's trainings failed, and at least this many.
TRAINING_FAILURE_SHARE = 0.2
TRAINING_FAILURE_MIN = 3


@dataclass(frozen=True)
class Alert:
    """One alerting rule; several rules may share an alert name (one per risk class or service)."""

    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": RUNBOOK_BASE + f"{self.name}.md",
            },
        }


@dataclass(frozen=True)
class Group:
    name: str
    recordings: dict[str, str]
    alerts: list[Alert]
    #: For the runbooks' index: alert name -> when it fires, in words with the numbers.
    when: dict[str, str]

    def document(self) -> dict[str, Any]:
        rules = [{"record": record, "expr": expr} for record, expr in self.recordings.items()]
        return {"name": self.name, "rules": rules + [alert.rule() for alert in self.alerts]}


def _scaling() -> ModuleType:
    """The production overlay's KEDA generator (a script, not a package), for its lag sizing."""
    path = REPO / "deploy" / "k8s" / "generate.py"
    spec = importlib.util.spec_from_file_location("modelfleet_k8s_generate", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _policy_number(policy: RiskPolicy, name: str) -> float:
    value = getattr(policy.spec.monitoring, name)
    if value is None:
        raise SystemExit(f"policies/{policy.metadata.name}.yaml sets no monitoring.{name}: an SLO needs one")
    return float(value)


def _percent(share: float) -> str:
    return f"{share * 100:g} %"


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours < 48 else f"{hours:g} h ({hours / 24:.1f} days)"


def canary_bound_seconds(policy: RiskPolicy) -> int:
    """How long a shadow stage or a canary under `policy` may last before it counts as stuck, in
    whole hours.

    Each stage must see `min_requests_per_step` requests of the new version: a shadow stage gets a
    mirrored copy of every request, a canary step of p % gets p % of them. At the model's assumed
    least traffic (`CANARY_MIN_MODEL_RATE`) a stage takes `min_requests_per_step / (share x rate)`
    seconds, and never less than `CANARY_STAGE_FLOOR_SECONDS` (labels and health windows).
    `fleet_deployer_canary_age_seconds` measures the current stage from when the version entered
    it (the shadow stage, or the canary with all its steps; an approval wait in between is people's
    time and not counted), so the bound is the longer of the shadow stage and the sum of the canary
    steps, rounded up to the hour.
    """
    rollout = resolve_policy(policy).rollout

    def stage(share: float) -> float:
        return max(
            rollout.min_requests_per_step / (share * CANARY_MIN_MODEL_RATE), CANARY_STAGE_FLOOR_SECONDS
        )

    shadow = stage(1.0) if rollout.shadow else 0.0
    canary = sum(stage(step / 100) for step in rollout.canary_steps)
    return math.ceil(max(shadow, canary) / 3600) * 3600


def serving_group(policies: dict[RiskClass, RiskPolicy]) -> Group:
    recordings = {
        "fleet:serving_requests:rate5m": (
            'sum by (risk_class) (rate(fleet_serving_requests_total{route="/predict"}[5m]))'
        ),
        "fleet:serving_request_errors:ratio_rate5m": (
            'sum by (risk_class) (rate(fleet_serving_requests_total{route="/predict",code=~"5.."}[5m]))\n'
            "/ fleet:serving_requests:rate5m"
        ),
        "fleet:serving_request_duration_seconds:p99_rate5m": (
            "histogram_quantile(0.99, sum by (risk_class, le) "
            '(rate(fleet_serving_request_duration_seconds_bucket{route="/predict"}[5m])))'
        ),
    }
    alerts = []
    errors, latencies = [], []
    for risk_class in RISK_CLASSES:
        policy = policies[risk_class]
        max_error_rate = _policy_number(policy, "max_error_rate")
        max_p99_ms = _policy_number(policy, "max_latency_p99_ms")
        errors.append(f"{risk_class} {_percent(max_error_rate)}")
        latencies.append(f"{risk_class} {max_p99_ms:g} ms")
        selector = f'{{risk_class="{risk_class}"}}'
        traffic = f"fleet:serving_requests:rate5m{selector} > {MIN_REQUESTS_PER_SECOND:g}"
        source = f"policies/{risk_class}.yaml"
        alerts.append(
            Alert(
                name="FleetServingErrorRateHigh",
                expr=(
                    f"fleet:serving_request_errors:ratio_rate5m{selector} > {max_error_rate:g}\nand {traffic}"
                ),
                duration="10m",
                severity=severity(policy),
                summary=(
                    f"{risk_class}-risk models answer /predict with errors above their "
                    f"{_percent(max_error_rate)} SLO"
                ),
                description=(
                    "{{ $value | humanizePercentage }} of /predict requests to "
                    f"{risk_class}-risk models answered 5xx over 5 minutes, for 10 minutes; "
                    f"{source} allows {_percent(max_error_rate)} (monitoring.max_error_rate)."
                ),
                labels={"risk_class": risk_class},
            )
        )
        alerts.append(
            Alert(
                name="FleetServingLatencyHigh",
                expr=(
                    f"fleet:serving_request_duration_seconds:p99_rate5m{selector} > {max_p99_ms / 1000:g}"
                    f"\nand {traffic}"
                ),
                duration="10m",
                severity=severity(policy),
                summary=(
                    f"{risk_class}-risk models answer /predict slower than their p99 SLO of {max_p99_ms:g} ms"
                ),
                description=(
                    "The p99 latency of /predict for "
                    f"{risk_class}-risk models is {{{{ $value | humanizeDuration }}}} over 5 minutes, "
                    f"for 10 minutes; {source} allows {max_p99_ms:g} ms (monitoring.max_latency_p99_ms)."
                ),
                labels={"risk_class": risk_class},
            )
        )
    when = {
        "FleetServingErrorRateHigh": (
            "share of /predict answers with a 5xx code, per risk class over 5 min, above the class's "
            f"`monitoring.max_error_rate` ({', '.join(errors)}) for 10 min, with at least "
            f"{MIN_REQUESTS_PER_SECOND:g} requests/s"
        ),
        "FleetServingLatencyHigh": (
            "p99 of /predict per risk class over 5 min above the class's `monitoring.max_latency_p99_ms` "
            f"({', '.join(latencies)}) for 10 min, with at least {MIN_REQUESTS_PER_SECOND:g} requests/s"
        ),
    }
    return Group("modelfleet-serving", recordings, alerts, when)


def kafka_group() -> Group:
    k8s = _scaling()
    recordings = {
        "fleet:consumer_lag:sum": "sum by (group, topic) (fleet_consumer_lag)",
        "fleet:consumer_lag:deriv15m": "deriv(fleet:consumer_lag:sum[15m])",
        # A counter series appears with its first dead letter (value 1, no increase() yet): a
        # series absent 15 minutes ago counts with its value.
        "fleet:dead_letters:increase15m": (
            "sum by (topic) (increase(fleet_dead_letters_total[15m])) > 0\n"
            "or sum by (topic) (fleet_dead_letters_total unless fleet_dead_letters_total offset 15m)"
        ),
    }
    alerts, bounds = [], []
    for service, scaling in k8s.SCALING.items():
        # A raw (backquoted) PromQL string: the regular expression's backslashes stay single.
        groups = "|".join(group.replace(".", r"\.") for group in k8s.consumer_groups(service))
        bound = scaling.lag * scaling.maximum
        bounds.append(f"{service} {bound}")
        alerts.append(
            Alert(
                name="FleetConsumerLagHigh",
                expr=(
                    f"fleet:consumer_lag:sum{{group=~`{groups}`}} > {bound}"
                    "\nand fleet:consumer_lag:deriv15m > 0"
                ),
                duration="15m",
                severity="warning",
                summary=f"{service} falls behind on {{{{ $labels.topic }}}}",
                description=(
                    'Consumer group {{ $labels.group }} is {{ $value | printf "%.0f" }} messages behind on '
                    f"{{{{ $labels.topic }}}} and still growing after 15 minutes: more than {bound}, the "
                    f"backlog {scaling.maximum} replicas of {service} clear in about a minute "
                    f"(KEDA lag threshold {scaling.lag} per replica, deploy/k8s/generate.py)."
                ),
                labels={"service": service},
            )
        )
    alerts.append(
        Alert(
            name="FleetDeadLetters",
            expr="fleet:dead_letters:increase15m > 0",
            duration="0m",
            severity="warning",
            summary="Messages of {{ $labels.topic }} go to the dead-letter topic",
            description=(
                "Messages read from {{ $labels.topic }} were dead-lettered in the last 15 minutes "
                '(about {{ $value | printf "%.0f" }}): undecodable, invalid, or their handler kept '
                "failing after its retries. Each is on fleet.dead-letter.v1 with x-dlq-* headers."
            ),
        )
    )
    when = {
        "FleetConsumerLagHigh": (
            "a consumer group's lag on a topic above what its service's most replicas clear in about a "
            f"minute (KEDA's lag per replica x replicas: {', '.join(bounds)}) and still growing over "
            "15 min, for 15 min"
        ),
        "FleetDeadLetters": "any message of a topic dead-lettered in the last 15 min",
    }
    return Group("modelfleet-kafka", recordings, alerts, when)


def loop_group(policies: dict[RiskClass, RiskPolicy]) -> Group:
    recordings = {
        "fleet:monitor_drift_checks:increase1h": "sum(increase(fleet_monitor_drift_checks_total[1h]))",
        "fleet:monitor_drift_detected:increase1h": "sum(increase(fleet_monitor_drift_detected_total[1h]))",
        "fleet:trainer_trainings:increase1h": "sum(increase(fleet_trainer_trainings_total[1h]))",
        "fleet:trainer_trainings_failed:increase1h": (
            'sum(increase(fleet_trainer_trainings_total{outcome="failed"}[1h]))'
        ),
    }
    alerts = [
        Alert(
            name="FleetDriftStorm",
            expr=(
                "fleet:monitor_drift_detected:increase1h / fleet:monitor_drift_checks:increase1h"
                f" > {DRIFT_STORM_SHARE:g}\n"
                f"and fleet:monitor_drift_detected:increase1h >= {DRIFT_STORM_MIN_WINDOWS}"
            ),
            duration="10m",
            severity="warning",
            summary="Many models drift at once: an upstream change, not the world",
            description=(
                "{{ $value | humanizePercentage }} of the drift windows checked in the last hour drifted "
                f"(more than {_percent(DRIFT_STORM_SHARE)}, and at least {DRIFT_STORM_MIN_WINDOWS} windows), "
                "for 10 minutes: the fleet retrains the drifted models on what may be broken inputs."
            ),
        ),
        Alert(
            name="FleetTrainingsFailing",
            expr=(
                "fleet:trainer_trainings_failed:increase1h / fleet:trainer_trainings:increase1h"
                f" > {TRAINING_FAILURE_SHARE:g}\n"
                f"and fleet:trainer_trainings_failed:increase1h >= {TRAINING_FAILURE_MIN}"
            ),
            duration="15m",
            severity="warning",
            summary="Trainings fail",
            description=(
                "{{ $value | humanizePercentage }} of the trainings of the last hour failed (more than "
                f"{_percent(TRAINING_FAILURE_SHARE)}, and at least {TRAINING_FAILURE_MIN}), for 15 minutes: "
                "drifted or decayed models are not being replaced."
            ),
        ),
    ]
    bounds = []
    for risk_class in RISK_CLASSES:
        bound = canary_bound_seconds(policies[risk_class])
        bounds.append(f"{risk_class} {_duration(bound)}")
        rollout = resolve_policy(policies[risk_class]).rollout
        stages = (
            ("shadow, " if rollout.shadow else "")
            + "canary "
            + " -> ".join(f"{step} %" for step in rollout.canary_steps)
        )
        alerts.append(
            Alert(
                name="FleetCanaryStuck",
                expr=(
                    "max by (risk_class) "
                    f'(fleet_deployer_canary_age_seconds{{risk_class="{risk_class}"}}) > {bound}'
                ),
                duration="15m",
                severity="warning",
                summary=(
                    f"A {risk_class}-risk version has been in shadow or canary longer than {_duration(bound)}"
                ),
                description=(
                    f"The oldest {risk_class}-risk shadow or canary in progress entered it "
                    "{{ $value | humanizeDuration }} ago; "
                    f"policies/{risk_class}.yaml's stages ({stages}, "
                    f"{rollout.min_requests_per_step} requests each) take at most {_duration(bound)} "
                    f"at {CANARY_MIN_MODEL_RATE:g} request/s per model."
                ),
                labels={"risk_class": risk_class},
            )
        )
    when = {
        "FleetDriftStorm": (
            f"more than {_percent(DRIFT_STORM_SHARE)} of the drift windows checked in the last hour drifted, "
            f"at least {DRIFT_STORM_MIN_WINDOWS} of them, for 10 min"
        ),
        "FleetTrainingsFailing": (
            f"more than {_percent(TRAINING_FAILURE_SHARE)} of the last hour's trainings failed, at least "
            f"{TRAINING_FAILURE_MIN} of them, for 15 min"
        ),
        "FleetCanaryStuck": (
            "the oldest shadow stage or canary of a risk class has lasted longer than its policy's "
            f"stages take at {CANARY_MIN_MODEL_RATE:g} request/s per model, each step at least "
            f"{_duration(CANARY_STAGE_FLOOR_SECONDS)} ({', '.join(bounds)}), for 15 min"
        ),
    }
    return Group("modelfleet-loop", recordings, alerts, when)


def services_group() -> Group:
    jobs = "|".join(SERVICES)
    alerts = [
        Alert(
            name="FleetServiceNotReady",
            expr=f'fleet_ready{{job=~"{jobs}"}} == 0',
            duration="10m",
            severity="warning",
            summary="{{ $labels.job }} on {{ $labels.instance }} is not ready",
            description=(
                "{{ $labels.job }} on {{ $labels.instance }} has reported fleet_ready 0 for 10 minutes: "
                "it is up but does not consume (Kafka unreachable, its state not rebuilt, or a "
                "dependency missing)."
            ),
        ),
        Alert(
            name="FleetServiceDown",
            expr=f'up{{job=~"{jobs}"}} == 0',
            duration="5m",
            severity="critical",
            summary="Prometheus cannot scrape {{ $labels.job }} on {{ $labels.instance }}",
            description=(
                "The scrape of {{ $labels.job }} on {{ $labels.instance }} (/metrics) has failed for "
                "5 minutes: the process is down, hanging, or unreachable."
            ),
        ),
    ]
    alerts += [
        Alert(
            name="FleetServiceAbsent",
            expr=f'absent(up{{job="{service}"}})',
            duration="10m",
            severity="critical",
            summary=f"Prometheus scrapes no {service} at all",
            description=(
                f"No scrape target of job {service} for 10 minutes: no pod runs, or its Service or "
                "ServiceMonitor (the scrape config) is gone, so none of its alerts can fire."
            ),
            labels={"service": service},
        )
        for service in SERVICES
    ]
    when = {
        "FleetServiceNotReady": "a service's `fleet_ready` is 0 for 10 min",
        "FleetServiceDown": "a service's scrape (`up`) fails for 5 min",
        "FleetServiceAbsent": "no scrape target of a service's job for 10 min",
    }
    return Group("modelfleet-services", {}, alerts, when)


def groups() -> list[Group]:
    policies = load_policies(REPO / "policies")
    return [serving_group(policies), kafka_group(), loop_group(policies), services_group()]


HEADER = """\
# Generated by deploy/prometheus/generate.py from the risk policies ({what}). Do not edit:
# tests/docs/test_prometheus_rules.py fails when this file is stale. Unit tests: make alerts-test.
"""


def _index(all_groups: list[Group]) -> str:
    lines = [
        "# Runbooks of the fleet's alerts",
        "",
        "<!-- Generated by deploy/prometheus/generate.py (make k8s-generate); do not edit. -->",
        "",
        "Every alert of `deploy/prometheus/fleet-rules.yaml` (the production overlay's PrometheusRule",
        "holds the same groups), the numbers it fires at, and its runbook. The numbers come from the",
        "risk policies (`policies/`) and the KEDA scaling (`deploy/k8s/generate.py`); see",
        "[docs/monitoring.md](../monitoring.md#alerts).",
        "",
        "| alert | severity | fires when | runbook |",
        "|---|---|---|---|",
    ]
    for group in all_groups:
        severities: dict[str, set[str]] = {}
        for alert in group.alerts:
            severities.setdefault(alert.name, set()).add(alert.severity)
        for name, when in group.when.items():
            severity = " / ".join(sorted(severities[name]))
            lines.append(f"| `{name}` | {severity} | {when} | [{name}.md]({name}.md) |")
    return "\n".join(lines) + "\n"


#: A safe dumper writing multi-line strings (the longer expressions) as literal blocks, as people
#: write PromQL.
_Dumper: Any = type("_Dumper", (yaml.SafeDumper,), {})
_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def _dump(document: dict[str, Any]) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True))


def rendered() -> dict[Path, str]:
    """Each generated file and its content."""
    all_groups = groups()
    documents = [group.document() for group in all_groups]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "modelfleet",
            "namespace": "modelfleet",
            "labels": {
                "app.kubernetes.io/part-of": "modelfleet",
                "app.kubernetes.io/name": "modelfleet-alerts",
            },
        },
        "spec": {"groups": documents},
    }
    return {
        RULES_FILE: HEADER.format(what="rule_files") + _dump({"groups": documents}),
        OPERATOR_FILE: HEADER.format(what="Prometheus Operator") + "---\n" + _dump(rule),
        RUNBOOKS / "README.md": _index(all_groups),
    }


if __name__ == "__main__":
    raise SystemExit(
        generator_main(rendered, description=__doc__.splitlines()[0], remake="make k8s-generate")
    )
