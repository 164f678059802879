"""The evaluator verifies, loads and gates candidates from a file-backed MLflow, and records verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from modelfleet_common.idempotency import InMemoryIdempotencyStore, SqlIdempotencyStore
from modelfleet_common.policies import load_policies
from modelfleet_common.signing import ArtifactSigner
from modelfleet_common.skops_types import HIST_GRADIENT_BOOSTING_TYPES
from modelfleet_common.state import StateEngine
from modelfleet_contracts import ModelEvaluated
from modelfleet_contracts.envelope import Event
from modelfleet_evaluator import evaluation
from modelfleet_evaluator.evaluation import Evaluator
from modelfleet_evaluator.handlers import EvaluatorDeps, evaluate_candidate
from modelfleet_evaluator.mlflow_store import MlflowEvaluationStore

from .conftest import TOPIC_PREFIX, Lab, spec_for

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"
GATES = ["integrity", "safe_load", "metric:roc_auc", "non_inferiority", "latency_p95", "model_size"]
GATES += ["fairness_gap", "robustness"]


class Published(list[Event]):
    async def __call__(self, event: Event) -> None:
        self.append(event)


class Unreachable:
    """A store that must not be touched."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"MLflow was called ({name}) although the event could not be evaluated")


@pytest.fixture
def signer(tmp_path: Path) -> ArtifactSigner:
    return ArtifactSigner.load_or_create(tmp_path / "registry" / "ed25519.pem")


@pytest.fixture
def evaluator(lab: Lab, tmp_path: Path, signer: ArtifactSigner) -> Evaluator:
    trusted = tmp_path / "trusted.keys"
    trusted.write_text(f"# the registry's key\n{signer.public_key_b64}\n")
    return Evaluator(
        store=MlflowEvaluationStore(lab.uri, attempts=1),
        policies=load_policies(POLICY_DIR),
        trusted_keys_file=trusted,
        latency_rows=5,
        topic_prefix=TOPIC_PREFIX,
    )


def gate(verdict: ModelEvaluated, name: str) -> Any:
    [found] = [g for g in verdict.gates if g.gate == name]
    return found


def test_a_sound_candidate_passes_every_gate_and_its_report_is_on_its_run(
    lab: Lab, evaluator: Evaluator, model_name: str
) -> None:
    event = lab.train(model_name)

    verdict = evaluator.evaluate(event)

    assert verdict.passed, verdict.gates
    assert [g.gate for g in verdict.gates] == GATES
    assert gate(verdict, "non_inferiority").detail == "no champion yet"
    assert gate(verdict, "metric:roc_auc").value > 0.8
    assert verdict.champion_version is None
    assert verdict.artifact_digest == event.artifact_digest
    assert verdict.causation_id == event.event_id
    assert verdict.correlation_id == event.correlation_id
    assert verdict.report_uri == f"runs:/{event.run_id}/evaluation/report.md"
    assert verdict.lineage == {
        "dataset": "machines",
        "dataset_version": "d" * 64,
        "template": "tabular-classifier",
        "template_version": "1",
        "spec_revision": "rev-1",
        "code_version": "test",
        "environment_hash": "e" * 64,
        "run_id": event.run_id,
        "owner": "reliability@example.com",
        "risk_class": "low",
        "purpose": "Predict failures.",
    }
    run = lab.client.get_run(event.run_id)
    assert run.data.tags["modelfleet.verdict"] == "passed"
    assert run.data.metrics["eval.metric.roc_auc"] == pytest.approx(gate(verdict, "metric:roc_auc").value)
    stored = {Path(a.path).name for a in lab.client.list_artifacts(event.run_id, "evaluation")}
    assert {"report.md", "report.png", "verdict.json", "holdout.parquet"} <= stored
    report = lab.artifact_file(event, "evaluation/report.md").read_text()
    assert report.index("**Verdict: PASSED**") < report.index("| gate |") < report.index("## Lineage")
    assert "![diagnostics and gate headroom](report.png)" in report
    assert lab.artifact_file(event, "evaluation/report.png").read_bytes().startswith(b"\x89PNG")


