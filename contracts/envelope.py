"""The envelope every integration event carries (DESIGN.md, Events and messages)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from contracts.values import UtcDateTime


def _now_utc() -> datetime:
    return datetime.now(UTC)


class EventPayload(BaseModel):
    """Base of every payload. Unknown fields are ignored so that an older consumer accepts a
    message from a newer producer that added optional fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class IntegrationEvent(BaseModel):
    """Public event exchanged between services over Kafka.

    Each subclass narrows `type` to a Literal of its class name, `schema_version` to a Literal of
    its version, sets `topic`, and declares its `payload` model.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]
    # Every topic is partitioned by service area: one elder's events stay in order.
    partition_key_field: ClassVar[str] = "service_area_id"

    event_id: UUID = Field(default_factory=uuid4)
    type: str
    schema_version: int
    occurred_at: UtcDateTime = Field(default_factory=_now_utc)
    correlation_id: UUID = Field(default_factory=uuid4)
    causation_id: UUID | None = None
    service_area_id: str = Field(min_length=1)
    payload: EventPayload

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Catch copy-paste slips at import time rather than on the wire.
        type_default = cls.model_fields["type"].default
        if type_default != cls.__name__:
            raise TypeError(f"{cls.__name__}.type must default to {cls.__name__!r}")
        if not isinstance(cls.model_fields["schema_version"].default, int):
            raise TypeError(f"{cls.__name__}.schema_version needs a Literal default")
        if not isinstance(getattr(cls, "topic", None), str):
            raise TypeError(f"{cls.__name__} must set the class variable `topic`")

    @classmethod
    def current_version(cls) -> int:
        """The schema_version this class reads and writes."""
        return int(cls.model_fields["schema_version"].default)

    def key(self) -> bytes:
        """The Kafka message key: the service area."""
        return str(getattr(self, self.partition_key_field)).encode("utf-8")

    def to_bytes(self) -> bytes:
        """The Kafka message value: UTF-8 JSON."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def caused_by(cls, other: IntegrationEvent) -> dict[str, UUID]:
        """Envelope fields for a follow-up event caused by `other`:
        `Follow(**Follow.caused_by(cause), service_area_id=..., payload=...)`."""
        return {"correlation_id": other.correlation_id, "causation_id": other.event_id}
