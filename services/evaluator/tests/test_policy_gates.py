"""The evaluator holds a candidate to its effective gates: a spec's tightening counts, a loosening of a
floor does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelfleet_common.policies import load_policies
from modelfleet_contracts import ModelEvaluated
from modelfleet_contracts.specs import GatePolicy, MetricThreshold
from modelfleet_evaluator.evaluation import Evaluator
from modelfleet_evaluator.mlflow_store import MlflowEvaluationStore

from .conftest import Lab, spec_for

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def evaluator(lab: Lab) -> Evaluator:
    return Evaluator(
        store=MlflowEvaluationStore(lab.uri, attempts=1), policies=load_policies(POLICY_DIR), latency_rows=5
    )


def gate(verdict: ModelEvaluated, name: str) -> Any:
    [found] = [g for g in verdict.gates if g.gate == name]
    return found


def test_a_spec_tightening_a_gate_is_held_to_its_tighter_value(
    lab: Lab, evaluator: Evaluator, model_name: str
) -> None:
    strict = GatePolicy(
        metric_thresholds=[MetricThreshold(metric="roc_auc", min=0.999)], max_latency_p95_ms=60_000
    )
    event = lab.train(model_name, spec=spec_for(model_name, gates=strict))

    verdict = evaluator.evaluate(event)

    assert gate(verdict, "metric:roc_auc").threshold == 0.999
    assert not gate(verdict, "metric:roc_auc").passed
    assert not verdict.passed


def test_a_spec_loosening_a_floored_gate_is_held_to_the_floor(
    lab: Lab, evaluator: Evaluator, model_name: str
) -> None:
    # `modelfleet apply` refuses this spec; one published around it gets the high policy's floors.
    loose = GatePolicy(
        metric_thresholds=[MetricThreshold(metric="roc_auc", min=0.1)], max_latency_p95_ms=60_000
    )
    event = lab.train(model_name, spec=spec_for(model_name, gates=loose, risk_class="high"))

    verdict = evaluator.evaluate(event)

    assert gate(verdict, "metric:roc_auc").threshold == 0.7
    assert gate(verdict, "latency_p95").threshold == 100
