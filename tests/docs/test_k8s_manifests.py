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
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

from modelfleet_cli.local_home import REPO
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


# Scale-out (#12): every control-plane service may run several replicas, its state in PostgreSQL.

CONTROL_PLANE = [service for service in SERVICES if service != "serving"]
#: Overlays for a one-node cluster: a ReadWriteOnce claim is mounted by every pod of that node, so
#: it keeps no second replica out (on several nodes it would).
SINGLE_NODE = {"overlays/local"}


def _kustomization(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["rendered"])


def _pod_labels(workload: Manifest) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _state_url(manifests: list[Manifest], deployment: Manifest) -> SplitResult:
    url = _environment(manifests, deployment).get("FLEET_STATE_URL")
    assert url, f"{deployment['metadata']['name']}: no FLEET_STATE_URL, its state stays in the pod"
    return urlsplit(url)


def test_every_deployment_has_a_disruption_budget(rendered: list[Manifest]) -> None:
    budgets = list(_of_kind(rendered, "PodDisruptionBudget").values())
    for name, deployment in _services(rendered).items():
        matching = [b for b in budgets if _selects(b["spec"]["selector"], _pod_labels(deployment))]
        assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets select its pods"
        # maxUnavailable: a drain may still evict the pod of a service pinned to one replica.
        assert matching[0]["spec"].get("maxUnavailable", 0) >= 1, f"{name}: its budget blocks every eviction"


def test_the_control_plane_keeps_no_state_on_a_claim_that_pins_one_pod(
    rendered: list[Manifest], request: pytest.FixtureRequest
) -> None:
    claims = _of_kind(rendered, "PersistentVolumeClaim")
    services = _services(rendered)
    for name in CONTROL_PLANE:
        deployment = services[name]
        strategy = deployment["spec"].get("strategy", {}).get("type", "RollingUpdate")
        assert strategy == "RollingUpdate", f"{name}: {strategy} stops every pod before starting one"
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "persistentVolumeClaim" not in volume:
                continue
            assert volume["name"] != "state", f"{name}: FLEET_STATE_DIR on a claim"
            claim = volume["persistentVolumeClaim"]["claimName"]
            modes = set(claims[claim]["spec"]["accessModes"])
            assert "ReadWriteOncePod" not in modes, f"{name}: claim {claim} takes one pod"
            if _kustomization(request) not in SINGLE_NODE:
                assert "ReadWriteOnce" not in modes, f"{name}: claim {claim} keeps its replicas on one node"


def test_each_control_plane_service_keeps_its_state_as_its_own_postgres_role(
    rendered: list[Manifest],
) -> None:
    services = _services(rendered)
    for name in CONTROL_PLANE:
        url = _state_url(rendered, services[name])
        assert url.scheme == "postgresql+psycopg", f"{name}: {url.scheme}"
        assert url.username == name, f"{name} signs in as PostgreSQL role {url.username}"
        assert url.password is None, f"{name}: password in FLEET_STATE_URL"
        assert url.path == "/modelfleet", f"{name}: database {url.path}"
        environment = _environment(rendered, services[name])
        assert "FLEET_STATE_PASSWORD" not in environment, f"{name}: state password in its environment"
        secret = _secret_behind(services[name], environment["FLEET_STATE_PASSWORD_FILE"])
        assert secret == (f"postgres-{name}", "password"), f"{name} reads another role's password"
    # Serving keeps no state: no database, no password.
    assert "FLEET_STATE_URL" not in _environment(rendered, services["serving"])


def test_the_control_plane_may_reach_postgres(rendered: list[Manifest]) -> None:
    services = _services(rendered)
    workloads = [*_of_kind(rendered, "StatefulSet").values(), *_of_kind(rendered, "Deployment").values()]
    for name in CONTROL_PLANE:
        url = _state_url(rendered, services[name])
        assert url.port in _egress_ports(rendered, services[name]), f"{name} may not reach {url.netloc}"
        # Where the overlay runs the server itself, its policies must let each service in.
        for server in (w for w in workloads if w["metadata"]["name"] == url.hostname):
            allowed = {
                port["port"]
                for policy in _of_kind(rendered, "NetworkPolicy").values()
                if _selects(policy["spec"]["podSelector"], _pod_labels(server))
                for rule in policy["spec"].get("ingress", [])
                if any(
                    _selects(peer.get("podSelector", {}), _pod_labels(services[name]))
                    for peer in rule["from"]
                )
                for port in rule.get("ports", [])
            }
            assert url.port in allowed, f"{name} is not let in to {url.hostname}:{url.port}"


def test_the_base_runs_two_replicas_of_the_control_plane(
    rendered: list[Manifest], request: pytest.FixtureRequest
) -> None:
    if _kustomization(request) != "base":
        pytest.skip("overlays choose their own counts (overlays/local pins one)")
    services = _services(rendered)
    # The trainer may run more, but each replica reserves 2 CPUs for its local Ray (trainer.yaml).
    for name in (service for service in CONTROL_PLANE if service != "trainer"):
        assert services[name]["spec"].get("replicas", 1) >= 2, f"{name}: one replica"
    assert _of_kind(rendered, "HorizontalPodAutoscaler")["serving"]["spec"]["minReplicas"] >= 2
