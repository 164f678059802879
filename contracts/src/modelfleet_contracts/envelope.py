"""The envelope every modelfleet event carries, and the base class of all contracts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every payload and nested part of a contract: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Contract):
    """An event: what happened, plus the envelope that makes it traceable and deduplicable.

    Subclasses pin ``event_type`` and ``schema_version`` with a ``Literal`` so an event of another
    type or major version never validates as this one. Within one major version, changes are
    additive and optional only; a breaking change is a new class, a new ``vN`` topic.
    """

    #: Field of the payload whose value is the Kafka message key (keeps one model's events ordered).
    key_field: ClassVar[str] = "model"

    event_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this event; consumers deduplicate redeliveries on it.",
    )
    event_type: str = Field(description="Dotted name of the event, e.g. `model.registered`.")
    schema_version: int = Field(description="Major version of the contract; equals the topic's `vN`.")
    occurred_at: AwareDatetime = Field(
        default_factory=_utc_now,
        description="When the event happened, timezone-aware and normalised to UTC.",
    )
    producer: str = Field(
        min_length=1,
        description="Who published it: a service name (`trainer`) or `cli:<user>` for people.",
    )
    correlation_id: str = Field(
        default_factory=lambda: str(uuid4()),
        min_length=1,
        description=(
            "Id of the whole lifecycle this event belongs to (one spec change or one drift "
            "incident through to promotion); copied unchanged into every event it causes."
        ),
    )
    causation_id: UUID | None = Field(
        default=None,
        description="`event_id` of the event that caused this one; empty for a root event.",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Subclasses pin `event_type`/`schema_version` with a bare Literal default; keep the
        # envelope's descriptions on them so the JSON Schema and AsyncAPI docs still explain them.
        super().__pydantic_init_subclass__(**kwargs)
        inherited = [
            name for name in ("event_type", "schema_version") if cls.model_fields[name].description is None
        ]
        for name in inherited:
            cls.model_fields[name].description = Event.model_fields[name].description
        if inherited:
            cls.model_rebuild(force=True)

    @field_validator("occurred_at")
    @classmethod
    def _normalise_to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def caused(self) -> dict[str, Any]:
        """Envelope fields for an event caused by this one: same correlation, this as its cause."""
        return {"correlation_id": self.correlation_id, "causation_id": self.event_id}

    @property
    def key(self) -> str:
        """The Kafka message key of this event."""
        return str(getattr(self, self.key_field))
