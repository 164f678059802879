"""Loading, expanding, checking and planning the documents people write."""

from __future__ import annotations

from pathlib import Path

import yaml

from modelfleet_cli.applying import plan
from modelfleet_cli.fleet_state import desired_state, fold_status
from modelfleet_cli.manifests import check_columns, load_path, revision
from modelfleet_contracts import (
    ApprovalRequested,
    DataBatchSubmitted,
    DatasetSpecSubmitted,
    DeploymentChanged,
    ModelRegistered,
    ModelRolledBack,
    ModelSpecSubmitted,
    TrainingFailed,
)
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import RouteTarget

DATASET = {
    "apiVersion": "modelfleet/v1",
    "kind": "Dataset",
    "metadata": {"name": "churn", "owner": "crm@example.com"},
    "spec": {
        "columns": [
            {"name": "market", "type": "string", "categories": ["se", "no"]},
            {"name": "tenure", "type": "int", "min": 0},
            {"name": "churned", "type": "int", "min": 0, "max": 1},
        ]
    },
}


def _spec(name: str, **body: object) -> dict[str, object]:
    return {
        "apiVersion": "modelfleet/v1",
        "kind": "ModelSpec",
        "metadata": {"name": name, "owner": "crm@example.com", "risk_class": "low"},
        "spec": {
            "dataset": {"name": "churn"},
            "features": ["tenure"],
            "target": "churned",
            "pipeline": {"template": "tabular-classifier", "version": "1"},
        }
        | body,
    }


FLEET = {
    "apiVersion": "modelfleet/v1",
    "kind": "ModelFleet",
    "metadata": {"name": "churn-fleet"},
    "spec": {
        "matrix": {"market": ["se", "no"], "c": [0.5, 2]},
        "template": _spec(
            "churn-${market}-c${c}",
            dataset={"name": "churn", "where": {"market": "${market}"}},
            hyperparameters={"C": "${c}"},
        ),
    },
}


