"""Every contract round-trips, is strict and self-describing, and keeps its envelope."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import BaseModel, ValidationError

from modelfleet_contracts import ColumnSpec, DataBatchSubmitted, ModelSpecRetired, RetrainRequested
from modelfleet_contracts.data import DatasetSchema
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.topics import ALL_EVENTS, ALL_TOPICS, MODEL_SPECS, topic_of


class ColumnSpecFactory(ModelFactory[ColumnSpec]):
    """Random columns that respect the cross-field rules (bounds on numbers, categories on strings)."""

    __set_as_default_factory_for_type__ = True
    type = "float"
    min = None
    max = None
    categories = None


class DatasetSchemaFactory(ModelFactory[DatasetSchema]):
    __set_as_default_factory_for_type__ = True
    time_column = None

    @classmethod
    def columns(cls) -> list[ColumnSpec]:
        return [ColumnSpecFactory.build(name=f"column_{index}") for index in range(3)]


def build(contract: type[Event]) -> Event:
    factory = ModelFactory.create_factory(contract, __check_model__=False)
    event: Event = factory.build()
    return event


@pytest.mark.parametrize("contract", ALL_EVENTS, ids=lambda c: c.__name__)
def test_every_event_round_trips_through_its_topic(contract: type[Event]) -> None:
    event = build(contract)
    raw = event.model_dump_json()
    assert topic_of(contract).parse(raw) == event


@pytest.mark.parametrize("contract", ALL_EVENTS, ids=lambda c: c.__name__)
def test_every_event_is_frozen_and_refuses_unknown_fields(contract: type[Event]) -> None:
    event = build(contract)
    with pytest.raises(ValidationError, match="frozen"):
        event.producer = "someone-else"  # type: ignore[misc]
    data = event.model_dump(mode="json") | {"surprise": 1}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        contract.model_validate(data)


def _undescribed_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(f"{model.__name__}.{name}")
        for nested in _models_in(field.annotation):
            missing += _undescribed_fields(nested, seen)
    return missing


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def test_every_field_of_every_contract_is_described() -> None:
    seen: set[type[BaseModel]] = set()
    missing = [name for c in ALL_EVENTS for name in _undescribed_fields(c, seen)]
    assert missing == []


def test_an_event_of_another_type_does_not_validate_as_this_one() -> None:
    retired = ModelSpecRetired(producer="cli:ana", model="churn-se", reason="replaced")
    data = retired.model_dump(mode="json")
    with pytest.raises(ValidationError, match=r"model\.retrain\.requested"):
        RetrainRequested.model_validate(data | {"reason": "manual"})


def test_the_spec_topic_tells_submissions_and_retirements_apart() -> None:
    retired = ModelSpecRetired(producer="cli:ana", model="churn-se", reason="replaced")
    assert isinstance(MODEL_SPECS.parse(retired.model_dump_json()), ModelSpecRetired)


def test_occurred_at_must_carry_a_timezone_and_is_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    event = DataBatchSubmitted(
        producer="ingest", dataset="sales", uri="/tmp/a.csv", occurred_at=datetime(2026, 1, 1, 13, tzinfo=cet)
    )
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.hour == 12
    with pytest.raises(ValidationError, match="timezone"):
        DataBatchSubmitted(producer="ingest", dataset="s", uri="/a.csv", occurred_at=datetime(2026, 1, 1))


def test_a_caused_event_keeps_the_correlation_and_names_its_cause() -> None:
    cause = RetrainRequested(producer="monitor", model="churn-se", reason="drift")
    effect = ModelSpecRetired(producer="cli:ana", model="churn-se", reason="x", **cause.caused())
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.event_id


def test_events_are_keyed_by_model_or_dataset() -> None:
    assert RetrainRequested(producer="cli", model="m1", reason="manual").key == "m1"
    assert DataBatchSubmitted(producer="cli", dataset="sales", uri="/a.csv").key == "sales"


def test_topic_names_are_unique_and_compacted_topics_hold_desired_state() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert {t.name for t in ALL_TOPICS if t.compacted} == {"model-specs", "dataset-specs", "deployments"}
