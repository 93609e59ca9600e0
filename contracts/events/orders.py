"""Events on `homecare.orders`: commands into dispatch."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import model_validator

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.topics import ORDERS
from contracts.values import (
    GeoPoint,
    Id,
    OrderSource,
    PositiveMinutes,
    Priority,
    ServiceType,
    UtcDateTime,
)

__all__ = ["OrderPlaced", "OrderPlacedPayload", "OrderCancelled", "OrderCancelledPayload"]


class OrderPlacedPayload(EventPayload):
    order_id: Id
    elder_id: Id
    service_type: ServiceType
    source: OrderSource
    priority: Priority
    emergency: bool
    requested_date: date
    window_start: UtcDateTime | None = None
    window_end: UtcDateTime | None = None
    duration_minutes: PositiveMinutes
    staff_count: Literal[1, 2] = 1  # bathing a bed-bound elder may need two caregivers at once
    location: GeoPoint | None = None
    use_time_credits: bool = False
    # None with use_time_credits: the time bank uses the elder's own account.
    time_credit_account_id: Id | None = None
    out_of_pocket_agreed: bool = False
    notes: str | None = None
    placed_by: str | None = None

    @model_validator(mode="after")
    def _window_is_ordered(self) -> OrderPlacedPayload:
        if (
            self.window_start is not None
            and self.window_end is not None
            and self.window_end <= self.window_start
        ):
            raise ValueError("window_end must be after window_start")
        return self


class OrderPlaced(IntegrationEvent):
    """An order for a visit was taken (hotline, care plan, app, SOS ...)."""

    topic: ClassVar[str] = ORDERS
    type: Literal["OrderPlaced"] = "OrderPlaced"
    schema_version: Literal[1] = 1
    payload: OrderPlacedPayload


class OrderCancelledPayload(EventPayload):
    order_id: Id
    elder_id: Id
    reason: str
    cancelled_by: str | None = None


class OrderCancelled(IntegrationEvent):
    """An order was withdrawn before or after it was scheduled."""

    topic: ClassVar[str] = ORDERS
    type: Literal["OrderCancelled"] = "OrderCancelled"
    schema_version: Literal[1] = 1
    payload: OrderCancelledPayload
