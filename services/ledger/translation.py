"""The ledger's translator: domain events -> integration events on homecare.funding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.envelope import IntegrationEvent
from contracts.events.funding import (
    CreditsHoldRequested,
    EntitlementExhausted,
    HoursReserved,
    ReservationRejected,
    ReservationReleased,
    VisitCharged,
)
from services.runtime.outbox import aggregate_at, envelope


def translate(app: Any, domain_event: Any) -> Iterable[IntegrationEvent]:
    name = type(domain_event).__qualname__
    if name.startswith("Reservation."):
        yield from _reservation_events(app, name, domain_event)
    elif name in ("Charge.Made", "Charge.Unblocked"):
        yield from _charge_events(app, domain_event)


def _reservation_events(app: Any, name: str, e: Any) -> Iterable[IntegrationEvent]:
    kinds: dict[str, type[IntegrationEvent]] = {
        "Reservation.CreditsRequested": CreditsHoldRequested,
        "Reservation.Held": HoursReserved,
        "Reservation.Rejected": ReservationRejected,
        "Reservation.Released": ReservationReleased,
        "Reservation.Charged": ReservationReleased,
    }
    cls = kinds.get(name)
    if cls is None:
        return
    r = aggregate_at(app, e)
    env = envelope(e, cls, r.service_area_id, r.correlation_id, r.cause_event_id)
    if cls is CreditsHoldRequested:
        yield CreditsHoldRequested(**env, payload={
            "visit_id": r.visit_id, "elder_id": r.elder_id, "account_id": r.credit_account_id,
            "minutes": r.credits_asked, "expires_at": r.expires_at})
    elif cls is HoursReserved:
        yield HoursReserved(**env, payload={
            "reservation_id": str(r.id), "visit_id": r.visit_id, "elder_id": r.elder_id,
            "requested_minutes": r.requested_minutes, "expires_at": r.expires_at,
            "legs": [{"source": leg["source"], "account_id": leg["account"],
                      "minutes": leg["minutes"]} for leg in r.legs]})
    elif cls is ReservationRejected:
        yield ReservationRejected(**env, payload={
            "visit_id": r.visit_id, "elder_id": r.elder_id,
            "requested_minutes": r.requested_minutes,
            "available_minutes": r.available_minutes, "reason": r.rejection})
    elif name == "Reservation.Released":
        yield ReservationReleased(**env, payload={
            "reservation_id": str(r.id), "visit_id": r.visit_id, "elder_id": r.elder_id,
            "released_minutes": r.released_minutes, "reason": r.release_reason})
    else:  # charged: what was held and not used goes back
        remainder = r.held_minutes - sum(r.shares)
        if remainder > 0:
            yield ReservationReleased(**env, payload={
                "reservation_id": str(r.id), "visit_id": r.visit_id, "elder_id": r.elder_id,
                "released_minutes": remainder, "reason": "verified_remainder"})


def _charge_events(app: Any, e: Any) -> Iterable[IntegrationEvent]:
    c = aggregate_at(app, e)
    if c.blocked or c.charged_minutes == 0:
        return  # blocked: announced when the provider is reinstated; nothing posted: nothing to say
    env = envelope(e, VisitCharged, c.service_area_id, c.correlation_id, c.cause_event_id)
    yield VisitCharged(**env, payload={
        "visit_id": c.visit_id, "elder_id": c.elder_id, "provider_id": c.provider_id,
        "charged_minutes": c.charged_minutes, "legs": c.legs, "posting_ids": c.transfer_ids})
    if c.entitlement_exhausted:
        yield EntitlementExhausted(
            **envelope(e, EntitlementExhausted, c.service_area_id, c.correlation_id,
                       c.cause_event_id),
            payload={"elder_id": c.elder_id, "month": c.service_month,
                     "entitled_minutes": c.entitled_minutes, "used_minutes": c.used_minutes})
