"""The one rule for a routing table's revision: it advances by exactly one step per model.

The deployer publishes revision 1 as a model's first table and `last + 1` for every change after
it, and continues from its last revision after a restart (its stored state, or the table it
rebuilds from). Every reader of the deployments topic (serving, the deployer's own rebuild) keeps
per model the last revision it accepted and takes a table only when it is `last + 1`: a forged
table with a huge revision cannot pin a model, and the deployer's next real table is still taken.

The deployments topic is compacted: a reader that starts from the beginning may see only the
latest table of a model, at any revision. So the first table a reader sees for a model it has
none for is accepted, whatever its revision. That first table is trusted because only the
deployer's principal may write the topic (broker ACLs from the topic catalog), not because of
its revision; a forged first table is what the ACLs, not this rule, stop.
"""

from __future__ import annotations

from typing import Literal

#: first: no table of the model yet, taken as it is; next: exactly last + 1, taken;
#: stale: not newer (a redelivery, or the deployer publishing again after a crash), ignored;
#: jump: more than one step ahead (not the deployer's next table), ignored.
RevisionCheck = Literal["first", "next", "stale", "jump"]


def check_revision(last: int | None, incoming: int) -> RevisionCheck:
    """How a table of revision `incoming` relates to the last accepted revision of its model."""
    if last is None:
        return "first"
    if incoming == last + 1:
        return "next"
    return "stale" if incoming <= last else "jump"


def is_accepted(check: RevisionCheck) -> bool:
    """Whether a table with this check replaces the model's current table."""
    return check in ("first", "next")
