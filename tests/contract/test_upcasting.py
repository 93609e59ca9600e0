"""Upcasters lift old messages to the version a consumer reads, one version at a time.

No event has a second version yet, so these tests register test-only upcasters (and, for the chain,
a test-only version 2 model) with monkeypatch; the real registry is restored afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.events import OrderCancelled
from contracts.registry import EVENT_TYPES, UPCASTERS, ContractError, parse_event
from contracts.topics import ORDERS


def _rename_cancel_reason(data: dict[str, Any]) -> dict[str, Any]:
    """v0 -> v1: a pre-release producer called the field `cancel_reason`."""
    data["payload"]["reason"] = data["payload"].pop("cancel_reason")
    return data


def test_upcaster_lifts_an_old_message(message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A v0 message is upcast to v1 and parsed as the current model."""
    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", 0), _rename_cancel_reason)
    raw = message("OrderCancelled", schema_version=0)
    raw["payload"]["cancel_reason"] = raw["payload"].pop("reason")

    event = parse_event(raw)

    assert isinstance(event, OrderCancelled)
    assert event.schema_version == 1
    assert event.payload.reason == "in hospital"
    assert str(event.event_id) == raw["event_id"]
    # The caller's dict is left as it was (it may be logged or sent to the DLQ).
    assert raw["schema_version"] == 0 and "cancel_reason" in raw["payload"]


def test_upcasters_chain_to_the_current_version(
    message: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a v2 model, a v0 message passes through 0->1 and 1->2, in that order."""

    class OrderCancelledPayloadV2(EventPayload):
        order_id: str
        elder_id: str
        reason_code: str
        reason_text: str

    class OrderCancelled(IntegrationEvent):  # the test's v2 of the same type
        topic: ClassVar[str] = ORDERS
        type: Literal["OrderCancelled"] = "OrderCancelled"
        schema_version: Literal[2] = 2
        payload: OrderCancelledPayloadV2

    applied: list[int] = []

    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        applied.append(data["schema_version"])
        return _rename_cancel_reason(data)

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        applied.append(data["schema_version"])
        data["payload"]["reason_code"] = "other"
        data["payload"]["reason_text"] = data["payload"].pop("reason")
        return data

    monkeypatch.setitem(EVENT_TYPES, "OrderCancelled", OrderCancelled)
    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", 0), v0_to_v1)
    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", 1), v1_to_v2)
    raw = message("OrderCancelled", schema_version=0)
    raw["payload"]["cancel_reason"] = raw["payload"].pop("reason")

    event = parse_event(raw)

    assert applied == [0, 1]
    assert isinstance(event, OrderCancelled)
    assert event.schema_version == 2
    assert event.payload.reason_code == "other"
    assert event.payload.reason_text == "in hospital"
    # A v1 message only takes the last step.
    applied.clear()
    assert parse_event(message("OrderCancelled", schema_version=1)).schema_version == 2
    assert applied == [1]


def test_broken_chain_is_a_contract_error(message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a step of the chain is missing, the message is refused and the gap is named."""
    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", -1), lambda data: data)
    with pytest.raises(ContractError, match="no upcaster from version 0"):
        parse_event(message("OrderCancelled", schema_version=-1))


def test_upcast_result_is_still_validated(message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upcaster that produces an invalid message does not slip it past validation."""
    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", 0), lambda data: data)
    raw = message("OrderCancelled", schema_version=0)
    raw["payload"]["cancel_reason"] = raw["payload"].pop("reason")
    with pytest.raises(ContractError, match="payload.reason: Field required"):
        parse_event(raw)
