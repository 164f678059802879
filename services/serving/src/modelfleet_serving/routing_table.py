"""The routing tables of every model, as the compacted deployments topic last described them: pure."""

from __future__ import annotations

from modelfleet_common.revisions import RevisionCheck, check_revision, is_accepted
from modelfleet_contracts import DeploymentChanged


class RoutingTable:
    """The current `DeploymentChanged` of each model, advanced one revision at a time.

    The first table seen for a model is taken whatever its revision (the compacted topic may hold
    only the latest one); after that only revision `current + 1` replaces it. A redelivered or
    older table is stale, and a table more than one step ahead is not the deployer's next one (a
    forged revision +1000 would otherwise pin the model): both are ignored. See `revisions`.
    """

    def __init__(self) -> None:
        self._tables: dict[str, DeploymentChanged] = {}

    def apply(self, event: DeploymentChanged) -> RevisionCheck:
        """Take `event` if it is the model's first table or its next revision; says which it was."""
        current = self._tables.get(event.model)
        check = check_revision(None if current is None else current.revision, event.revision)
        if is_accepted(check):
            self._tables[event.model] = event
        return check

    def get(self, model: str) -> DeploymentChanged | None:
        """The model's current table, or None when no table was received for it."""
        return self._tables.get(model)

    def models(self) -> list[str]:
        """Names of the models with a table."""
        return sorted(self._tables)
