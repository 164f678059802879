"""The trainer's own Prometheus metrics. Labels are triggers and outcomes: bounded sets.

A training's `reason` is what triggered it: `spec` (a new or changed spec), `new_data` (a new
dataset version it follows), or a retrain request's reason (`RetrainReason`: manual, drift,
decay, slo_breach, new_data, schedule).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter

Outcome = Literal["succeeded", "failed"]


class TrainerMetrics:
    """`fleet_trainer_trainings_total{reason,outcome}`: one per training's published outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.trainings = Counter(
            "fleet_trainer_trainings_total",
            "Trainings ended, by trigger and outcome (succeeded: TrainingFinished; failed: TrainingFailed).",
            ["reason", "outcome"],
            registry=registry,
        )

    def count(self, reason: str, outcome: Outcome) -> None:
        self.trainings.labels(reason, outcome).inc()
