"""Requests go to champion or challenger by a sticky share of request keys; shadows get a copy."""

from __future__ import annotations

import math

import pytest

from modelfleet_contracts import DeploymentChanged
from modelfleet_contracts.rollout import RouteTarget
from modelfleet_serving.routing import NoServableVersion, bucket, choose_route


def target(version: str) -> RouteTarget:
    return RouteTarget(
        version=version,
        model_uri=f"runs:/run{version}/model",
        digest="d" * 64,
        signature="s",
        signing_key_id="k",
    )


def table(
    *,
    champion: str | None = "1",
    challenger: str | None = "2",
    weight: float = 0.2,
    shadows: tuple[str, ...] = (),
) -> DeploymentChanged:
    return DeploymentChanged(
        producer="deployer",
        model="churn",
        revision=1,
        stage="canary",
        champion=target(champion) if champion else None,
        challenger=target(challenger) if challenger else None,
        challenger_weight=weight,
        shadows=[target(version) for version in shadows],
    )


def test_one_request_key_always_sees_the_same_version() -> None:
    routes = {choose_route(table(weight=0.5), "customer-42").target.version for _ in range(20)}
    assert len(routes) == 1


def test_the_challenger_share_of_many_keys_converges_to_its_weight() -> None:
    keys = 20_000
    weight = 0.2
    challenger = sum(
        choose_route(table(weight=weight), f"customer-{n}").route == "challenger" for n in range(keys)
    )
    # Five standard deviations of a binomial share: a correct split is inside it with near certainty.
    bound = 5 * math.sqrt(weight * (1 - weight) / keys)
    assert abs(challenger / keys - weight) < bound


def test_raising_the_weight_only_moves_keys_from_champion_to_challenger() -> None:
    keys = [f"customer-{n}" for n in range(2_000)]
    at_10 = {key for key in keys if choose_route(table(weight=0.1), key).route == "challenger"}
    at_50 = {key for key in keys if choose_route(table(weight=0.5), key).route == "challenger"}
    assert at_10 < at_50


def test_no_challenger_traffic_at_weight_zero_and_all_of_it_at_weight_one() -> None:
    keys = [f"customer-{n}" for n in range(500)]
    assert {choose_route(table(weight=0.0), key).route for key in keys} == {"champion"}
    assert {choose_route(table(weight=1.0), key).route for key in keys} == {"challenger"}


def test_a_request_without_a_key_gets_a_fresh_one() -> None:
    route = choose_route(table(), None, new_key=lambda: "generated")
    assert route.request_key == "generated"
    assert route.route == ("challenger" if bucket("churn", "generated") < 0.2 else "champion")


def test_the_same_key_splits_independently_for_different_models() -> None:
    keys = [f"customer-{n}" for n in range(1_000)]
    same_side = sum((bucket("churn", key) < 0.5) == (bucket("fraud", key) < 0.5) for key in keys)
    assert 400 < same_side < 600


def test_a_model_with_only_a_challenger_is_answered_by_it() -> None:
    route = choose_route(table(champion=None, weight=0.0), "customer-1")
    assert (route.route, route.target.version) == ("challenger", "2")


def test_a_model_without_champion_or_challenger_cannot_be_served() -> None:
    with pytest.raises(NoServableVersion, match=r"'churn' has no champion or challenger"):
        choose_route(table(champion=None, challenger=None), "customer-1")


def test_shadows_get_a_copy_unless_they_are_the_answering_version() -> None:
    route = choose_route(table(challenger=None, shadows=("3", "1")), "customer-1")
    assert route.target.version == "1"
    assert [shadow.version for shadow in route.shadows] == ["3"]
