"""The Kafka ACLs of a fleet, derived from the topic catalog: least privilege per principal.

Each service is a principal `User:<service>`; the CLI is `User:cli`. A principal may

- write (and describe) exactly the topics whose `producers` name it,
- read (and describe) exactly the topics whose `consumers` name it,
- use consumer groups under its own prefix `<prefix>fleet.<service>.` (services only),
- write the dead-letter topic (services) or read it (the CLI, for people inspecting poison).

Nothing else: no topic creation, no cluster operations. The fleet's admin principal (a super user)
provisions topics and ACLs. `modelfleet acls` prints these bindings; `modelfleet provision`
applies them; the Strimzi `KafkaUser` resources are rendered from the same list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from modelfleet_contracts.topics import ALL_TOPICS, CLI, PRINCIPALS, SERVICES

from .naming import TopicNamer

ResourceType = Literal["topic", "group"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe"]


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW binding: `principal` may do `operation` on resources matching the pattern."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    resource_name: str
    operation: Operation

    @property
    def user(self) -> str:
        """The Kafka principal string, `User:<name>`."""
        return f"User:{self.principal}"


def _topic_access(principal: str, name: str, operation: Operation) -> list[AclBinding]:
    return [
        AclBinding(principal, "topic", "literal", name, operation),
        AclBinding(principal, "topic", "literal", name, "describe"),
    ]


def fleet_acls(namer: TopicNamer, principals: Iterable[str] = PRINCIPALS) -> list[AclBinding]:
    """Every ALLOW binding of the fleet named by `namer`, for `principals`, sorted and unique."""
    wanted = set(principals)
    unknown = sorted(wanted - set(PRINCIPALS))
    if unknown:
        raise ValueError(f"unknown principals {unknown}: the catalog knows {list(PRINCIPALS)}")
    bindings: set[AclBinding] = set()
    for topic in ALL_TOPICS:
        name = namer.topic(topic)
        for producer in topic.producers & wanted:
            bindings.update(_topic_access(producer, name, "write"))
        for consumer in topic.consumers & wanted:
            bindings.update(_topic_access(consumer, name, "read"))
    for service in wanted & set(SERVICES):
        bindings.update(_topic_access(service, namer.dead_letter(), "write"))
        bindings.add(AclBinding(service, "group", "prefixed", namer.group_prefix(service), "read"))
    if CLI in wanted:
        bindings.update(_topic_access(CLI, namer.dead_letter(), "read"))
    return sorted(bindings)


def may_write(bindings: Iterable[AclBinding], principal: str, topic_name: str) -> bool:
    """Whether `bindings` let `principal` write the topic `topic_name` (literal bindings only)."""
    return any(
        b.principal == principal
        and b.resource_type == "topic"
        and b.operation == "write"
        and b.resource_name == topic_name
        for b in bindings
    )
