"""The routing tables of every model, as the compacted deployments topic last described them: pure."""

from __future__ import annotations

from modelfleet_contracts import DeploymentChanged


class RoutingTable:
    """The latest `DeploymentChanged` of each model; an older or repeated revision never wins.

    The deployments topic is compacted and re-read from the start by every replica, and a
    redelivery may bring an old table after a newer one: only a higher `revision` replaces a table.
    """

    def __init__(self) -> None:
        self._tables: dict[str, DeploymentChanged] = {}

    def apply(self, event: DeploymentChanged) -> bool:
        """Keep `event` if it is newer than the model's current table; True when it replaced it."""
        current = self._tables.get(event.model)
        if current is not None and current.revision >= event.revision:
            return False
        self._tables[event.model] = event
        return True

    def get(self, model: str) -> DeploymentChanged | None:
        """The model's current table, or None when no table was received for it."""
        return self._tables.get(model)

    def models(self) -> list[str]:
        """Names of the models with a table."""
        return sorted(self._tables)