def _write(path: Path, *documents: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_a_fleet_expands_to_one_spec_per_combination_with_typed_values(tmp_path: Path) -> None:
    manifest = load_path(_write(tmp_path / "fleet.yaml", DATASET, FLEET))
    assert manifest.problems == []
    by_name = {m.spec.metadata.name: m.spec for m in manifest.models}
    assert sorted(by_name) == ["churn-no-c0.5", "churn-no-c2", "churn-se-c0.5", "churn-se-c2"]
    assert by_name["churn-no-c2"].spec.dataset.where == {"market": "no"}
    assert by_name["churn-no-c2"].spec.hyperparameters == {"C": 2}


def test_an_invalid_file_is_refused_whole_with_every_problem_by_file_and_field(tmp_path: Path) -> None:
    broken = _spec("Bad Name", features=[])
    good_file = _write(tmp_path / "a-good.yaml", DATASET)
    bad_file = _write(tmp_path / "b-bad.yaml", _spec("fine-model"), broken)
    manifest = load_path(tmp_path)
    assert [m.spec.metadata.name for m in manifest.models] == []
    assert [d.file for d in manifest.datasets] == [good_file]
    fields = {(p.file, p.document, p.field) for p in manifest.problems}
    assert (bad_file, 2, "metadata.name") in fields
    assert (bad_file, 2, "spec.features") in fields


def test_a_placeholder_that_is_not_an_axis_is_named(tmp_path: Path) -> None:
    fleet = yaml.safe_load(yaml.safe_dump(FLEET, sort_keys=False))
    fleet["spec"]["template"]["metadata"]["name"] = "churn-${country}"
    manifest = load_path(_write(tmp_path / "fleet.yaml", fleet))
    assert [p.message for p in manifest.problems] == [
        "placeholder ${country} is not a matrix axis (axes: ${market}, ${c})"
    ]


def test_the_same_model_in_two_files_refuses_both(tmp_path: Path) -> None:
    _write(tmp_path / "one.yaml", _spec("churn-se"))
    _write(tmp_path / "two.yaml", _spec("churn-se"))
    manifest = load_path(tmp_path)
    assert manifest.models == []
    assert {p.file.name for p in manifest.problems} == {"one.yaml", "two.yaml"}
    assert all("declared 2 times" in p.message for p in manifest.problems)


def test_columns_must_be_declared_by_the_dataset(tmp_path: Path) -> None:
    _write(tmp_path / "data.yaml", DATASET)
    _write(tmp_path / "model.yaml", _spec("churn-se", features=["tenure", "salary"]))
    _write(tmp_path / "orphan.yaml", _spec("orphan", dataset={"name": "nowhere"}))
    manifest = load_path(tmp_path)
    check_columns(manifest, known={})
    messages = {(p.file.name, p.field): p.message for p in manifest.problems}
    assert messages[("model.yaml", "[model.yaml#1] spec.features")].startswith("column 'salary' is not in")
    assert (
        "dataset 'nowhere' is not declared" in messages[("orphan.yaml", "[orphan.yaml#1] spec.dataset.name")]
    )
    assert [m.spec.metadata.name for m in manifest.models] == []


def test_revision_ignores_key_order_and_formatting(tmp_path: Path) -> None:
    first = load_path(_write(tmp_path / "a.yaml", _spec("churn-se"))).models[0]
    reordered = dict(reversed(list(_spec("churn-se").items())))
    second = load_path(_write(tmp_path / "b" / "a.yaml", reordered)).models[0]
    assert first.revision == second.revision == revision(first.spec)


def test_applying_twice_publishes_nothing_the_second_time(tmp_path: Path) -> None:
    source = tmp_path / "churn.csv"
    source.write_text("market,tenure,churned\nse,3,0\n")
    dataset = yaml.safe_load(yaml.safe_dump(DATASET))
    dataset["spec"]["source"] = "churn.csv"
    manifest = load_path(_write(tmp_path / "fleet.yaml", dataset, FLEET))

    first = plan(manifest, desired_state([]), producer="cli:test")
    events = [e for change in first for e in change.events]
    assert [type(e) for e in events[:2]] == [DatasetSpecSubmitted, DataBatchSubmitted]
    assert isinstance(events[1], DataBatchSubmitted)
    assert events[1].uri == str(source.resolve())
    assert sum(isinstance(e, ModelSpecSubmitted) for e in events) == 4

    second = plan(manifest, desired_state(events), producer="cli:test")
    assert {change.change for change in second} == {"unchanged"}
    assert [e for change in second for e in change.events] == []


def test_a_changed_spec_is_configured(tmp_path: Path) -> None:
    before = load_path(_write(tmp_path / "a.yaml", _spec("churn-se")))
    published = [e for c in plan(before, desired_state([]), "cli:test") for e in c.events]
    after = load_path(_write(tmp_path / "a.yaml", _spec("churn-se", features=["tenure", "market"])))
    [change] = plan(after, desired_state(published), "cli:test")
    assert change.change == "configured"


def test_status_follows_a_model_from_spec_to_challenger(tmp_path: Path) -> None:
    [declared] = load_path(_write(tmp_path / "a.yaml", _spec("churn-se"))).models
    lineage = {"model": "churn-se", "spec_revision": declared.revision, "dataset": "churn"}
    events = [
        ModelSpecSubmitted(producer="t", model="churn-se", revision=declared.revision, spec=declared.spec),
        TrainingFailed(
            producer="trainer",
            **lineage,
            dataset_version="v1",
            template="tabular-classifier",
            template_version="1",
            failure="permanent",
            error_type="InvalidHyperparameter",
            message="C must be > 0",
        ),
    ]
    [row] = fold_status(events)
    assert (row.risk_class, row.stage) == ("low", "failed (permanent)")
    assert "C must be > 0" in row.detail

    events.append(
        ModelRegistered(
            producer="registry",
            model="churn-se",
            version="1",
            run_id="r1",
            model_uri="models:/churn-se/1",
            digest="d",
            signature="s",
            signing_key_id="k",
            passed_evaluation=True,
        )
    )
    [row] = fold_status(events)
    assert (row.stage, row.challenger, row.champion) == ("challenger", "1", None)


def test_status_follows_a_version_through_canary_to_champion_and_a_rollback() -> None:
    def target(version: str) -> RouteTarget:
        return RouteTarget(
            version=version,
            model_uri=f"models:/churn-se/{version}",
            digest="d",
            signature="s",
            signing_key_id="k",
        )

    table = {"producer": "deployer", "model": "churn-se"}
    events: list[Event] = [
        DeploymentChanged(**table, revision=1, stage="promoted", champion=target("1")),
        ApprovalRequested(
            producer="deployer", model="churn-se", version="2", risk_class="high", approvers=["risk-officer"]
        ),
    ]
    [row] = fold_status(events)
    assert (row.stage, row.champion) == ("awaiting approval", "1")
    assert "risk-officer" in row.detail

    events.append(
        DeploymentChanged(
            **table,
            revision=2,
            stage="canary",
            champion=target("1"),
            challenger=target("2"),
            challenger_weight=0.25,
            reason="approved by risk-officer",
        )
    )
    [row] = fold_status(events)
    assert (row.stage, row.champion, row.challenger) == ("canary 25%", "1", "2")

    events.append(
        ModelRolledBack(
            producer="deployer",
            model="churn-se",
            from_version="2",
            to_version="1",
            decided_by="deployer",
            reason="live accuracy 0.61 below the champion's 0.83",
        )
    )
    [row] = fold_status(events)
    assert (row.stage, row.champion, row.challenger) == ("rolled back", "1", None)
    assert "0.61" in row.detail
