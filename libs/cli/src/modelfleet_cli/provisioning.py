"""Provision a fleet on a secured Kafka: its topics and every principal's ACLs, as the Kafka admin.

aiokafka's admin client has no ACL API; confluent-kafka's (librdkafka) has, so this one module
uses it. The bindings come from `modelfleet_common.acls.fleet_acls`, i.e. from the topic catalog.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding as KafkaAclBinding,
)
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from modelfleet_common.acls import AclBinding, fleet_acls
from modelfleet_common.kafka import fleet_topics
from modelfleet_common.naming import TopicNamer
from modelfleet_common.settings import KafkaSettings
from modelfleet_contracts.topics import ALL_TOPICS

_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION = {"read": AclOperation.READ, "write": AclOperation.WRITE, "describe": AclOperation.DESCRIBE}
#: Seconds to wait for the cluster's answer to one admin request.
REQUEST_TIMEOUT = 30.0


class ProvisioningError(RuntimeError):
    """The cluster refused or failed a provisioning request; the message says which and why."""


@dataclass
class Provisioned:
    """What `provision` did: topics created (the others existed) and ACL bindings in force."""

    created_topics: list[str] = field(default_factory=list)
    existing_topics: list[str] = field(default_factory=list)
    acls: list[AclBinding] = field(default_factory=list)


def admin_config(kafka: KafkaSettings) -> dict[str, str | int | float | bool]:
    """librdkafka configuration for `kafka` (the same settings the services use)."""
    kafka.check()
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": kafka.bootstrap,
        "security.protocol": kafka.security_protocol,
        "client.id": "modelfleet-provision",
    }
    if kafka.uses_sasl:
        # Both checked by kafka.check().
        assert kafka.sasl_username
        assert kafka.sasl_password
        config |= {
            "sasl.mechanisms": kafka.sasl_mechanism,
            "sasl.username": kafka.sasl_username,
            "sasl.password": kafka.sasl_password.get_secret_value(),
        }
    if kafka.security_protocol.endswith("SSL") and kafka.ssl_cafile:
        config["ssl.ca.location"] = str(kafka.ssl_cafile)
    return config


def to_kafka(binding: AclBinding) -> KafkaAclBinding:
    """The confluent-kafka ALLOW binding of one of ours (any host)."""
    return KafkaAclBinding(
        _RESOURCE[binding.resource_type],
        binding.resource_name,
        _PATTERN[binding.pattern_type],
        binding.user,
        "*",
        _OPERATION[binding.operation],
        AclPermissionType.ALLOW,
    )


def provision(
    kafka: KafkaSettings,
    namer: TopicNamer,
    *,
    principals: Sequence[str] | None = None,
    acls: bool = True,
) -> Provisioned:
    """Create the fleet's missing topics (catalog settings) and, if `acls`, every ACL binding.

    Idempotent: existing topics are left as they are, existing bindings stay. Needs a principal
    that may create topics and ACLs (the cluster's admin).
    """
    admin = AdminClient(admin_config(kafka))
    result = Provisioned()
    _create_topics(admin, kafka, namer, result)
    if acls:
        bindings = fleet_acls(namer) if principals is None else fleet_acls(namer, principals)
        _create_acls(admin, bindings)
        result.acls = bindings
    return result


def _create_topics(admin: AdminClient, kafka: KafkaSettings, namer: TopicNamer, result: Provisioned) -> None:
    wanted = fleet_topics(namer, ALL_TOPICS)
    replicated = {"min.insync.replicas": str(min(2, kafka.replication_factor))}
    new = [
        NewTopic(
            name,
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            config={**replicated, **({"cleanup.policy": "compact"} if compacted else {})},
        )
        for name, compacted in wanted
    ]
    futures = admin.create_topics(new, request_timeout=REQUEST_TIMEOUT)
    for name, future in futures.items():
        try:
            future.result(timeout=REQUEST_TIMEOUT)
            result.created_topics.append(name)
        except KafkaException as error:
            kafka_error: KafkaError = error.args[0]
            if kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result.existing_topics.append(name)
                continue
            raise ProvisioningError(f"could not create topic {name}: {kafka_error.str()}") from None


def _create_acls(admin: AdminClient, bindings: Iterable[AclBinding]) -> None:
    ours = {to_kafka(binding): binding for binding in bindings}
    futures = admin.create_acls(list(ours), request_timeout=REQUEST_TIMEOUT)
    failed: list[str] = []
    for theirs, future in futures.items():
        binding = ours[theirs]
        try:
            future.result(timeout=REQUEST_TIMEOUT)
        except KafkaException as error:
            failed.append(
                f"{binding.user} {binding.operation} {binding.resource_name}: {error.args[0].str()}"
            )
    if failed:
        raise ProvisioningError(f"{len(failed)} ACL bindings were refused, e.g. {failed[0]}")
    _wait_until_enforced(admin, set(ours))


def _wait_until_enforced(admin: AdminClient, wanted: set[KafkaAclBinding], timeout: float = 30.0) -> None:
    """Return once the broker's authorizer lists every binding of `wanted`.

    A created binding is committed to the metadata log before the broker applies it: a service
    started right after provisioning (a fresh broker, a demo) would otherwise be refused topics it
    is allowed, for a moment.
    """
    # None matches any name, principal and host (librdkafka); the stubs only allow strings.
    anything: Any = None
    everything = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deadline = time.monotonic() + timeout
    while True:
        listed = set(admin.describe_acls(everything, request_timeout=REQUEST_TIMEOUT).result(REQUEST_TIMEOUT))
        missing = wanted - listed
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ProvisioningError(
                f"{len(missing)} ACL bindings were accepted but the broker does not enforce them after "
                f"{timeout:.0f}s, e.g. {sorted(map(str, missing))[0]}"
            )
        time.sleep(0.2)
