"""The one place that builds topic and consumer-group names."""

from __future__ import annotations

from dataclasses import dataclass

from modelfleet_contracts.topics import Topic

DEAD_LETTER_VERSION = 1


@dataclass(frozen=True)
class TopicNamer:
    """Physical names: `<prefix>fleet.<topic>.v<N>`; groups `<prefix>fleet.<service>.<topic>.v<N>`.

    One consumer group per service and topic, so a slow topic never stalls another's rebalances
    and each can be scaled and reset on its own.
    """

    prefix: str = ""

    def topic(self, topic: Topic) -> str:
        return f"{self.prefix}fleet.{topic.name}.v{topic.version}"

    def group(self, service: str, topic: Topic) -> str:
        return f"{self.prefix}fleet.{service}.{topic.name}.v{topic.version}"

    def group_prefix(self, service: str) -> str:
        """The prefix of every consumer group of `service` (its ACLs are granted on it)."""
        return f"{self.prefix}fleet.{service}."

    def dead_letter(self) -> str:
        return f"{self.prefix}fleet.dead-letter.v{DEAD_LETTER_VERSION}"