def test_a_tampered_model_fails_integrity_and_is_never_loaded(
    lab: Lab, evaluator: Evaluator, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = lab.train(model_name)
    stored = lab.artifact_file(event, "model/model.skops")
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))

    def must_not_load(directory: Path) -> None:
        raise AssertionError(f"loaded {directory} although its digest did not match")

    monkeypatch.setattr(evaluation, "load_skops_model", must_not_load)
    verdict = evaluator.evaluate(event)

    assert not verdict.passed
    [integrity] = verdict.gates
    assert integrity.gate == "integrity"
    assert "differs from the trainer's" in integrity.detail
    assert lab.client.get_run(event.run_id).data.tags["modelfleet.verdict"] == "failed"


def test_a_candidate_as_good_as_the_signed_champion_passes_non_inferiority(
    lab: Lab, evaluator: Evaluator, model_name: str, signer: ArtifactSigner
) -> None:
    version = lab.crown(lab.train(model_name), signer)

    verdict = evaluator.evaluate(lab.train(model_name))

    assert verdict.champion_version == version
    non_inferiority = gate(verdict, "non_inferiority")
    assert non_inferiority.passed, non_inferiority.detail
    assert non_inferiority.value == pytest.approx(0.0)
    assert f"champion v{version}" in non_inferiority.detail


def test_a_candidate_clearly_worse_than_the_champion_fails_non_inferiority(
    lab: Lab, evaluator: Evaluator, model_name: str, signer: ArtifactSigner
) -> None:
    lab.crown(lab.train(model_name), signer)
    stump = HistGradientBoostingClassifier(max_iter=1, max_depth=1, random_state=0)

    verdict = evaluator.evaluate(
        lab.train(model_name, stump, trusted_types=list(HIST_GRADIENT_BOOSTING_TYPES))
    )

    assert not verdict.passed
    non_inferiority = gate(verdict, "non_inferiority")
    assert not non_inferiority.passed
    assert non_inferiority.value < non_inferiority.threshold
    assert gate(verdict, "safe_load").passed


def test_a_champion_signed_by_an_untrusted_key_fails_non_inferiority_with_the_reason(
    lab: Lab, evaluator: Evaluator, model_name: str, tmp_path: Path
) -> None:
    stranger = ArtifactSigner.load_or_create(tmp_path / "stranger.pem")
    lab.crown(lab.train(model_name), stranger)

    verdict = evaluator.evaluate(lab.train(model_name))

    non_inferiority = gate(verdict, "non_inferiority")
    assert not non_inferiority.passed
    assert f"signing key '{stranger.key_id}' is not trusted" in non_inferiority.detail


@pytest.mark.parametrize(
    "forgery",
    [{"signed_for": "another-model"}, {"topic_prefix": "another-fleet."}],
    ids=["signed for another model", "signed in another fleet"],
)
def test_a_champion_whose_signature_binds_something_else_fails_non_inferiority(
    lab: Lab, evaluator: Evaluator, model_name: str, signer: ArtifactSigner, forgery: dict[str, str]
) -> None:
    version = lab.crown(lab.train(model_name), signer, **forgery)

    verdict = evaluator.evaluate(lab.train(model_name))

    non_inferiority = gate(verdict, "non_inferiority")
    assert not non_inferiority.passed
    assert f"champion v{version} cannot be compared with: signature does not bind" in non_inferiority.detail


def test_an_unsigned_champion_fails_non_inferiority(
    lab: Lab, evaluator: Evaluator, model_name: str, signer: ArtifactSigner
) -> None:
    version = lab.crown(lab.train(model_name), signer)
    lab.client.delete_model_version_tag(model_name, version, "modelfleet.signature")

    verdict = evaluator.evaluate(lab.train(model_name))

    assert "carries no registry signature" in gate(verdict, "non_inferiority").detail


