"""Which version answers a request, and which versions get a mirrored copy: pure, no I/O.

A challenger gets a share `challenger_weight` of request *keys*, not of requests: the key (an
entity id, a session, a request id) is hashed with the model name into [0, 1), and keys below the
weight go to the challenger. One entity therefore always sees one version while the weight stays
the same, and raising the weight only moves keys from champion to challenger, never back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.rollout import RouteTarget

RouteName = Literal["champion", "challenger"]

_BUCKET_BYTES = 8


class NoServableVersion(Exception):
    """The model's routing table has no version that may answer (not deployed yet, or retired)."""


@dataclass(frozen=True)
class Route:
    """The answer to "who serves this request": one answering target and the shadows to mirror to."""

    request_key: str
    route: RouteName
    target: RouteTarget
    shadows: tuple[RouteTarget, ...]


def bucket(model: str, request_key: str) -> float:
    """Stable position of a request key in [0, 1) for one model, the same in every process.

    sha256 rather than `hash()`: Python salts string hashes per process, which would move keys
    between versions on every restart and across replicas.
    """
    digest = hashlib.sha256(f"{model}\x00{request_key}".encode()).digest()
    return int.from_bytes(digest[:_BUCKET_BYTES], "big") / float(1 << (8 * _BUCKET_BYTES))


def _random_key() -> str:
    return uuid.uuid4().hex


def choose_route(
    table: DeploymentChanged, request_key: str | None, *, new_key: Callable[[], str] = _random_key
) -> Route:
    """The target answering `request_key` under `table`, plus the shadows to mirror it to.

    A request without a key gets a random one, so keyless traffic still splits by the weight.
    Raises `NoServableVersion` when the table has neither champion nor challenger.
    """
    key = request_key if request_key else new_key()
    champion, challenger = table.champion, table.challenger
    if challenger is not None and (champion is None or bucket(table.model, key) < table.challenger_weight):
        route: RouteName = "challenger"
        target = challenger
    elif champion is not None:
        route, target = "champion", champion
    else:
        raise NoServableVersion(
            f"model {table.model!r} has no champion or challenger to answer (stage {table.stage!r})"
        )
    # A shadow that is also the answering version would only double its work.
    shadows = tuple(shadow for shadow in table.shadows if shadow.version != target.version)
    return Route(request_key=key, route=route, target=target, shadows=shadows)
