"""The envelope: partition key, UTC instants, causation chain, tolerance of newer producers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

import pytest
from pydantic import ValidationError

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.events import OrderCancelled, OrderPlaced, VisitScheduled, VisitVerified
from contracts.registry import parse_event

SHANGHAI = timezone(timedelta(hours=8))


def test_key_is_the_service_area(any_event: IntegrationEvent) -> None:
    """Every event is keyed by its service area, so one elder's events share a partition."""
    assert type(any_event).partition_key_field == "service_area_id"
    assert any_event.key() == b"yiwu-choucheng"


def test_occurred_at_is_normalised_to_utc(message: Any) -> None:
    """An instant with a +08:00 offset is stored as the same instant in UTC."""
    local = datetime(2026, 3, 2, 9, 30, tzinfo=SHANGHAI)
    event = parse_event(message("OrderCancelled", occurred_at=local.isoformat()))
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at == local


def test_payload_instants_are_normalised_to_utc(message: Any) -> None:
    """Payload instants (here planned_start/planned_end) are UTC too."""
    raw = message("VisitScheduled")
    raw["payload"]["planned_start"] = "2026-03-02T09:30:00+08:00"
    raw["payload"]["planned_end"] = "2026-03-02T10:30:00+08:00"
    event = parse_event(raw)
    assert isinstance(event, VisitScheduled)
    assert event.payload.planned_start.tzinfo is not None
    assert event.payload.planned_start.utcoffset() == timedelta(0)
    assert event.payload.planned_start.hour == 1


def test_naive_instants_are_rejected(message: Any) -> None:
    """A time without an offset is ambiguous (local? UTC?) and is refused."""
    with pytest.raises(ValueError, match="occurred_at"):
        parse_event(message("OrderCancelled", occurred_at="2026-03-02T09:30:00"))


def test_defaults_give_fresh_ids_and_now() -> None:
    """Producers need not fill ids or the time: each event gets new UUIDs and a UTC now."""
    payload = {"order_id": "o1", "elder_id": "e1", "reason": "r"}
    first = OrderCancelled(service_area_id="sa", payload=payload)
    second = OrderCancelled(service_area_id="sa", payload=payload)
    assert first.event_id != second.event_id
    assert first.correlation_id != second.correlation_id
    assert first.causation_id is None
    assert first.type == "OrderCancelled" and first.schema_version == 1
    assert abs(datetime.now(first.occurred_at.tzinfo) - first.occurred_at) < timedelta(minutes=1)
    assert first.occurred_at.utcoffset() == timedelta(0)


def test_caused_by_links_follow_up_events(message: Any) -> None:
    """A follow-up event keeps the correlation id of its cause and points at it by event id."""
    verified = parse_event(message("VisitVerified"))
    follow = VisitVerified.caused_by(verified)
    assert follow == {
        "correlation_id": verified.correlation_id,
        "causation_id": verified.event_id,
    }
    order = parse_event(message("OrderPlaced"))
    scheduled = VisitScheduled(
        **VisitScheduled.caused_by(order),
        service_area_id=order.service_area_id,
        payload=message("VisitScheduled")["payload"],
    )
    assert scheduled.correlation_id == order.correlation_id
    assert scheduled.causation_id == order.event_id


def test_unknown_fields_from_newer_producers_are_ignored(message: Any) -> None:
    """An older consumer accepts a message with fields it does not know, at every level."""
    raw = message("OrderPlaced", tenant="yiwu")
    raw["payload"]["preferred_gender"] = "female"
    raw["payload"]["location"]["accuracy_m"] = 8
    event = parse_event(raw)
    assert isinstance(event, OrderPlaced)
    assert "tenant" not in event.model_dump()
    assert "preferred_gender" not in event.payload.model_dump()


def test_events_are_immutable(any_event: IntegrationEvent) -> None:
    """An event is a fact: it cannot be changed after it is built."""
    with pytest.raises(ValidationError):
        any_event.service_area_id = "elsewhere"  # type: ignore[misc]


def test_type_and_version_must_match_the_class(message: Any) -> None:
    """A VisitVerified model refuses a body that says it is something else or another version."""
    with pytest.raises(ValidationError):
        VisitVerified.model_validate(message("VisitVerified", type="VisitCharged"))
    with pytest.raises(ValidationError):
        VisitVerified.model_validate(message("VisitVerified", schema_version=2))


def test_service_area_is_required(message: Any) -> None:
    """Without a service area there is no partition key."""
    with pytest.raises(ValueError, match="service_area_id"):
        parse_event(message("VisitVerified", service_area_id=""))


def test_subclass_mistakes_fail_at_import_time() -> None:
    """A new event whose type default is not its class name, or without a topic, cannot exist."""

    class _Payload(EventPayload):
        x: int

    with pytest.raises(TypeError, match="type must default"):

        class Misnamed(IntegrationEvent):
            topic: ClassVar[str] = "homecare.orders"
            type: Literal["SomethingElse"] = "SomethingElse"
            schema_version: Literal[1] = 1
            payload: _Payload

    with pytest.raises(TypeError, match="topic"):

        class Homeless(IntegrationEvent):
            type: Literal["Homeless"] = "Homeless"
            schema_version: Literal[1] = 1
            payload: _Payload
