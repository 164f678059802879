"""Moving the `champion` alias as the deployer decides: promotions and rollbacks.

The deployer owns the decision; the registry only mirrors it in MLflow so that `models:/NAME@champion`
always names the version serving by default. Setting an alias is idempotent, so a redelivered
decision changes nothing. Blocking work (MLflow): the handlers run these in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from modelfleet_contracts import ModelPromoted, ModelRolledBack

from .domain import CHALLENGER

logger = logging.getLogger("modelfleet.registry")

#: Alias of the version serving by default; only the deployer's decisions move it.
CHAMPION = "champion"


class AliasRegistry(Protocol):
    """The aliases of registered models (MLflow; a fake in tests)."""

    def alias_version(self, model: str, alias: str) -> str | None: ...

    def set_alias(self, model: str, alias: str, version: str) -> None: ...

    def delete_alias(self, model: str, alias: str) -> None: ...


@dataclass
class ChampionAliases:
    """Points `champion` where the deployer's promotions and rollbacks say."""

    registry: AliasRegistry

    def promote(self, event: ModelPromoted) -> None:
        """`champion` → the promoted version; `challenger` is dropped if it named that version."""
        self.registry.set_alias(event.model, CHAMPION, event.version)
        # A champion is no longer a challenger; a newer challenger keeps its alias.
        if self.registry.alias_version(event.model, CHALLENGER) == event.version:
            self.registry.delete_alias(event.model, CHALLENGER)

    def roll_back(self, event: ModelRolledBack) -> None:
        """`champion` → the version now serving, or no champion when nothing is left to serve."""
        if event.to_version:
            self.registry.set_alias(event.model, CHAMPION, event.to_version)
        else:
            self.registry.delete_alias(event.model, CHAMPION)
