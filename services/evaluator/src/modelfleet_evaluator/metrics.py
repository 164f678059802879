"""The evaluator's own Prometheus metrics. Labels are risk classes and verdicts: bounded sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from modelfleet_contracts import ModelEvaluated

#: A candidate whose lineage names no risk class (a training event without its spec).
UNKNOWN = "unknown"


class EvaluatorMetrics:
    """`fleet_evaluator_evaluations_total{risk_class,verdict}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "fleet_evaluator_evaluations_total",
            "Candidates evaluated and their verdict (passed or failed every gate of their risk class).",
            ["risk_class", "verdict"],
            registry=registry,
        )

    def count(self, verdict: ModelEvaluated) -> None:
        risk_class = verdict.lineage.get("risk_class") or UNKNOWN
        self.evaluations.labels(risk_class, "passed" if verdict.passed else "failed").inc()
