"""`modelfleet apply` refuses a spec that loosens a floor of its risk policy, naming field and floor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelfleet_cli.main import app
from modelfleet_cli.manifests import check_policies, load_path
from modelfleet_common.policies import load_policies

REPO = Path(__file__).resolve().parents[3]
POLICIES = load_policies(REPO / "policies")
runner = CliRunner()


def spec_file(tmp_path: Path, risk_class: str, **body: object) -> Path:
    document = {
        "apiVersion": "modelfleet/v1",
        "kind": "ModelSpec",
        "metadata": {"name": "triage", "owner": "clinic@example.com", "risk_class": risk_class},
        "spec": {
            "dataset": {"name": "patients"},
            "features": ["age"],
            "target": "sick",
            "pipeline": {"template": "tabular-classifier", "version": "1"},
        }
        | body,
    }
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_critical_spec_without_its_required_approval_is_refused_naming_the_field_and_the_floor(
    tmp_path: Path,
) -> None:
    manifest = load_path(spec_file(tmp_path, "critical", rollout={"requires_approval": False}))
    check_policies(manifest, POLICIES)
    assert manifest.models == []
    [problem] = manifest.problems
    assert problem.field == "[triage.yaml#1] spec.rollout.requires_approval"
    assert problem.message.startswith("false loosens the critical risk policy's floor true")


def test_every_loosened_floor_of_a_spec_is_a_problem_of_its_own(tmp_path: Path) -> None:
    manifest = load_path(
        spec_file(
            tmp_path,
            "high",
            gates={"metric_thresholds": [{"metric": "roc_auc", "min": 0.5}]},
            rollout={"shadow": False},
            approvers=["intern"],
        )
    )
    check_policies(manifest, POLICIES)
    assert sorted(p.field.split(" ")[1] for p in manifest.problems) == [
        "spec.approvers",
        "spec.gates.metric_thresholds[roc_auc].min",
        "spec.rollout.shadow",
    ]
    assert any(
        '["intern"] loosens the high risk policy\'s floor ["risk-officer", "head-of-ml"]' in p.message
        for p in manifest.problems
    )


def test_a_spec_that_tightens_its_floors_is_applied(tmp_path: Path) -> None:
    manifest = load_path(
        spec_file(
            tmp_path,
            "critical",
            gates={"metric_thresholds": [{"metric": "roc_auc", "min": 0.95}], "max_latency_p95_ms": 20},
            rollout={"canary_steps": [1, 2, 5, 25, 50, 100], "min_live_labels": 500},
            approvers=["head-of-ml"],
        )
    )
    check_policies(manifest, POLICIES)
    assert manifest.problems == []
    assert [m.spec.metadata.name for m in manifest.models] == ["triage"]


def test_canary_steps_that_do_not_increase_are_refused_at_apply(tmp_path: Path) -> None:
    manifest = load_path(spec_file(tmp_path, "low", rollout={"canary_steps": [50, 10]}))
    check_policies(manifest, POLICIES)
    [problem] = manifest.problems
    assert "must strictly increase" in problem.message


def test_apply_refuses_the_file_before_publishing_anything(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "critical", rollout={"requires_approval": False})
    result = runner.invoke(
        app,
        ["apply", str(path), "--policies", str(REPO / "policies")],
        # Nothing listens here: the refusal must come before any Kafka conversation.
        env={"COLUMNS": "400", "FLEET_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert result.exit_code == 1, result.output
    assert "spec.rollout.requires_approval" in result.output
    assert "false loosens the critical risk policy's floor true" in result.output
    assert "nothing to apply" in result.output


@pytest.mark.parametrize("policy_dir", ["policies", "examples/demo/policies"])
def test_every_example_spec_keeps_the_floors_of_its_risk_policy(policy_dir: str) -> None:
    manifest = load_path(REPO / "examples" / "fleet")
    check_policies(manifest, load_policies(REPO / policy_dir))
    assert manifest.problems == []
    assert len(manifest.models) == 24
