"""Within a major version contracts only grow; the committed snapshots enforce it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelfleet_contracts.envelope import Contract, Event
from modelfleet_contracts.snapshots import breaking_changes, check, schema_of


class Original(Event):
    event_type: Literal["x.happened"] = "x.happened"
    schema_version: Literal[1] = 1
    model: str = Field(description="m")
    score: float = Field(description="s")
    stage: Literal["a", "b"] = Field(description="st")


class WithOptionalField(Original):
    note: str | None = Field(default=None, description="n")


class WithRequiredField(Original):
    owner: str = Field(description="o")


class WithRenamedField(Event):
    event_type: Literal["x.happened"] = "x.happened"
    schema_version: Literal[1] = 1
    model_name: str = Field(description="m")
    score: float = Field(description="s")
    stage: Literal["a", "b"] = Field(description="st")


class WithChangedType(Event):
    event_type: Literal["x.happened"] = "x.happened"
    schema_version: Literal[1] = 1
    model: str = Field(description="m")
    score: str = Field(description="s")
    stage: Literal["a", "b"] = Field(description="st")


class WithFewerStages(Event):
    event_type: Literal["x.happened"] = "x.happened"
    schema_version: Literal[1] = 1
    model: str = Field(description="m")
    score: float = Field(description="s")
    stage: Literal["a"] = Field(description="st")


class Target(Contract):
    version: str = Field(description="v")


class TargetWithNote(Contract):
    version: str = Field(description="v")
    note: str | None = Field(default=None, description="n")


class TargetRenamed(Contract):
    number: str = Field(description="v")


class Routed(Event):
    event_type: Literal["x.routed"] = "x.routed"
    schema_version: Literal[1] = 1
    target: Target | None = Field(default=None, description="t")


class RoutedWithNote(Event):
    event_type: Literal["x.routed"] = "x.routed"
    schema_version: Literal[1] = 1
    target: TargetWithNote | None = Field(default=None, description="t")


class RoutedRenamed(Event):
    event_type: Literal["x.routed"] = "x.routed"
    schema_version: Literal[1] = 1
    target: TargetRenamed | None = Field(default=None, description="t")


def test_a_nested_optional_model_may_gain_an_optional_field() -> None:
    assert breaking_changes(schema_of(Routed), schema_of(RoutedWithNote)) == []


def test_a_nested_optional_model_losing_a_field_breaks_the_contract() -> None:
    assert breaking_changes(schema_of(Routed), schema_of(RoutedRenamed)) == [
        "$.target.version: field removed or renamed",
        "$.target.number: field became required",
    ]


def changes(new: type[Event]) -> list[str]:
    return breaking_changes(schema_of(Original), schema_of(new))


def test_a_new_optional_field_is_compatible() -> None:
    assert changes(WithOptionalField) == []


def test_a_new_required_field_breaks_the_contract() -> None:
    assert changes(WithRequiredField) == ["$.owner: field became required"]


def test_a_renamed_field_breaks_the_contract() -> None:
    assert "$.model: field removed or renamed" in changes(WithRenamedField)


def test_a_changed_type_breaks_the_contract() -> None:
    assert changes(WithChangedType) == ["$.score: `type` changed from 'number' to 'string'"]


def test_removing_an_allowed_value_breaks_the_contract() -> None:
    assert changes(WithFewerStages) != []


def test_the_committed_snapshots_match_the_contracts() -> None:
    assert check() == []
