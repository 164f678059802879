"""`modelfleet audit` tells why every decision about a model was taken, by whom and when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from modelfleet_cli import main
from modelfleet_cli.audit import audit_trail
from modelfleet_cli.exit_codes import ExitCode
from modelfleet_cli.main import app
from modelfleet_contracts import (
    DatasetVersionCreated,
    DeploymentChanged,
    DriftDetected,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelSpec,
    ModelSpecSubmitted,
    RetrainRequested,
    TrainingFinished,
    TrainingStarted,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.evaluation import GateResult
from modelfleet_contracts.monitoring import FeatureDrift, ModelHealthReported
from modelfleet_contracts.rollout import RouteTarget

MODEL = "pump-7"
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
RUN = "a1b2c3d4e5f6a7b8"
LINEAGE = {
    "model": MODEL,
    "spec_revision": "rev-1",
    "dataset": "pumps",
    "dataset_version": "f" * 64,
    "template": "tabular-classifier",
    "template_version": "1",
}
runner = CliRunner()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def target(version: str) -> RouteTarget:
    return RouteTarget(
        version=version,
        model_uri=f"models:/{MODEL}/{version}",
        digest="d" * 64,
        signature="s",
        signing_key_id="k1",
    )


def spec_event() -> ModelSpecSubmitted:
    document = ModelSpec.model_validate(
        {
            "apiVersion": "modelfleet/v1",
            "kind": "ModelSpec",
            "metadata": {"name": MODEL, "owner": "ops@example.com", "risk_class": "low"},
            "spec": {
                "dataset": {"name": "pumps"},
                "features": ["temperature", "vibration_rms"],
                "target": "failed",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
            },
        }
    )
    return ModelSpecSubmitted(
        producer="cli:ana", model=MODEL, revision="rev-1", spec=document, occurred_at=T0
    )


def drift_event() -> DriftDetected:
    return DriftDetected(
        producer="monitor",
        occurred_at=at(10),
        model=MODEL,
        version="2",
        window_start=at(0),
        window_end=at(10),
        dataset_version="e" * 64,
        rows=500,
        drift_share=2 / 3,
        drift_share_threshold=0.3,
        features=[
            FeatureDrift(feature="temperature", method="psi", statistic=0.41, threshold=0.2, drifted=True),
            FeatureDrift(feature="vibration_rms", method="psi", statistic=0.33, threshold=0.2, drifted=True),
            FeatureDrift(feature="pressure", method="psi", statistic=0.05, threshold=0.2, drifted=False),
        ],
    )


def evaluation(drift: Event, *, passed: bool, minutes: int = 40) -> ModelEvaluated:
    gates = [
        GateResult(gate="metric:roc_auc", passed=passed, value=0.91 if passed else 0.64, threshold=0.7),
        GateResult(
            gate="non_inferiority",
            passed=passed,
            value=0.004 if passed else -0.05,
            threshold=-0.01,
            detail="" if passed else "0.05 worse than champion v2",
        ),
        GateResult(gate="latency_p95", passed=True, value=12, threshold=50),
    ]
    return ModelEvaluated(
        producer="evaluator",
        occurred_at=at(minutes),
        model=MODEL,
        run_id=RUN,
        model_uri=f"runs:/{RUN}/model",
        spec_revision="rev-1",
        passed=passed,
        gates=gates,
        champion_version="2",
        **drift.caused(),
    )


def whole_chain() -> list[Event]:
    """Drift on v2 → retrain → v3 trained on feedback data → canary → promoted."""
    spec = spec_event()
    feedback = DatasetVersionCreated(
        producer="ingest",
        occurred_at=at(5),
        dataset="pumps",
        version="f" * 64,
        uri="file:///data/pumps/f.parquet",
        row_count=1200,
        columns=[],
        source_uri="feedback:pump-7",
        origin="feedback",
        feedback_rows=200,
    )
    drift = drift_event()
    retrain = RetrainRequested(
        producer="trainer",
        occurred_at=at(11),
        model=MODEL,
        reason="drift",
        detail="drift share 0.67",
        **drift.caused(),
    )
    started = TrainingStarted(
        producer="trainer", occurred_at=at(12), run_id=RUN, **LINEAGE, **retrain.caused()
    )
    finished = TrainingFinished(
        producer="trainer",
        occurred_at=at(30),
        run_id=RUN,
        model_uri=f"runs:/{RUN}/model",
        metrics={"roc_auc": 0.91},
        duration_seconds=1080.5,
        code_version="1.0.0",
        environment_hash="env",
        **LINEAGE,
        **started.caused(),
    )
    evaluated = evaluation(finished, passed=True)
    registered = ModelRegistered(
        producer="registry",
        occurred_at=at(41),
        model=MODEL,
        version="3",
        run_id=RUN,
        model_uri=f"models:/{MODEL}/3",
        digest="d" * 64,
        signature="s",
        signing_key_id="k1",
        passed_evaluation=True,
        **evaluated.caused(),
    )
    table = {"producer": "deployer", "model": MODEL, "champion": target("2")}
    canary = DeploymentChanged(
        **table,
        occurred_at=at(42),
        revision=7,
        stage="canary",
        challenger=target("3"),
        challenger_weight=0.5,
        reason="v3 passed evaluation",
        **registered.caused(),
    )
    # Same routing, new bookkeeping: nothing a reader would see changed.
    bookkeeping = canary.model_copy(update={"revision": 8, "occurred_at": at(50), "event_id": uuid4()})
    health = ModelHealthReported(
        producer="monitor",
        occurred_at=at(55),
        model=MODEL,
        version="3",
        window_start=at(45),
        window_end=at(55),
        route="challenger",
        requests=400,
        errors=0,
    )
    promoted_at = at(60)
    promoted_table = DeploymentChanged(
        producer="deployer",
        model=MODEL,
        occurred_at=promoted_at,
        revision=9,
        stage="promoted",
        champion=target("3"),
        reason="canary passed",
        **canary.caused(),
    )
    promotion = ModelPromoted(
        producer="deployer",
        occurred_at=promoted_at,
        model=MODEL,
        version="3",
        previous_version="2",
        decided_by="deployer",
        reason="canary 50%: error rate 0.000 ≤ 0.010 over 400 requests",
        **canary.caused(),
    )
    other_model = RetrainRequested(producer="cli:bo", occurred_at=at(20), model="pump-8", reason="manual")
    # Live feedback of the shared dataset that no training of this model used: not part of its trail.
    unused = feedback.model_copy(update={"version": "e" * 64, "occurred_at": at(4), "event_id": uuid4()})
    return [
        spec,
        unused,
        feedback,
        drift,
        retrain,
        started,
        other_model,
        finished,
        evaluated,
        registered,
        canary,
        bookkeeping,
        health,
        promoted_table,
        promotion,
    ]


def test_the_trail_follows_drift_through_retrain_and_canary_to_the_promotion() -> None:
    trail = audit_trail(MODEL, whole_chain())

    assert [entry.what for entry in trail] == [
        "spec applied (rev rev-1)",
        "feedback data pumps@ffffffffffff",
        "drift detected",
        "retrain requested",
        "training started",
        "training finished",
        "evaluation passed",
        "registered v3",
        "canary v3 50%",
        "routing: promoted",
        "promoted v3",
    ]
    by_what = {entry.what: entry for entry in trail}
    drift = by_what["drift detected"]
    assert drift.why == (
        "drift share 0.67 ≥ 0.30 over 500 rows: temperature psi 0.41 > 0.20, vibration_rms psi 0.33 > 0.20"
    )
    assert (drift.who, drift.version) == ("monitor", "2")
    assert "200 from live feedback" in by_what["feedback data pumps@ffffffffffff"].why
    assert by_what["retrain requested"].caused_by == "drift detected"
    assert by_what["retrain requested"].who == "trainer"
    assert by_what["retrain requested"].why == "drift: drift share 0.67"
    assert by_what["training started"].caused_by == "retrain requested"
    assert "roc_auc 0.91" in by_what["training finished"].why
    assert by_what["evaluation passed"].why.startswith("all 3 gates passed against champion v2")
    assert by_what["registered v3"].caused_by == "evaluation passed"
    canary = by_what["canary v3 50%"]
    assert canary.why == "champion v2; challenger v3 at 50%; v3 passed evaluation"
    assert (canary.caused_by, canary.version) == ("registered v3", "3")
    promoted = by_what["promoted v3"]
    assert (promoted.caused_by, promoted.who, promoted.version) == ("canary v3 50%", "deployer", "3")
    assert "error rate 0.000 ≤ 0.010 over 400 requests" in promoted.why
    assert "replaces v2" in promoted.why
    assert len({entry.correlation_id for entry in trail[2:]}) == 1


def test_a_failed_evaluation_says_which_gates_failed_and_with_what_values() -> None:
    drift = drift_event()
    trail = audit_trail(MODEL, [spec_event(), drift, evaluation(drift, passed=False)])

    failed = trail[-1]
    assert failed.what == "evaluation failed"
    assert failed.why == (
        "not promoted: 2 of 3 gates failed against champion v2: "
        "metric:roc_auc 0.64 (threshold 0.70); "
        "non_inferiority -0.05 (threshold -0.01): 0.05 worse than champion v2"
    )
    assert "latency_p95" not in failed.why


def test_a_human_decision_names_the_person_behind_the_service() -> None:
    promotion = ModelPromoted(
        producer="deployer", model=MODEL, version="3", decided_by="cli:ana", reason="manual promotion"
    )
    [entry] = audit_trail(MODEL, [promotion])
    assert entry.who == "deployer (decided by cli:ana)"


def test_data_versions_of_the_dataset_that_neither_fed_back_nor_trained_the_model_are_left_out() -> None:
    unrelated = DatasetVersionCreated(
        producer="ingest",
        dataset="pumps",
        version="0" * 64,
        uri="u",
        row_count=10,
        columns=[],
        source_uri="s",
    )
    assert [entry.what for entry in audit_trail(MODEL, [spec_event(), unrelated])] == [
        "spec applied (rev rev-1)"
    ]


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    events = whole_chain()

    async def read_audit_events(settings: object) -> list[Event]:
        return events

    monkeypatch.setattr(main, "read_audit_events", read_audit_events)
    return events


def test_audit_prints_the_whole_chain_as_a_table_without_cutting_the_numbers(fleet: list[Event]) -> None:
    result = runner.invoke(app, ["audit", MODEL], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "promoted v3" in flat
    assert "vibration_rms psi 0.33 > 0.20" in flat
    assert "pump-8" not in flat


def test_audit_json_lists_every_entry_with_iso_times_and_causes(fleet: list[Event]) -> None:
    result = runner.invoke(app, ["audit", MODEL, "--json", "--since", "2025-06-01T08:30:00"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [entry["what"] for entry in entries] == [
        "training finished",
        "evaluation passed",
        "registered v3",
        "canary v3 50%",
        "routing: promoted",
        "promoted v3",
    ]
    assert entries[0]["at"] == "2025-06-01T08:30:00+00:00"
    # Causes before --since are still named: the window hides entries, not links.
    assert entries[0]["caused_by"] == "training started"
    assert entries[-1]["caused_by"] == "canary v3 50%"
    assert entries[-1]["event_id"] == str(fleet[-1].event_id)


def test_audit_of_an_unknown_model_says_so_on_stderr_and_exits_not_found(fleet: list[Event]) -> None:
    result = runner.invoke(
        app, ["audit", "pump-9"], env={"COLUMNS": "250", "FLEET_KAFKA_BOOTSTRAP": "kafka:9092"}
    )
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no events for model pump-9 on kafka:9092" in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_audit_refuses_a_since_that_is_not_a_time(fleet: list[Event]) -> None:
    result = runner.invoke(app, ["audit", MODEL, "--since", "yesterday"], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "is not an ISO 8601 time" in result.output
