"""The production overlay runs the fleet on Strimzi, KEDA, KubeRay and the Prometheus Operator.

Its generated parts are current, KEDA scales each service on the lag of exactly the consumer groups
the service commits, signed in as that service's own Kafka principal, every service is scraped, and
the trainer trains on the RayCluster. `make k8s-validate` checks the same objects against the
operators' CRD schemas (tests/docs/test_k8s_crd_validation.py shows that check can fail).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from modelfleet_cli.local_home import REPO
from modelfleet_contracts.topics import SERVICES

from .test_grafana_dashboards import catalogue
from .test_k8s_manifests import K8S, _environment, _of_kind, _render_command, _services

Manifest = dict[str, Any]
GENERATE = K8S / "generate.py"


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    result = subprocess.run(
        _render_command(K8S / "overlays" / "production"), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _asyncapi_groups(service: str) -> set[str]:
    document = yaml.safe_load((REPO / "docs" / "asyncapi" / f"{service}.yaml").read_text())
    return {
        group
        for operation in document["operations"].values()
        for group in operation.get("bindings", {}).get("kafka", {}).get("groupId", {}).get("enum", [])
    }


def test_the_generated_scaling_and_service_monitors_are_current() -> None:
    result = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_each_consumer_service_scales_on_the_lag_of_every_group_it_commits(
    production: list[Manifest],
) -> None:
    scaled = _of_kind(production, "ScaledObject")
    for service in SERVICES:
        groups = _asyncapi_groups(service)
        triggers = scaled[service]["spec"]["triggers"]
        if service == "serving":
            assert not groups, "serving reads no consumer group (every replica reads every routing table)"
            assert [trigger["type"] for trigger in triggers] == ["cpu", "prometheus"]
            continue
        assert groups, f"{service}'s AsyncAPI document names no consumer group"
        assert {trigger["metadata"]["consumerGroup"] for trigger in triggers} == groups
        assert {trigger["type"] for trigger in triggers} == {"kafka"}
        assert scaled[service]["spec"]["scaleTargetRef"]["name"] == service


def test_keda_signs_in_as_each_services_own_principal_on_the_brokers_the_service_uses(
    production: list[Manifest],
) -> None:
    authentications = _of_kind(production, "TriggerAuthentication")
    keda_kafka = _of_kind(production, "ConfigMap")["keda-kafka"]["data"]
    for name, deployment in _services(production).items():
        environment = _environment(production, deployment)
        for trigger in _of_kind(production, "ScaledObject")[name]["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            assert trigger["metadata"]["bootstrapServers"] == environment["FLEET_KAFKA_BOOTSTRAP"]
            spec = authentications[trigger["authenticationRef"]["name"]]["spec"]
            secrets = {ref["parameter"]: (ref["name"], ref["key"]) for ref in spec["secretTargetRef"]}
            assert secrets == {"password": (name, "password"), "ca": ("kafka-cluster-ca", "ca.crt")}
            config = {ref["parameter"]: keda_kafka[ref["key"]] for ref in spec["configMapTargetRef"]}
            assert config == {"sasl": "scram_sha512", "tls": "enable", "username": name}


def test_only_keda_autoscales(production: list[Manifest]) -> None:
    assert _of_kind(production, "HorizontalPodAutoscaler") == {}, "a second autoscaler would fight KEDA's"


def test_every_service_is_scraped_on_its_http_port(production: list[Manifest]) -> None:
    monitors = _of_kind(production, "ServiceMonitor")
    services = _of_kind(production, "Service")
    for name in SERVICES:
        spec = monitors[name]["spec"]
        assert spec["selector"]["matchLabels"].items() <= services[name]["metadata"]["labels"].items()
        assert [endpoint["port"] for endpoint in spec["endpoints"]] == ["http"]
        assert "http" in {port["name"] for port in services[name]["spec"]["ports"]}


def test_the_trainer_trains_on_the_ray_cluster(production: list[Manifest]) -> None:
    (cluster,) = _of_kind(production, "RayCluster").values()
    trainer = _services(production)["trainer"]
    address = _environment(production, trainer)["FLEET_RAY_ADDRESS"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    client_port = next(port["containerPort"] for port in head["ports"] if port["name"] == "client")
    # KubeRay names the head's Service <cluster>-head-svc.
    assert address == f"ray://{cluster['metadata']['name']}-head-svc:{client_port}"
    # The trainer's image plus Ray's dashboard agent, at the same tag: the same Ray and templates.
    repository, tag = trainer["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)
    workers = cluster["spec"]["workerGroupSpecs"]
    images = {head["image"]} | {group["template"]["spec"]["containers"][0]["image"] for group in workers}
    assert images == {f"{repository}-ray:{tag}"}


def test_kafka_keeps_acknowledged_writes_through_the_loss_of_a_broker(production: list[Manifest]) -> None:
    (kafka,) = _of_kind(production, "Kafka").values()
    (pool,) = _of_kind(production, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    for topic in _of_kind(production, "KafkaTopic").values():
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2


def test_every_namespaced_object_names_its_namespace(production: list[Manifest]) -> None:
    unplaced = [
        f"{doc['kind']}/{doc['metadata']['name']}"
        for doc in production
        if doc["kind"] != "Namespace" and not doc["metadata"].get("namespace")
    ]
    assert unplaced == []


def test_serving_scales_on_a_request_rate_the_fleet_exports_with_the_labels_it_has(
    production: list[Manifest],
) -> None:
    (trigger,) = [
        trigger
        for trigger in _of_kind(production, "ScaledObject")["serving"]["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]
    query = trigger["metadata"]["query"]
    assert catalogue.problems(query, catalogue.declared_metrics()) == []
    assert "fleet_serving_requests_total" in query
    assert 'route="/predict"' in query
    assert int(trigger["metadata"]["threshold"]) > 0
