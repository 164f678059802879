"""The assembly line on real Kafka, MLflow and Ray: one YAML file in, signed registry versions out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet_contracts import (
    DatasetVersionCreated,
    DatasetVersionRejected,
    ModelEvaluated,
    ModelRegistered,
    TrainingFailed,
    TrainingFinished,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import (
    DATASET_REJECTIONS,
    DATASET_VERSIONS,
    MODEL_EVALUATIONS,
    MODEL_REGISTRATIONS,
    TRAINING_FAILED,
    TRAINING_FINISHED,
)

from .assembly_data import model_spec, write_fleet
from .fleet import RunningFleet, SecuredBroker, running_fleet

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "trainer", "evaluator", "registry")


@pytest.fixture(scope="module")
def line(
    kafka_broker: SecuredBroker, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFleet]:
    root = tmp_path_factory.mktemp("assembly-line")
    with running_fleet(root, kafka_broker, mlflow_uri, SERVICES) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def applied(line: RunningFleet) -> dict[str, dict[str, Any]]:
    """The five specs, applied once for the module."""
    specs = write_fleet(line.root / "fleet", line.suffix)
    done = line.cli("apply", str(line.root / "fleet"))
    assert done.returncode == 0, done.stdout + done.stderr
    return specs


def _of(events: list[Event], model: str) -> list[Any]:
    return [e for e in events if getattr(e, "model", None) == model]


async def test_five_specs_all_reach_registered_with_full_lineage(
    line: RunningFleet, applied: dict[str, dict[str, Any]]
) -> None:
    registered = await line.events(
        MODEL_REGISTRATIONS, until=lambda found: {e.model for e in found} >= set(applied)
    )
    versions = await line.events(DATASET_VERSIONS, until=lambda found: len(found) >= 4)
    finished = await line.events(TRAINING_FINISHED, until=lambda found: len(found) >= 5)
    dataset_version = {v.dataset: v.version for v in versions if isinstance(v, DatasetVersionCreated)}

    for model, spec in applied.items():
        [registration] = _of(registered, model)
        [training] = _of(finished, model)
        assert isinstance(registration, ModelRegistered)
        assert isinstance(training, TrainingFinished)
        assert registration.passed_evaluation, f"{model} failed its gates: {registration}"
        assert registration.correlation_id == training.correlation_id

        done = line.cli("lineage", model, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        [link] = json.loads(done.stdout)
        dataset = spec["spec"]["dataset"]["name"]
        pipeline = spec["spec"]["pipeline"]
        assert link["dataset"] == dataset
        assert link["dataset_version"] == dataset_version[dataset]
        assert link["run_id"] == training.run_id == registration.run_id
        assert link["template"] == f"{pipeline['template']}@{pipeline['version']}"
        assert link["spec_revision"] == training.spec_revision
        assert link["verdict"] == "passed"
        assert link["digest"] == registration.digest == training.artifact_digest
        assert "challenger" in link["aliases"]
        assert "champion" not in link["aliases"]
        assert link["code_version"]
        assert link["environment_hash"]

        run = line.mlflow.get_run(training.run_id)
        [data_input] = run.inputs.dataset_inputs
        # MLflow caps dataset digests at 36 characters; the full content hash is an input tag.
        assert dataset_version[dataset].startswith(data_input.dataset.digest)
        assert {t.key: t.value for t in data_input.tags}["modelfleet.dataset_version"] == dataset_version[
            dataset
        ]
        report = link["report_uri"]
        assert report.endswith("evaluation/report.md")

    verified = line.cli("verify", f"cancer-screening{line.suffix}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified" in verified.stdout

    status = line.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {row["model"]: row for row in json.loads(status.stdout)}
    assert {rows[m]["stage"] for m in applied} == {"challenger"}
    assert rows[f"cancer-screening{line.suffix}"]["risk_class"] == "low"


async def test_applying_the_same_files_again_changes_nothing(
    line: RunningFleet, applied: dict[str, dict[str, Any]]
) -> None:
    again = line.cli("apply", str(line.root / "fleet"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to apply: 0 created, 0 configured, 9 unchanged" in again.stdout


async def test_an_unknown_template_and_a_bad_hyperparameter_end_as_clear_permanent_failures(
    line: RunningFleet, applied: dict[str, dict[str, Any]]
) -> None:
    features = ["vibration", "temperature"]
    broken = [
        model_spec(f"sensor-unknown-template{line.suffix}", "sensors", features, "fails", "deep-magic", "9"),
        model_spec(
            f"sensor-bad-c{line.suffix}", "sensors", features, "fails", "tabular-classifier", "1", {"C": -1}
        ),
    ]
    folder = line.root / "broken"
    folder.mkdir()
    (folder / "broken.yaml").write_text(yaml.safe_dump_all(broken, sort_keys=False))
    done = line.cli("apply", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr

    failed = await line.events(
        TRAINING_FAILED,
        until=lambda found: (
            {e.model for e in found}
            >= {f"sensor-unknown-template{line.suffix}", f"sensor-bad-c{line.suffix}"}
        ),
    )
    [unknown] = _of(failed, f"sensor-unknown-template{line.suffix}")
    [bad] = _of(failed, f"sensor-bad-c{line.suffix}")
    assert isinstance(unknown, TrainingFailed)
    assert isinstance(bad, TrainingFailed)
    assert unknown.failure == bad.failure == "permanent"
    assert "deep-magic" in unknown.message
    assert "tabular-classifier" in unknown.message  # the known templates are listed
    assert "C" in bad.message
    assert bad.error_type != unknown.error_type


async def test_a_bad_batch_is_rejected_per_column_and_quarantined(line: RunningFleet) -> None:
    folder = line.root / "bad-batch"
    folder.mkdir()
    dataset = {
        "apiVersion": "modelfleet/v1",
        "kind": "Dataset",
        "metadata": {"name": "meters"},
        "spec": {
            "columns": [
                {"name": "meter", "type": "string", "categories": ["a", "b"]},
                {"name": "kwh", "type": "float", "min": 0},
            ]
        },
    }
    (folder / "meters.yaml").write_text(yaml.safe_dump(dataset))
    assert line.cli("apply", str(folder)).returncode == 0
    batch = folder / "bad.csv"
    batch.write_text("meter,kwh\na,1.5\nz,2.0\nb,-4\nb,\n")

    done = line.cli("ingest", "meters", str(batch), "--timeout", "90")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "batch rejected" in done.stdout

    rejections = await line.events(
        DATASET_REJECTIONS, until=lambda found: any(getattr(e, "dataset", "") == "meters" for e in found)
    )
    [rejection] = [e for e in rejections if getattr(e, "dataset", "") == "meters"]
    assert isinstance(rejection, DatasetVersionRejected)
    codes = {(p.column, p.code) for p in rejection.problems}
    assert ("meter", "unknown_category") in codes
    assert ("kwh", "out_of_range") in codes
    assert ("kwh", "null_not_allowed") in codes
    assert Path(rejection.quarantine_uri).read_bytes() == batch.read_bytes()


async def test_a_modified_artifact_fails_signature_verification(
    line: RunningFleet, applied: dict[str, dict[str, Any]]
) -> None:
    model = f"sensor-failure-lr{line.suffix}"
    registered = await line.events(MODEL_REGISTRATIONS, until=lambda found: model in {e.model for e in found})
    [registration] = _of(registered, model)
    assert line.cli("verify", model, registration.version).returncode == 0

    # An attacker with write access to the artifact store swaps the model file.
    model_dir = Path(line.mlflow.download_artifacts(registration.run_id, "model", str(line.root)))
    [weights] = [p for p in model_dir.iterdir() if p.suffix == ".skops"]
    weights.write_bytes(weights.read_bytes() + b"\x00")
    line.mlflow.log_artifact(registration.run_id, str(weights), "model")

    done = line.cli("verify", model, registration.version)
    assert done.returncode == 1
    assert "NOT VERIFIED" in done.stdout
    assert "differs from the signed" in done.stdout


async def test_redelivering_a_training_finished_event_creates_no_second_version(
    line: RunningFleet, applied: dict[str, dict[str, Any]]
) -> None:
    model = f"heating-energy{line.suffix}"
    await line.events(MODEL_REGISTRATIONS, until=lambda found: model in {e.model for e in found})
    finished_topic = line.namer.topic(TRAINING_FINISHED)
    records = await line.kafka.read(finished_topic, until=lambda found: len(found) >= 5)
    [record] = [r for r in records if TRAINING_FINISHED.parse(r.value).model == model]  # type: ignore[attr-defined]
    evaluator = line.services["evaluator"]
    handled = evaluator.metric("fleet_events_handled_total", topic=finished_topic)

    # The same record again, as Kafka redelivers it after a lost commit.
    await line.kafka.publish(
        finished_topic, record.value, key=record.key, headers={k: v.decode() for k, v in record.headers}
    )
    evaluator.wait_for_metric("fleet_events_handled_total", handled + 1, timeout=120, topic=finished_topic)

    evaluations = await line.events(MODEL_EVALUATIONS, until=lambda found: len(_of(found, model)) >= 1)
    [evaluation] = _of(evaluations, model)
    assert isinstance(evaluation, ModelEvaluated)

    # And the evaluation redelivered to the registry: still one version.
    registry = line.services["registry"]
    evaluations_topic = line.namer.topic(MODEL_EVALUATIONS)
    before = registry.metric("fleet_events_handled_total", topic=evaluations_topic)
    await line.kafka.publish(evaluations_topic, evaluation.model_dump_json().encode(), key=model.encode())
    registry.wait_for_metric("fleet_events_handled_total", before + 1, timeout=120, topic=evaluations_topic)
    assert len(line.mlflow.search_model_versions(f"name='{model}'")) == 1
