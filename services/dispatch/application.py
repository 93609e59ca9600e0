"""Dispatch: elders, caregivers, orders and verified visits (commands and queries)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent

from contracts.envelope import IntegrationEvent
from contracts.events.orders import OrderCancelled, OrderPlaced
from contracts.topics import ORDERS
from contracts.values import CaregiverKind, CheckMethod, OrderSource, Priority, ServiceType
from services.dispatch.domain.assignment import CandidateCaregiver, NoCaregiverAvailable, assign
from services.dispatch.domain.catalogue import catalogue_entry
from services.dispatch.domain.people import Caregiver, Elder
from services.dispatch.domain.visits import (
    DispatchError,
    ServiceOrder,
    Visit,
    VisitState,
)
from services.dispatch.translation import translate
from services.runtime.eventstore import ServiceApplication, stable_id
from services.runtime.readmodel import FollowingReadModel


class NotFound(LookupError):
    pass


@dataclass
class PlaceOrder:
    """The command behind every order, whatever its source."""

    elder_id: str
    service_type: ServiceType
    requested_date: date
    order_id: str = field(default_factory=lambda: f"O-{uuid4().hex[:12]}")
    source: OrderSource = OrderSource.HOTLINE
    priority: Priority | None = None
    emergency: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    duration_minutes: int | None = None
    staff_count: int | None = None
    use_time_credits: bool = False
    time_credit_account_id: str | None = None
    out_of_pocket_agreed: bool = False
    notes: str | None = None
    placed_by: str | None = None
    correlation_id: str = field(default_factory=lambda: str(uuid4()))
    origin_event_id: str | None = None  # set when the order arrived on homecare.orders


class DispatchApplication(ServiceApplication):
    name = "Dispatch"
    # What this service consumes: topic -> integration event types it acts on.
    subscriptions: dict[str, set[str]] = {ORDERS: {"OrderPlaced", "OrderCancelled"}}

    def __init__(self, env: dict[str, str] | None = None, timezone: str = "Asia/Shanghai"):
        super().__init__(env)
        self.tz = ZoneInfo(timezone)
        self._elders_by_area: dict[str, set[str]] = defaultdict(set)
        self._caregivers_by_area: dict[str, set[str]] = defaultdict(set)
        self._visits_by_day: dict[tuple[str, date], set[str]] = defaultdict(set)
        self._visit_bookings: dict[str, tuple[str, date, datetime, datetime, bool]] = {}
        self.index = FollowingReadModel(self, self._index)

    # Read model ------------------------------------------------------------------------------
    def _index(self, domain_event: Any) -> None:
        name = type(domain_event).__qualname__
        if name == "Elder.Registered":
            self._elders_by_area[domain_event.service_area_id].add(domain_event.elder_id)
        elif name == "Caregiver.Registered":
            self._caregivers_by_area[domain_event.service_area_id].add(domain_event.caregiver_id)
        elif name == "Visit.Scheduled":
            day = domain_event.planned_start.astimezone(self.tz).date()
            self._visits_by_day[(domain_event.service_area_id, day)].add(domain_event.visit_id)
            self._visit_bookings[domain_event.visit_id] = (
                domain_event.caregiver_id, day, domain_event.planned_start,
                domain_event.planned_end, True,
            )
        elif name == "Visit.Cancelled":
            vid = self._visit_id_of(domain_event.originator_id)
            if vid in self._visit_bookings:
                c, d, s, e, _ = self._visit_bookings[vid]
                self._visit_bookings[vid] = (c, d, s, e, False)

    def _visit_id_of(self, originator_id: UUID) -> str | None:
        for vid in self._visit_bookings:
            if Visit.create_id(vid) == originator_id:
                return vid
        return None

    # Registration ----------------------------------------------------------------------------
    def register_elder(self, **facts: Any) -> Elder:
        elder = self.get_or_none(Elder.create_id(facts["elder_id"]))
        if elder is not None:
            return elder  # registration is idempotent by elder number
        elder = Elder(**facts)
        self.save(elder)
        return elder

    def register_caregiver(self, **facts: Any) -> Caregiver:
        caregiver = self.get_or_none(Caregiver.create_id(facts["caregiver_id"]))
        if caregiver is not None:
            return caregiver
        caregiver = Caregiver(**facts)
        self.save(caregiver)
        return caregiver

    def get_elder(self, elder_id: str) -> Elder:
        return self._get(Elder.create_id(elder_id), f"no elder {elder_id}")

    def get_caregiver(self, caregiver_id: str) -> Caregiver:
        return self._get(Caregiver.create_id(caregiver_id), f"no caregiver {caregiver_id}")

    def list_elders(self, service_area_id: str) -> list[Elder]:
        self.index.catch_up()
        return [self.get_elder(e) for e in sorted(self._elders_by_area[service_area_id])]

    def list_caregivers(self, service_area_id: str) -> list[Caregiver]:
        self.index.catch_up()
        return [self.get_caregiver(c) for c in sorted(self._caregivers_by_area[service_area_id])]

    # Orders ----------------------------------------------------------------------------------
    def place_order(self, command: PlaceOrder) -> tuple[ServiceOrder, Visit | None]:
        aggregates = self._place(command)
        if not aggregates:
            order = self.get_order(command.order_id)
            return order, self._first_visit(order)
        self.save(*aggregates)
        order = aggregates[0]
        return order, aggregates[1] if len(aggregates) > 1 else None

    def _place(self, command: PlaceOrder) -> list[Any]:
        """The order and (when a caregiver fits) its visit, unsaved; [] if placed before."""
        if self.get_or_none(ServiceOrder.create_id(command.order_id)) is not None:
            return []
        elder = self.get_elder(command.elder_id)
        entry = catalogue_entry(command.service_type)
        duration = command.duration_minutes or entry.default_minutes
        if duration <= 0:
            raise DispatchError("duration_minutes must be positive")
        priority = command.priority or (Priority.EMERGENCY if command.emergency else entry.priority)
        order = ServiceOrder(
            order_id=command.order_id,
            elder_id=elder.elder_id,
            service_area_id=elder.service_area_id,
            service_type=command.service_type,
            source=command.source,
            priority=priority,
            emergency=command.emergency,
            requested_date=command.requested_date,
            window_start=command.window_start,
            window_end=command.window_end,
            duration_minutes=duration,
            staff_count=command.staff_count or entry.staff_count,
            use_time_credits=command.use_time_credits,
            time_credit_account_id=command.time_credit_account_id,
            out_of_pocket_agreed=command.out_of_pocket_agreed,
            notes=command.notes,
            placed_by=command.placed_by,
            correlation_id=command.correlation_id,
            origin_event_id=command.origin_event_id,
        )
        try:
            choice = assign(
                entry, duration, command.requested_date, command.window_start,
                command.window_end, self._candidates(elder.service_area_id,
                                                     command.requested_date), self.tz,
            )
        except NoCaregiverAvailable as reason:
            order.mark_unassigned(reason=str(reason))
            return [order]
        caregiver = self.get_caregiver(choice.caregiver_id)
        visit_id = f"V-{order.order_id}"
        visit = Visit(
            visit_id=visit_id,
            order_id=order.order_id,
            elder_id=elder.elder_id,
            service_area_id=elder.service_area_id,
            caregiver_id=caregiver.caregiver_id,
            caregiver_kind=caregiver.kind,
            provider_id=caregiver.provider_id,
            service_type=order.service_type,
            planned_start=choice.start,
            planned_end=choice.end,
            home_lat=elder.lat,
            home_lon=elder.lon,
            use_time_credits=order.use_time_credits,
            time_credit_account_id=order.time_credit_account_id,
            out_of_pocket_agreed=order.out_of_pocket_agreed,
            correlation_id=order.correlation_id,
        )
        order.mark_scheduled(visit_id=visit_id)
        return [order, visit]

    def _candidates(self, service_area_id: str, day: date) -> list[CandidateCaregiver]:
        self.index.catch_up()
        booked: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for caregiver_id, d, start, end, active in self._visit_bookings.values():
            if d == day and active:
                booked[caregiver_id].append((start, end))
        return [
            CandidateCaregiver(
                caregiver_id=c.caregiver_id,
                kind=c.kind,
                skills=frozenset(c.skills),
                certified=c.is_certified_on(day),
                booked=tuple(booked[c.caregiver_id]),
            )
            for c in self.list_caregivers(service_area_id)
        ]

    def get_order(self, order_id: str) -> ServiceOrder:
        return self._get(ServiceOrder.create_id(order_id), f"no order {order_id}")

    def _first_visit(self, order: ServiceOrder) -> Visit | None:
        return self.get_visit(order.visit_ids[0]) if order.visit_ids else None

    def cancel_order(self, order_id: str, reason: str, cancelled_by: str | None) -> ServiceOrder:
        order = self.get_order(order_id)
        self.save(*self._cancel(order, reason, cancelled_by))
        return order

    def _cancel(self, order: ServiceOrder, reason: str, cancelled_by: str | None) -> list[Any]:
        """Cancel the order and its visits that have not started; unsaved."""
        order.cancel(reason=reason, cancelled_by=cancelled_by)
        visits = [self.get_visit(v) for v in order.visit_ids]
        for visit in visits:
            if visit.state in (VisitState.SCHEDULED, VisitState.EN_ROUTE):
                visit.cancel(reason=reason, cancelled_by=cancelled_by or "order cancelled")
        return [order, *visits]

    # Visits ----------------------------------------------------------------------------------
    def get_visit(self, visit_id: str) -> Visit:
        return self._get(Visit.create_id(visit_id), f"no visit {visit_id}")

    def list_visits(self, service_area_id: str, day: date,
                    caregiver_id: str | None = None) -> list[Visit]:
        self.index.catch_up()
        visits = [self.get_visit(v) for v in sorted(self._visits_by_day[(service_area_id, day)])]
        if caregiver_id is not None:
            visits = [v for v in visits if v.caregiver_id == caregiver_id]
        return sorted(visits, key=lambda v: (v.planned_start, v.visit_id))

    def _visit_of_caregiver(self, visit_id: str, caregiver_id: str | None) -> Visit:
        visit = self.get_visit(visit_id)
        if caregiver_id is not None and caregiver_id != visit.caregiver_id:
            raise DispatchError(f"visit {visit_id} is not assigned to {caregiver_id}")
        return visit

    def check_in(self, visit_id: str, *, at: datetime, lat: float | None, lon: float | None,
                 method: CheckMethod = CheckMethod.GPS, caregiver_id: str | None = None) -> Visit:
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        visit.check_in(at=at, lat=lat, lon=lon, method=method)
        self.save(visit)
        return visit

    def check_out(self, visit_id: str, *, at: datetime, lat: float | None, lon: float | None,
                  tasks_done: list[str], confirmation_code: str | None = None,
                  family_proxy_confirmed: bool = False,
                  caregiver_id: str | None = None) -> Visit:
        """Check out, and verify at once when the visit is complete and confirmed."""
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        elder = self.get_elder(visit.elder_id)
        visit.check_out(at=at, lat=lat, lon=lon, tasks_done=tasks_done,
                        confirmation_code=confirmation_code,
                        family_proxy_confirmed=family_proxy_confirmed,
                        elder_code=elder.confirmation_code)
        gaps = visit.verification_gaps()
        if gaps:
            visit.flag_for_review(gaps=gaps)
        else:
            visit.verify(by="automatic")
        self.save(visit)
        return visit

    def verify(self, visit_id: str, *, by: str, override_reason: str | None = None) -> Visit:
        visit = self.get_visit(visit_id)
        visit.verify(by=by, override_reason=override_reason)
        self.save(visit)
        return visit

    def cancel_visit(self, visit_id: str, *, reason: str, cancelled_by: str) -> Visit:
        visit = self.get_visit(visit_id)
        visit.cancel(reason=reason, cancelled_by=cancelled_by)
        self.save(visit)
        return visit

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        if isinstance(event, OrderPlaced):
            p = event.payload
            aggregates = self._place(PlaceOrder(
                order_id=p.order_id, elder_id=p.elder_id, service_type=p.service_type,
                requested_date=p.requested_date, source=p.source, priority=p.priority,
                emergency=p.emergency, window_start=p.window_start, window_end=p.window_end,
                duration_minutes=p.duration_minutes, staff_count=p.staff_count,
                use_time_credits=p.use_time_credits,
                time_credit_account_id=p.time_credit_account_id,
                out_of_pocket_agreed=p.out_of_pocket_agreed, notes=p.notes,
                placed_by=p.placed_by, correlation_id=str(event.correlation_id),
                origin_event_id=str(event.event_id),
            ))
            processing.collect_events(*aggregates)
        elif isinstance(event, OrderCancelled):
            order = self.get_or_none(ServiceOrder.create_id(event.payload.order_id))
            if order is None or order.state == "cancelled":
                return
            processing.collect_events(
                *self._cancel(order, event.payload.reason, event.payload.cancelled_by))

    # Helpers ---------------------------------------------------------------------------------
    def _get(self, aggregate_id: UUID, message: str) -> Any:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(message) from None

    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        return translate(self, domain_event)


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tz)
    return start, start + timedelta(days=1)


__all__ = ["DispatchApplication", "PlaceOrder", "NotFound", "DispatchError", "stable_id",
           "CaregiverKind"]
