"""Dispatch's translator: domain events -> integration events (raw domain events never leave).

Integration event ids derive from the domain event, so the outbox relay republishing after a crash
sends the very same events again, and consumers recognise them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import uuid5

from contracts.envelope import IntegrationEvent
from contracts.events.orders import OrderCancelled, OrderPlaced
from contracts.events.visits import (
    ElderErased,
    VisitCancelled,
    VisitCheckedIn,
    VisitCheckedOut,
    VisitDisputed,
    VisitRescheduled,
    VisitScheduled,
    VisitVerified,
)
from services.runtime.outbox import aggregate_at, envelope


def _point(lat: float | None, lon: float | None) -> dict[str, float] | None:
    return None if lat is None or lon is None else {"lat": lat, "lon": lon}


def translate(app: Any, domain_event: Any) -> Iterable[IntegrationEvent]:
    """The integration events a dispatch domain event becomes (none for most)."""
    name = type(domain_event).__qualname__
    if name.startswith("ServiceOrder."):
        yield from _order_events(app, name, domain_event)
    elif name.startswith("Visit."):
        yield from _visit_events(app, name, domain_event)
    elif name == "Elder.Erased":
        yield from _erasure_events(app, domain_event)


def _erasure_events(app: Any, domain_event: Any) -> Iterable[IntegrationEvent]:
    """An erasure goes to every service, which shreds its own key of the elder."""
    elder = aggregate_at(app, domain_event)
    yield ElderErased(
        **envelope(domain_event, ElderErased, elder.service_area_id, uuid5(
            domain_event.originator_id, "erasure")),
        payload={"elder_id": elder.elder_id, "erased_by": domain_event.by,
                 "erased_at": domain_event.at},
    )


def _order_events(app: Any, name: str, domain_event: Any) -> Iterable[IntegrationEvent]:
    if name not in ("ServiceOrder.Placed", "ServiceOrder.Cancelled"):
        return
    order = aggregate_at(app, domain_event)
    if getattr(order, "origin_event_id", None) and name == "ServiceOrder.Placed":
        return  # it came from the topic; publishing it back would only echo
    env = envelope(
        domain_event,
        OrderPlaced if name.endswith("Placed") else OrderCancelled,
        order.service_area_id,
        order.correlation_id,
    )
    if name == "ServiceOrder.Placed":
        yield OrderPlaced(
            **env,
            payload={
                "order_id": order.order_id,
                "elder_id": order.elder_id,
                "service_type": order.service_type,
                "source": order.source,
                "priority": order.priority,
                "emergency": order.emergency,
                "requested_date": order.requested_date,
                "window_start": order.window_start,
                "window_end": order.window_end,
                "duration_minutes": order.duration_minutes,
                "staff_count": order.staff_count,
                "use_time_credits": order.use_time_credits,
                "time_credit_account_id": order.time_credit_account_id,
                "out_of_pocket_agreed": order.out_of_pocket_agreed,
                "notes": order.notes,
                "placed_by": order.placed_by,
            },
        )
    else:
        yield OrderCancelled(
            **env,
            payload={
                "order_id": order.order_id,
                "elder_id": order.elder_id,
                "reason": order.cancel_reason,
                "cancelled_by": order.cancelled_by,
            },
        )


def _visit_events(app: Any, name: str, domain_event: Any) -> Iterable[IntegrationEvent]:
    kinds: dict[str, type[IntegrationEvent]] = {
        "Visit.Scheduled": VisitScheduled,
        "Visit.CheckedIn": VisitCheckedIn,
        "Visit.CheckedOut": VisitCheckedOut,
        "Visit.Verified": VisitVerified,
        "Visit.Cancelled": VisitCancelled,
        # The elder not at home, or nobody came: the visit will not take place (holds go back).
        "Visit.NoShow": VisitCancelled,
        "Visit.Missed": VisitCancelled,
        "Visit.Rescheduled": VisitRescheduled,
        "Visit.ReviewRejected": VisitDisputed,
    }
    cls = kinds.get(name)
    if cls is None:
        return
    v = aggregate_at(app, domain_event)
    env = envelope(domain_event, cls, v.service_area_id, v.correlation_id)
    if cls is VisitScheduled:
        payload: dict[str, Any] = {
            "visit_id": v.visit_id,
            "order_id": v.order_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "caregiver_kind": v.caregiver_kind,
            "provider_id": v.provider_id,
            "service_type": v.service_type,
            "planned_start": v.planned_start,
            "planned_end": v.planned_end,
            "planned_minutes": v.planned_minutes,
            "use_time_credits": v.use_time_credits,
            "time_credit_account_id": v.time_credit_account_id,
            "out_of_pocket_agreed": v.out_of_pocket_agreed,
        }
    elif cls is VisitCheckedIn:
        payload = {
            "visit_id": v.visit_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "at": v.checked_in_at,
            "location": _point(v.check_in_lat, v.check_in_lon),
            "location_verified": v.check_in_verified,
            "distance_m": v.check_in_distance_m,
            "method": v.check_in_method,
        }
    elif cls is VisitCheckedOut:
        payload = {
            "visit_id": v.visit_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "at": v.checked_out_at,
            "location": _point(v.check_out_lat, v.check_out_lon),
            "location_verified": v.check_out_verified,
            "tasks_done": v.tasks_done,
            "actual_minutes": v.actual_minutes,
        }
    elif cls is VisitVerified:
        payload = {
            "visit_id": v.visit_id,
            "order_id": v.order_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "caregiver_kind": v.caregiver_kind,
            "provider_id": v.provider_id,
            "service_type": v.service_type,
            "started_at": v.checked_in_at,
            "ended_at": v.checked_out_at,
            "actual_minutes": v.actual_minutes,
            "planned_minutes": v.planned_minutes,
            "confirmation": v.confirmation,
            "location_verified": v.location_verified,
        }
    elif cls is VisitRescheduled:
        payload = {
            "visit_id": v.visit_id,
            "order_id": v.order_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "previous_caregiver_id": v.previous_caregiver_id,
            "planned_start": v.planned_start,
            "planned_end": v.planned_end,
            "planned_minutes": v.planned_minutes,
            "reason": v.reschedule_reason,
        }
    elif cls is VisitDisputed:
        payload = {
            "visit_id": v.visit_id,
            "elder_id": v.elder_id,
            "caregiver_id": v.caregiver_id,
            "reason": v.review["reason"],
            "raised_by": v.review["by"],
        }
    else:
        payload = {
            "visit_id": v.visit_id,
            "order_id": v.order_id,
            "elder_id": v.elder_id,
            "reason": v.cancel_reason,
            "cancelled_by": v.cancelled_by,
        }
    yield cls(**env, payload=payload)
