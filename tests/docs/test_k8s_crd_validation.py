"""`make k8s-validate` refuses custom resources their CRDs refuse, and kinds it has no schema for.

deploy/k8s/crds/validate.mjs checks Strimzi, KEDA and Prometheus Operator objects with the validators
and TypeScript types of the pinned @kubernetes-models npm packages (the types catch unknown fields),
and KubeRay's against its CRD from the Go module proxy;
everything else goes on to kubernetes-validate (strict). Needs Node.js with npm, and Go.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelfleet_cli.local_home import REPO

CRDS = REPO / "deploy" / "k8s" / "crds"


@pytest.fixture(scope="module")
def validate() -> object:
    for tool in ("node", "npm", "go"):
        assert shutil.which(tool), f"{tool} is needed for the CRD schemas (.ci/run installs it)"
    if not (CRDS / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--prefix", str(CRDS), "--no-audit", "--no-fund"], check=True, capture_output=True
        )

    def run(documents: list[dict[str, object]], tmp_path: Path) -> tuple[int, str, list[dict[str, object]]]:
        rendered, builtins = tmp_path / "rendered.yaml", tmp_path / "builtins.yaml"
        rendered.write_text(yaml.safe_dump_all(documents))
        result = subprocess.run(
            ["node", str(CRDS / "validate.mjs"), str(rendered), str(builtins)], capture_output=True, text=True
        )
        rest = [doc for doc in yaml.safe_load_all(builtins.read_text()) if doc] if builtins.exists() else []
        return result.returncode, result.stdout, rest

    return run


SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "evaluator", "namespace": "modelfleet"},
    "spec": {
        "scaleTargetRef": {"name": "evaluator"},
        "triggers": [{"type": "kafka", "metadata": {"topic": "t"}}],
    },
}
RAY_CLUSTER = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "ray"},
    "spec": {
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {"spec": {"containers": [{"name": "ray-head", "image": "trainer"}]}},
        }
    },
}


def test_valid_custom_resources_pass_and_built_in_kinds_go_on_to_kubernetes_validate(
    validate, tmp_path: Path
) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    code, problems, rest = validate([SCALED_OBJECT, RAY_CLUSTER, config_map], tmp_path)
    assert (code, problems) == (0, "")
    assert rest == [config_map]


def test_a_field_of_the_wrong_type_fails(validate, tmp_path: Path) -> None:
    wrong = yaml.safe_load(yaml.safe_dump(SCALED_OBJECT))
    wrong["spec"]["minReplicaCount"] = "two"
    code, problems, _ = validate([wrong], tmp_path)
    assert code == 1
    assert "ScaledObject modelfleet/evaluator: /spec/minReplicaCount must be integer" in problems


def test_a_misspelt_field_fails_at_any_depth(validate, tmp_path: Path) -> None:
    typo = yaml.safe_load(yaml.safe_dump(SCALED_OBJECT))
    typo["spec"]["pollingInteval"] = 5  # pollingInterval
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "ingest", "namespace": "modelfleet"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "pth": "/metrics"}]},
    }
    code, problems, _ = validate([typo, monitor], tmp_path)
    assert code == 1
    assert "ScaledObject modelfleet/evaluator: unknown field pollingInteval" in problems
    assert "ServiceMonitor modelfleet/ingest: unknown field pth" in problems


def test_a_strimzi_acl_pattern_strimzi_does_not_know_fails(validate, tmp_path: Path) -> None:
    user = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": "ingest"},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    {
                        "resource": {"type": "group", "name": "fleet.", "patternType": "prefixed"},
                        "operations": ["Read"],
                    }
                ],
            },
        },
    }
    code, problems, _ = validate([user], tmp_path)
    assert code == 1
    assert "patternType" in problems


def test_an_unknown_field_of_a_ray_cluster_fails(validate, tmp_path: Path) -> None:
    typo = yaml.safe_load(yaml.safe_dump(RAY_CLUSTER))
    typo["spec"]["workerGroupSpec"] = []  # the field is workerGroupSpecs
    code, problems, _ = validate([typo], tmp_path)
    assert code == 1
    assert "must NOT have additional properties: workerGroupSpec" in problems


def test_a_custom_resource_of_an_unknown_group_is_left_to_kubernetes_validate_which_refuses_it(
    validate, tmp_path: Path
) -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    code, _, rest = validate([unknown], tmp_path)
    assert code == 0
    assert rest == [unknown]
    # As validate.sh runs it: any output is a failure (a missing schema is only a warning line).
    report = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            "1.32.0",
            str(tmp_path / "builtins.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert "Widget" in report.stdout + report.stderr