def test_boosted_regression_trees_with_declared_trusted_types_are_gated_on_r2(
    lab: Lab, evaluator: Evaluator, model_name: str
) -> None:
    spec = spec_for(model_name, target="load")
    event = lab.train(
        model_name,
        HistGradientBoostingRegressor(max_iter=50, max_depth=4, random_state=0),
        task="regression",
        spec=spec,
        trusted_types=list(HIST_GRADIENT_BOOSTING_TYPES),
    )

    verdict = evaluator.evaluate(event)

    assert gate(verdict, "metric:r2").value > 0.5
    assert gate(verdict, "metric:r2").threshold == 0.3
    assert gate(verdict, "robustness").value is not None


def test_an_event_without_holdout_or_spec_fails_on_its_inputs_without_touching_mlflow(lab: Lab) -> None:
    event = lab.train("incomplete-inputs").model_copy(update={"holdout_uri": None, "spec": None})
    evaluator = Evaluator(store=Unreachable(), policies=load_policies(POLICY_DIR))  # type: ignore[arg-type]

    verdict = evaluator.evaluate(event)

    assert not verdict.passed
    [inputs] = verdict.gates
    assert inputs.gate == "inputs"
    assert "lacks spec, holdout_uri" in inputs.detail


def test_a_missing_model_artifact_fails_on_its_inputs(
    lab: Lab, evaluator: Evaluator, model_name: str
) -> None:
    event = lab.train(model_name)
    event = event.model_copy(update={"model_uri": f"runs:/{event.run_id}/no-such-model"})

    verdict = evaluator.evaluate(event)

    [inputs] = verdict.gates
    assert inputs.gate == "inputs"
    assert "no-such-model does not exist" in inputs.detail


async def test_a_redelivered_event_publishes_one_verdict_even_after_local_state_is_lost(
    lab: Lab, evaluator: Evaluator, model_name: str, tmp_path: Path
) -> None:
    event = lab.train(model_name)
    published = Published()
    handled = SqlIdempotencyStore(StateEngine.sqlite(tmp_path / "state.sqlite"), ttl_seconds=3600)
    deps = EvaluatorDeps(evaluator, handled, published)

    await evaluate_candidate(event, deps)
    await evaluate_candidate(event, deps)
    assert len(published) == 1

    forgetful = EvaluatorDeps(evaluator, InMemoryIdempotencyStore(), published)
    await evaluate_candidate(event, forgetful)
    first, again = published
    assert again == first  # the verdict recorded on the run, same event id: downstream dedupes it


def test_an_event_with_a_malformed_run_id_fails_on_its_inputs(lab: Lab, model_name: str) -> None:
    event = lab.train(model_name).model_copy(update={"run_id": "../../etc"})
    evaluator = Evaluator(store=Unreachable(), policies=load_policies(POLICY_DIR))  # type: ignore[arg-type]

    [inputs] = evaluator.evaluate(event).gates

    assert "is not an MLflow run id" in inputs.detail


def test_latency_keeps_each_rows_fastest_time_so_a_busy_machine_does_not_fail_the_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pandas as pd

    clock = {"now": 0.0, "calls": 0}

    def predict(row: pd.DataFrame) -> None:
        # The warm-up and the whole first round wait 50 ms for a CPU; later rounds take 2 ms.
        clock["calls"] += 1
        clock["now"] += 0.050 if clock["calls"] <= 4 else 0.002

    monkeypatch.setattr(evaluation.time, "perf_counter", lambda: clock["now"])
    latencies = evaluation.measure_latency_ms(predict, pd.DataFrame({"x": [1, 2, 3]}), rows=3, rounds=3)
    assert latencies == pytest.approx([2.0, 2.0, 2.0])
