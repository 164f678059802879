"""The rendered Kubernetes manifests keep each service to its own identity and the namespace closed.

Rendered the way `make k8s-validate` renders them (kubectl's built-in kustomize, or a standalone
`kustomize`), for the base and every overlay: each service runs as its own Kafka principal (the
topic catalog's name for it, so manifests and ACLs cannot drift apart) with its own password Secret,
under its own ServiceAccount without a token, and nothing reaches in or out unless a policy says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from modelfleet_cli.local import REPO
from modelfleet_contracts.topics import SERVICES

K8S = REPO / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", *sorted(f"overlays/{d.name}" for d in (K8S / "overlays").iterdir() if d.is_dir())]

Manifest = dict[str, Any]


def _render_command(directory: Path) -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    pytest.skip(
        "neither kubectl nor kustomize is installed to render deploy/k8s "
        "(.ci/run builds kustomize v5.5.0 when both are missing)"
    )


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    result = subprocess.run(_render_command(K8S / request.param), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"rendering {request.param} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def _services(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {
        name: deployment
        for name, deployment in _of_kind(manifests, "Deployment").items()
        if deployment["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "modelfleet"
    }


def _environment(manifests: list[Manifest], deployment: Manifest) -> dict[str, str]:
    """The container's environment as the pod sees it: envFrom ConfigMaps in order, then env."""
    config_maps = _of_kind(manifests, "ConfigMap")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
    for variable in container.get("env", []):
        environment[variable["name"]] = variable.get("value", "<valueFrom>")
    return environment


def _secret_behind(deployment: Manifest, file: str) -> tuple[str, str]:
    """The (Secret name, key) whose value the container reads at `file`."""
    pod = deployment["spec"]["template"]["spec"]
    path = PurePosixPath(file)
    mount = next(
        (m for m in pod["containers"][0]["volumeMounts"] if path.parent == PurePosixPath(m["mountPath"])),
        None,
    )
    assert mount is not None, f"{deployment['metadata']['name']}: nothing is mounted at {path.parent}"
    assert mount.get("readOnly") is True, f"{deployment['metadata']['name']}: {path.parent} is writable"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "secret" in volume, f"{deployment['metadata']['name']}: {path.parent} is not a Secret"
    items = {item["path"]: item["key"] for item in volume["secret"].get("items", [])}
    return volume["secret"]["secretName"], items.get(path.name, path.name)


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "teach _selects this operator"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _egress_ports(manifests: list[Manifest], deployment: Manifest) -> set[int]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return {
        port["port"]
        for policy in _of_kind(manifests, "NetworkPolicy").values()
        if _selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def test_the_deployments_are_the_catalogs_services(rendered: list[Manifest]) -> None:
    assert sorted(_services(rendered)) == sorted(SERVICES)


def test_each_service_has_its_own_service_account_without_a_token(rendered: list[Manifest]) -> None:
    accounts = _of_kind(rendered, "ServiceAccount")
    for name, deployment in _services(rendered).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("serviceAccountName") == name, f"{name} runs as another ServiceAccount"
        assert pod.get("automountServiceAccountToken") is False, f"{name}'s pod mounts a token"
        assert name in accounts, f"no ServiceAccount {name}"
        assert accounts[name].get("automountServiceAccountToken") is False, f"{name}'s account mounts one"


def test_each_service_is_its_own_kafka_principal(rendered: list[Manifest]) -> None:
    for name, deployment in _services(rendered).items():
        environment = _environment(rendered, deployment)
        assert environment.get("FLEET_KAFKA_SECURITY_PROTOCOL") == "SASL_SSL", name
        assert environment.get("FLEET_KAFKA_SASL_MECHANISM") == "SCRAM-SHA-512", name
        assert environment.get("FLEET_KAFKA_SASL_USERNAME") == name, f"{name} connects as another principal"
        # The password only as a file: an environment variable shows in /proc/<pid>/environ.
        assert "FLEET_KAFKA_SASL_PASSWORD" not in environment, f"{name}: Kafka password in its environment"
        assert _secret_behind(deployment, environment["FLEET_KAFKA_SASL_PASSWORD_FILE"]) == (name, "password")
        ca = ("kafka-cluster-ca", "ca.crt")
        assert _secret_behind(deployment, environment["FLEET_KAFKA_SSL_CAFILE"]) == ca


def test_the_namespace_denies_all_traffic_by_default(rendered: list[Manifest]) -> None:
    default_deny = [
        policy
        for policy in _of_kind(rendered, "NetworkPolicy").values()
        if policy["spec"]["podSelector"] == {}
        and set(policy["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert default_deny, "no NetworkPolicy selects every pod and allows nothing"


def test_each_service_may_reach_dns_and_the_kafka_port_it_is_given(rendered: list[Manifest]) -> None:
    for name, deployment in _services(rendered).items():
        bootstrap = _environment(rendered, deployment)["FLEET_KAFKA_BOOTSTRAP"]
        kafka_ports = {int(server.rsplit(":", 1)[1]) for server in bootstrap.split(",")}
        assert {53, *kafka_ports} <= _egress_ports(rendered, deployment), f"{name}: {bootstrap}"
