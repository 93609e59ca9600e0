"""Dispatch: elders, caregivers, orders, care plans, daily plans, verified visits and alerts."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import IntegrityError

from contracts.envelope import IntegrationEvent
from contracts.events.funding import (
    CreditsReservationRejected,
    CreditsReserved,
    HoursReserved,
    ReservationRejected,
)
from contracts.events.orders import OrderCancelled, OrderPlaced
from contracts.topics import FUNDING, ORDERS
from contracts.values import CaregiverKind, CheckMethod, OrderSource, Priority, ServiceType
from services.dispatch.domain.alerts import Alert, AlertKind
from services.dispatch.domain.areas import AreaRules, ServiceArea
from services.dispatch.domain.assignment import CandidateCaregiver, NoCaregiverAvailable, assign
from services.dispatch.domain.catalogue import DEFAULT_CATALOGUE, CatalogueEntry
from services.dispatch.domain.people import (
    SEVERE_DEPENDENCY_LEVEL,
    Caregiver,
    Elder,
    Provider,
    parse_hhmm,
)
from services.dispatch.domain.plans import CarePlan, ReplanProposal
from services.dispatch.domain.visits import (
    FINISHED,
    NOT_STARTED,
    DispatchError,
    FundingStatus,
    IllegalTransition,
    InvalidInput,
    OrderState,
    ServiceOrder,
    Visit,
    VisitState,
)
from services.dispatch.planning import DayPlan, DayProblem, Job
from services.dispatch.routing.travel import LatLon
from services.dispatch.translation import translate
from services.runtime.eventstore import ServiceApplication, stable_id
from services.runtime.observability import record_plan
from services.runtime.personal import PersonalFields
from services.runtime.readmodel import FollowingReadModel
from services.runtime.sections import exclusive_sections


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Owner:
    """Whose a record is, for access checks: its service area, the caregivers on it and the
    elder it is for."""

    service_area_id: str
    caregiver_ids: frozenset[str] = frozenset()
    elder_id: str | None = None


def bookings_of(service_area_id: str) -> str:
    """The exclusive section in which the area's caregivers are booked: placing, claiming and
    planning read the area's bookings and write visits inside it."""
    return f"bookings:{service_area_id}"


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
    # Wait for the area's daily plan instead of taking the first free caregiver now.
    await_plan: bool = False
    care_plan_id: str | None = None
    emergency_position: dict[str, float] | None = None  # a wearable's SOS position


def _caregivers_of(e: Any) -> list[str]:
    """The caregivers a scheduling event names, their ids shared across the read model."""
    return [sys.intern(c) for c in (e.caregiver_id, getattr(e, "second_caregiver_id", None))
            if c]


@dataclass(slots=True)
class Booking:
    """What the read model keeps of a visit to find free caregivers without loading it
    (slotted: a month holds about 100,000 of them)."""

    caregiver_ids: list[str]
    start: datetime
    end: datetime
    state: str
    # When the visit actually began and ended (for the overlap check at check-out).
    checked_in_at: datetime | None = None
    checked_out_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state not in (VisitState.CANCELLED, VisitState.NO_SHOW, VisitState.MISSED)

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


# The visit state each event leads to.
STATE_AFTER = {"Visit.Departed": VisitState.EN_ROUTE, "Visit.CheckedIn": VisitState.CHECKED_IN,
               "Visit.CheckedOut": VisitState.CHECKED_OUT, "Visit.Verified": VisitState.VERIFIED,
               "Visit.Cancelled": VisitState.CANCELLED, "Visit.NoShow": VisitState.NO_SHOW,
               "Visit.Missed": VisitState.MISSED, "Visit.ReviewRejected": VisitState.DISPUTED,
               "Visit.Rescheduled": VisitState.SCHEDULED,
               "Visit.Reinstated": VisitState.SCHEDULED}

# The events the read model (_index) acts on; the others are not decoded to follow the log.
INDEXED_EVENTS = frozenset({
    "Elder.Registered", "Caregiver.Registered", "Provider.Registered", "ServiceOrder.Placed",
    "CarePlan.Created", "Visit.Scheduled", "Visit.Rescheduled", "Visit.CheckedIn",
    "Visit.CheckedOut", "Alert.Raised", "ReplanProposal.Proposed", *STATE_AFTER})

# Personal data, encrypted per elder before it is stored (crypto-shredded on erasure): the
# elder's registration, and alerts about an elder (their messages name the elder and may give
# the family's phone number).
ELDER_PII = ("name", "address", "phone", "family_phone", "id_number")
PERSONAL_DATA: dict[type | str, PersonalFields] = {
    Elder.Registered: PersonalFields("elder_id", ELDER_PII, kind="elder"),  # type: ignore[attr-defined]
    Alert.Raised: PersonalFields("elder_id", ("message",), kind="elder"),  # type: ignore[attr-defined]
}

# Which aggregate kinds the area stream carries, by class name prefix.
STREAMED = {"Visit": "visit", "Alert": "alert", "ReplanProposal": "proposal"}
# How far the clocks of two dispatch processes may disagree: a late-start alert raised by
# another replica's sweep is looked for from this long before its grace runs out.
CLOCK_SKEW_ALLOWED = timedelta(minutes=1)


class DispatchApplication(ServiceApplication):
    name = "Dispatch"
    # What this service consumes: topic -> integration event types it acts on.
    subscriptions: dict[str, set[str]] = {
        ORDERS: {"OrderPlaced", "OrderCancelled"},
        FUNDING: {"HoursReserved", "ReservationRejected", "CreditsReserved",
                  "CreditsReservationRejected"},
    }
    plan_time_limit_s = 2.0
    personal_data = PERSONAL_DATA
    # Visits, areas (their rules), orders, caregivers, providers and elders come from a cache
    # that follows the notification log (services/runtime/aggregate_cache.py), so several
    # dispatch processes stay correct: a check-in reads its visit twice (ownership check,
    # command) and its area's rules once; a check-out also reads its elder (the code: a fifth
    # of a check-out's CPU when read from the store and decrypted each time). An erasure blanks the
    # elder's personal fields in the state it saves, and every process evicts its cached copy
    # at its next unit of work that reads a cached aggregate (a request, a consumed batch, the
    # once-a-minute sweep), as it learns of a deleted key within 30 s. Alerts name the elder
    # in a sealed message and are never cached.
    env = {"AGGREGATE_CACHE_MAXSIZE": "5000"}
    cached_aggregates = (Visit, ServiceArea, ServiceOrder, Caregiver, Provider, Elder)

    def __init__(self, env: dict[str, str] | None = None, timezone: str = "Asia/Shanghai"):
        super().__init__(env)
        self.tz = ZoneInfo(timezone)
        # An area's caregivers are booked one decision at a time, in every process: two
        # placements at the same moment would both see the same caregiver free and book the
        # same time twice (each visit is a new aggregate, so no optimistic-concurrency conflict
        # stops the second). See bookings_of() and services/runtime/sections.py.
        self.sections = exclusive_sections(self)
        self._elders_by_area: dict[str, set[str]] = defaultdict(set)
        self._caregivers_by_area: dict[str, set[str]] = defaultdict(set)
        self._providers: set[str] = set()
        self._visits_by_day: dict[tuple[str, date], set[str]] = defaultdict(set)
        self._visit_day: dict[str, tuple[str, date]] = {}
        self._bookings: dict[str, Booking] = {}
        # visit id -> every caregiver ever assigned to it (a caregiver's own event stream)
        self._ever_assigned: dict[str, tuple[str, ...]] = {}
        # (area, day) keys, one object each, shared by the visits of the day
        self._day_keys: dict[tuple[str, date], tuple[str, date]] = {}
        self._orders_by_day: dict[tuple[str, date], set[str]] = defaultdict(set)
        self._alerts_by_area: dict[str, list[str]] = defaultdict(list)
        self._alerts_by_subject: dict[str, list[str]] = defaultdict(list)  # visit, proposal...
        self._proposals_by_area: dict[str, list[str]] = defaultdict(list)
        self._care_plans_by_area: dict[str, set[str]] = defaultdict(set)
        # originator id -> (area, stream kind, key) for the area's event stream
        self.stream_keys: dict[UUID, tuple[str, str, str]] = {}
        self.index = FollowingReadModel(self, self._index, applies_to=INDEXED_EVENTS)
        # The server's clock; tests and simulations replace it.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def close(self) -> None:
        self.sections.close()
        super().close()

    # Read model ------------------------------------------------------------------------------
    def _index(self, e: Any) -> None:
        name = type(e).__qualname__
        if name == "Elder.Registered":
            self._elders_by_area[e.service_area_id].add(e.elder_id)
        elif name == "Caregiver.Registered":
            self._caregivers_by_area[e.service_area_id].add(e.caregiver_id)
        elif name == "Provider.Registered":
            self._providers.add(e.provider_id)
        elif name == "ServiceOrder.Placed":
            self._orders_by_day[(e.service_area_id, e.requested_date)].add(e.order_id)
        elif name == "CarePlan.Created":
            self._care_plans_by_area[e.service_area_id].add(e.care_plan_id)
        elif name == "Visit.Scheduled":
            self._place_visit(e.visit_id, e.service_area_id, e.planned_start)
            self.stream_keys[e.originator_id] = (sys.intern(e.service_area_id), "visit",
                                                 e.visit_id)
            self._bookings[e.visit_id] = Booking(
                _caregivers_of(e), e.planned_start, e.planned_end, VisitState.SCHEDULED)
            self._assigned(e.visit_id, self._bookings[e.visit_id].caregiver_ids)
        elif name == "Visit.Rescheduled":
            area, _, visit_id = self.stream_keys[e.originator_id]
            self._place_visit(visit_id, area, e.planned_start)
            before = self._bookings[visit_id]
            self._bookings[visit_id] = Booking(
                _caregivers_of(e), e.planned_start, e.planned_end, VisitState.SCHEDULED,
                before.checked_in_at, before.checked_out_at)
            self._assigned(visit_id, self._bookings[visit_id].caregiver_ids)
        elif name == "Visit.CheckedIn" and e.originator_id in self.stream_keys:
            self._bookings[self.stream_keys[e.originator_id][2]].checked_in_at = e.at
        elif name == "Visit.CheckedOut" and e.originator_id in self.stream_keys:
            self._bookings[self.stream_keys[e.originator_id][2]].checked_out_at = e.at
        if name in STATE_AFTER and e.originator_id in self.stream_keys:
            self._bookings[self.stream_keys[e.originator_id][2]].state = STATE_AFTER[name]
        elif name == "Alert.Raised":
            self._alerts_by_area[e.service_area_id].append(e.alert_id)
            subject = e.alert_id.split(":", 1)[1].split("/", 1)[0]
            for key in {subject, e.visit_id} - {None}:
                self._alerts_by_subject[key].append(e.alert_id)
            self.stream_keys[e.originator_id] = (e.service_area_id, "alert", e.alert_id)
        elif name == "ReplanProposal.Proposed":
            self._proposals_by_area[e.service_area_id].append(e.proposal_id)
            self.stream_keys[e.originator_id] = (e.service_area_id, "proposal", e.proposal_id)

    def _place_visit(self, visit_id: str, area: str, start: datetime) -> None:
        day = start.astimezone(self.tz).date()
        old = self._visit_day.get(visit_id)
        if old is not None:
            self._visits_by_day[old].discard(visit_id)
        key = self._day_keys.setdefault((area, day), (sys.intern(area), day))
        self._visit_day[visit_id] = key
        self._visits_by_day[key].add(visit_id)

    def _assigned(self, visit_id: str, caregiver_ids: list[str]) -> None:
        before = self._ever_assigned.get(visit_id, ())
        self._ever_assigned[visit_id] = before + tuple(
            c for c in caregiver_ids if c not in before)

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    # Areas: rules and catalogue --------------------------------------------------------------
    def _area(self, service_area_id: str) -> ServiceArea | None:
        return self.get_or_none(ServiceArea.create_id(service_area_id))

    def rules(self, service_area_id: str) -> AreaRules:
        area = self.peek(ServiceArea.create_id(service_area_id))
        return area.rules if area else AreaRules()

    def catalogue(self, service_area_id: str) -> dict[ServiceType, CatalogueEntry]:
        area = self.peek(ServiceArea.create_id(service_area_id))
        return area.catalogue() if area else dict(DEFAULT_CATALOGUE)

    def configure_area(self, service_area_id: str, changes: dict[str, Any],
                       changed_by: str | None = None) -> AreaRules:
        unknown = set(changes) - AreaRules.names()
        if unknown:
            raise InvalidInput(f"unknown area settings: {', '.join(sorted(unknown))}")
        AreaRules().changed(**changes)  # refuse what would not make valid rules
        area = self._area(service_area_id) or ServiceArea(service_area_id=service_area_id)
        area.change_rules(changes=changes, changed_by=changed_by)
        self.save(area)
        return area.rules

    def change_catalogue_entry(self, service_area_id: str, service_type: ServiceType,
                               changes: dict[str, Any],
                               changed_by: str | None = None) -> CatalogueEntry:
        DEFAULT_CATALOGUE[service_type].changed(**changes)  # validates the field names
        area = self._area(service_area_id) or ServiceArea(service_area_id=service_area_id)
        area.change_catalogue_entry(service_type=str(service_type), changes=changes,
                                    changed_by=changed_by)
        self.save(area)
        return area.catalogue()[service_type]

    # Registration ----------------------------------------------------------------------------
    def register_elder(self, **facts: Any) -> Elder:
        elder = self.get_or_none(Elder.create_id(facts["elder_id"]))
        if elder is not None and elder.erased:
            raise DispatchError(f"elder {facts['elder_id']} was erased on request; register the "
                                "person again under a new id")
        if elder is not None:
            return elder  # registration is idempotent by elder number
        elder = Elder(**facts)
        self.save(elder)
        return elder

    def register_caregiver(self, **facts: Any) -> Caregiver:
        caregiver = self.get_or_none(Caregiver.create_id(facts["caregiver_id"]))
        if caregiver is not None:
            return caregiver
        if facts.get("provider_id") and self.get_or_none(
                Provider.create_id(facts["provider_id"])) is None:
            # A provider first seen with its caregiver: registered by its id.
            self.save(Provider(provider_id=facts["provider_id"], name=facts["provider_id"],
                               service_area_id=facts["service_area_id"]))
        caregiver = Caregiver(**facts)
        self.save(caregiver)
        return caregiver

    def register_provider(self, provider_id: str, name: str, service_area_id: str) -> Provider:
        provider = self.get_or_none(Provider.create_id(provider_id))
        if provider is None:
            provider = Provider(provider_id=provider_id, name=name,
                                service_area_id=service_area_id)
            self.save(provider)
        return provider

    def get_provider(self, provider_id: str) -> Provider:
        return self._get(Provider.create_id(provider_id), f"no provider {provider_id}")

    def blacklist_provider(self, provider_id: str, reason: str, by: str) -> Provider:
        provider = self.get_provider(provider_id)
        if not provider.blacklisted:
            provider.blacklist(reason=reason, by=by)
            self.save(provider)
        return provider

    def reinstate_provider(self, provider_id: str, reason: str, by: str) -> Provider:
        provider = self.get_provider(provider_id)
        if provider.blacklisted:
            provider.reinstate(by=by, reason=reason)
            self.save(provider)
        return provider

    def _blacklisted(self) -> set[str]:
        self.index.catch_up()
        return {p for p in self._providers if self.peek(Provider.create_id(p)).blacklisted}

    def get_elder(self, elder_id: str) -> Elder:
        return self._get(Elder.create_id(elder_id), f"no elder {elder_id}")

    def erase_elder(self, elder_id: str, by: str) -> Elder:
        """Erasure on request (PIPL art. 47): record who and when, then delete the elder's key.

        Idempotent: erasing again deletes the key again (in case that step failed before)."""
        elder = self.get_elder(elder_id)
        if not elder.erased:
            elder.erase(by=by, at=self.clock())
            self.save(elder)
        self.erase_subject(f"elder:{elder_id}")
        return elder

    def get_caregiver(self, caregiver_id: str) -> Caregiver:
        return self._get(Caregiver.create_id(caregiver_id), f"no caregiver {caregiver_id}")

    def change_preferences(self, elder_id: str, gender_preference: str | None,
                           preferred_caregiver_ids: list[str],
                           excluded_caregiver_ids: list[str]) -> Elder:
        elder = self.get_elder(elder_id)
        for c in [*preferred_caregiver_ids, *excluded_caregiver_ids]:
            self.get_caregiver(c)
        if set(preferred_caregiver_ids) & set(excluded_caregiver_ids):
            raise InvalidInput("a caregiver cannot be both preferred and excluded")
        elder.change_preferences(gender_preference=gender_preference,
                                 preferred_caregiver_ids=preferred_caregiver_ids,
                                 excluded_caregiver_ids=excluded_caregiver_ids)
        self.save(elder)
        return elder

    def assess_elder(self, elder_id: str, capability_level: int, assessed_on: date) -> Elder:
        elder = self.get_elder(elder_id)
        elder.assess(capability_level=capability_level, assessed_on=assessed_on)
        self.save(elder)
        return elder

    def renew_certificate(self, caregiver_id: str, expires: date, level: int) -> Caregiver:
        caregiver = self.get_caregiver(caregiver_id)
        if caregiver.kind is CaregiverKind.VOLUNTEER:
            raise DispatchError("volunteers hold no caregiver certificate")
        caregiver.renew_certificate(expires=expires, level=level)
        self.save(caregiver)
        return caregiver

    def change_shift(self, caregiver_id: str, shift_start: str, shift_end: str,
                     work_days: list[int]) -> Caregiver:
        if shift_end <= shift_start:
            raise InvalidInput("a shift must end after it starts")
        caregiver = self.get_caregiver(caregiver_id)
        caregiver.change_shift(shift_start=shift_start, shift_end=shift_end, work_days=work_days)
        self.save(caregiver)
        return caregiver

    def areas(self) -> list[str]:
        """Every service area with elders or caregivers."""
        self.index.catch_up()
        return sorted(set(self._caregivers_by_area) | set(self._elders_by_area))

    def list_elders(self, service_area_id: str) -> list[Elder]:
        self.index.catch_up()
        return [self.get_elder(e) for e in sorted(self._elders_by_area[service_area_id])]

    def list_caregivers(self, service_area_id: str) -> list[Caregiver]:
        """The area's caregivers, to read (not copied: placing an order reads them all)."""
        self.index.catch_up()
        return [self.peek(Caregiver.create_id(c))
                for c in sorted(self._caregivers_by_area[service_area_id])]

    # Orders ----------------------------------------------------------------------------------
    def place_order(self, command: PlaceOrder,
                    now: datetime | None = None) -> tuple[ServiceOrder, Visit | None]:
        with self.sections.hold(bookings_of(self.get_elder(command.elder_id).service_area_id)):
            aggregates = self._place(command, now)
            if aggregates:
                self.save(*aggregates)
        if not aggregates:
            order = self.get_order(command.order_id)
            return order, self._first_visit(order)
        order = aggregates[0]
        visit = next((a for a in aggregates if isinstance(a, Visit)), None)
        return order, visit

    def _order(self, command: PlaceOrder, elder: Elder, entry: CatalogueEntry) -> ServiceOrder:
        duration = command.duration_minutes or entry.default_minutes
        if duration <= 0:
            raise InvalidInput("duration_minutes must be positive")
        if (command.window_start and command.window_end
                and command.window_end <= command.window_start):
            raise InvalidInput("window_end must be after window_start")
        priority = command.priority or (Priority.EMERGENCY if command.emergency else entry.priority)
        return ServiceOrder(
            order_id=command.order_id, elder_id=elder.elder_id,
            service_area_id=elder.service_area_id, service_type=command.service_type,
            source=command.source, priority=priority, emergency=command.emergency,
            requested_date=command.requested_date, window_start=command.window_start,
            window_end=command.window_end, duration_minutes=duration,
            staff_count=command.staff_count or entry.staff_count,
            use_time_credits=command.use_time_credits,
            time_credit_account_id=command.time_credit_account_id,
            out_of_pocket_agreed=command.out_of_pocket_agreed, notes=command.notes,
            placed_by=command.placed_by, correlation_id=command.correlation_id,
            origin_event_id=command.origin_event_id, care_plan_id=command.care_plan_id,
            emergency_position=command.emergency_position,
        )

    def _place(self, command: PlaceOrder, now: datetime | None = None) -> list[Any]:
        """The order and (when a caregiver fits) its visit, unsaved; [] if placed before."""
        if self.get_or_none(ServiceOrder.create_id(command.order_id)) is not None:
            return []
        elder = self.get_elder(command.elder_id)
        if elder.erased:
            # The person asked to be forgotten: serving them again needs them to register anew.
            raise DispatchError(f"elder {elder.elder_id} was erased on request on "
                                f"{elder.erased_at:%Y-%m-%d}: no new orders (register the person "
                                "again, under a new id, if they want care)")
        entry = self.catalogue(elder.service_area_id)[ServiceType(command.service_type)]
        order = self._order(command, elder, entry)
        if order.emergency:
            return self._dispatch_emergency(order, elder, entry, now or self.clock())
        if command.await_plan:
            return [order]  # the area's daily plan schedules it
        return self._assign_now(order, elder, entry, earliest=None)

    def _assign_now(self, order: ServiceOrder, elder: Elder, entry: CatalogueEntry,
                    earliest: datetime | None) -> list[Any]:
        """The foundation's first-free-caregiver assignment (for orders taken one by one)."""
        try:
            choice = assign(
                entry, order.duration_minutes, order.requested_date,
                earliest or order.window_start, order.window_end,
                self._candidates(order, elder, entry), self.tz,
            )
        except NoCaregiverAvailable as reason:
            order.mark_unassigned(reason=str(reason))
            alert = self._alert(AlertKind.UNASSIGNED, order.order_id, order.service_area_id,
                                f"order {order.order_id} for {elder.name}: {reason}",
                                self.clock(), elder_id=elder.elder_id)
            return [order, *alert]
        partner = None
        if order.staff_count == 2:
            # The second caregiver must be free for exactly the same time.
            others = [c for c in self._candidates(order, elder, entry)
                      if c.caregiver_id != choice.caregiver_id]
            try:
                partner = assign(entry, order.duration_minutes, order.requested_date,
                                 choice.start, choice.end, others, self.tz).caregiver_id
            except NoCaregiverAvailable as reason:
                order.mark_unassigned(reason=f"no second caregiver: {reason}")
                return [order, *self._alert(
                    AlertKind.UNASSIGNED, order.order_id, order.service_area_id,
                    f"order {order.order_id} for {elder.name} needs two caregivers: {reason}",
                    self.clock(), elder_id=elder.elder_id)]
        visit = self._new_visit(order, elder, entry, choice.caregiver_id, choice.start,
                                choice.end, partner_id=partner)
        return [order, visit]

    def _new_visit(self, order: ServiceOrder, elder: Elder, entry: CatalogueEntry,
                   caregiver_id: str, start: datetime, end: datetime,
                   plan_id: str | None = None, partner_id: str | None = None) -> Visit:
        caregiver = self.get_caregiver(caregiver_id)
        visit_id = f"V-{order.order_id}"
        # An SOS is served where the wearable was, not necessarily at home.
        where = order.emergency_position or {"lat": elder.lat, "lon": elder.lon}
        visit = Visit(
            visit_id=visit_id, order_id=order.order_id, elder_id=elder.elder_id,
            service_area_id=elder.service_area_id, caregiver_id=caregiver.caregiver_id,
            caregiver_kind=caregiver.kind, provider_id=caregiver.provider_id,
            service_type=order.service_type, planned_start=start, planned_end=end,
            home_lat=where["lat"], home_lon=where["lon"],
            use_time_credits=order.use_time_credits,
            time_credit_account_id=order.time_credit_account_id,
            out_of_pocket_agreed=order.out_of_pocket_agreed,
            correlation_id=order.correlation_id, needs_confirmation=entry.needs_confirmation,
            priority=order.priority, plan_id=plan_id, second_caregiver_id=partner_id,
        )
        order.mark_scheduled(visit_id=visit_id)
        return visit

    def _candidates(self, order: ServiceOrder, elder: Elder,
                    entry: CatalogueEntry) -> list[CandidateCaregiver]:
        day = order.requested_date
        blacklisted = self._blacklisted() if order.subsidised else set()
        booked: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for b in self.bookings(elder.service_area_id, day):
            for cid in b.caregiver_ids:
                booked[cid].append((b.start, b.end))
        out = []
        week: Counter[str] | None = None  # minutes per caregiver that week, when a limit asks
        for c in self.list_caregivers(elder.service_area_id):
            if c.max_minutes_per_week is not None and week is None:
                week = self._week_minutes(elder.service_area_id, day)
            shift_start, shift_end = c.shift_on(day)
            unavailable = None
            if c.caregiver_id in elder.excluded_caregiver_ids:
                unavailable = "excluded by the elder"
            elif elder.gender_preference and c.gender != elder.gender_preference:
                unavailable = f"the elder asks for a {elder.gender_preference} caregiver"
            elif (entry.personal_care and elder.capability_level >= SEVERE_DEPENDENCY_LEVEL
                  and c.certificate_level < 2):
                unavailable = "personal care of a severely dependent elder needs certificate " \
                              "level 2"
            elif c.provider_id in blacklisted:
                unavailable = f"provider {c.provider_id} is blacklisted (no subsidised visits)"
            elif not c.works_on(day):
                unavailable = "not working that day"
            elif day.isoformat() in c.unavailable_from:
                unavailable = "reported sick"
            elif (c.max_visits_per_day is not None
                  and len(booked[c.caregiver_id]) >= c.max_visits_per_day):
                unavailable = f"already has {c.max_visits_per_day} visits that day (limit)"
            elif (c.max_minutes_per_week is not None and week is not None
                  and week[c.caregiver_id] + order.duration_minutes > c.max_minutes_per_week):
                unavailable = f"would exceed {c.max_minutes_per_week} minutes this week (limit)"
            out.append(CandidateCaregiver(
                caregiver_id=c.caregiver_id, kind=c.kind, skills=frozenset(c.skills),
                certified=c.is_certified_on(day), booked=tuple(booked[c.caregiver_id]),
                unavailable=unavailable,
                shift=(datetime.combine(day, shift_start, self.tz),
                       datetime.combine(day, shift_end, self.tz)),
            ))
        return out

    def _week_minutes(self, service_area_id: str, day: date) -> Counter[str]:
        """Planned minutes of each caregiver's visits in the week (Monday to Sunday) of day:
        one pass over the area's week for all of them (the read model caught up once)."""
        self.index.catch_up()
        monday = day - timedelta(days=day.weekday())
        minutes: Counter[str] = Counter()
        for d in range(7):
            for visit_id in self._visits_by_day.get((service_area_id,
                                                     monday + timedelta(days=d)), ()):
                booking = self._bookings[visit_id]
                if booking.active:
                    for caregiver_id in booking.caregiver_ids:
                        minutes[caregiver_id] += booking.minutes
        return minutes

    def bookings(self, service_area_id: str, day: date) -> list[Booking]:
        """The day's visits that still take a caregiver's time (from the read model)."""
        self.index.catch_up()
        found = (self._bookings[v] for v in self._visits_by_day[(service_area_id, day)])
        return [b for b in found if b.active]

    def get_order(self, order_id: str) -> ServiceOrder:
        return self._get(ServiceOrder.create_id(order_id), f"no order {order_id}")

    def _first_visit(self, order: ServiceOrder) -> Visit | None:
        return self.get_visit(order.visit_ids[-1]) if order.visit_ids else None

    def list_orders(self, service_area_id: str, day: date) -> list[ServiceOrder]:
        self.index.catch_up()
        return [self.get_order(o) for o in sorted(self._orders_by_day[(service_area_id, day)])]

    def claim_order(self, order_id: str, caregiver_id: str) -> tuple[ServiceOrder, Visit]:
        """A volunteer takes an open mutual-aid task (or welfare check) for themself: the order
        is scheduled to them if the same rules as any assignment allow it, else refused with
        the reason (volunteers do mutual aid only, their daily and weekly limits, the window)."""
        with self.sections.hold(bookings_of(self.get_order(order_id).service_area_id)):
            return self._claim(order_id, caregiver_id)

    def _claim(self, order_id: str, caregiver_id: str) -> tuple[ServiceOrder, Visit]:
        order = self.get_order(order_id)
        if order.state not in (OrderState.PLACED, OrderState.UNASSIGNED):
            raise DispatchError(f"order {order_id} is {order.state}, not open for anyone to take")
        caregiver = self.get_caregiver(caregiver_id)
        if caregiver.kind is not CaregiverKind.VOLUNTEER:
            raise DispatchError("only volunteers take open tasks themselves; dispatchers assign "
                                "caregivers through the plan")
        elder = self.get_elder(order.elder_id)
        if caregiver.service_area_id != elder.service_area_id:
            raise DispatchError(f"{caregiver_id} serves {caregiver.service_area_id}, not "
                                f"{elder.service_area_id}")
        entry = self.catalogue(elder.service_area_id)[order.service_type]
        if order.staff_count != 1:
            raise DispatchError("a two-person visit is assigned by the dispatcher")
        mine = [c for c in self._candidates(order, elder, entry)
                if c.caregiver_id == caregiver_id]
        try:
            choice = assign(entry, order.duration_minutes, order.requested_date,
                            order.window_start, order.window_end, mine, self.tz)
        except NoCaregiverAvailable as reason:
            raise DispatchError(str(reason)) from None
        visit = self._new_visit(order, elder, entry, caregiver_id, choice.start, choice.end)
        self.save(order, visit)
        return order, visit

    def cancel_order(self, order_id: str, reason: str, cancelled_by: str | None) -> ServiceOrder:
        order = self.get_order(order_id)
        self.save(*self._cancel(order, reason, cancelled_by))
        return order

    def _cancel(self, order: ServiceOrder, reason: str, cancelled_by: str | None) -> list[Any]:
        """Cancel the order and its visits that have not started; unsaved."""
        order.cancel(reason=reason, cancelled_by=cancelled_by)
        visits = [self.get_visit(v) for v in order.visit_ids]
        for visit in visits:
            if visit.state in NOT_STARTED:
                visit.cancel(reason=reason, cancelled_by=cancelled_by or "order cancelled")
        return [order, *visits]

    # Emergencies -----------------------------------------------------------------------------
    def _dispatch_emergency(self, order: ServiceOrder, elder: Elder, entry: CatalogueEntry,
                            now: datetime) -> list[Any]:
        """At once: urgent insertion by the router into today's routes, else the first free
        caregiver from now; announced to the area either way."""
        aggregates: list[Any] = [order]
        visit_id = f"V-{order.order_id}"
        day = order.requested_date
        start = max(now, order.window_start) if order.window_start else now
        position = order.emergency_position
        job = Job(visit_id=visit_id, elder=elder, service_type=order.service_type, entry=entry,
                  duration=order.duration_minutes, priority=order.priority, subsidised=True,
                  window_start=start, window_end=start + timedelta(hours=2),
                  location=(position["lat"], position["lon"]) if position else None)
        # Windows as planned (the router keeps what started before now and starts nothing
        # earlier than now itself).
        problem = self._day_problem(elder.service_area_id, day, [job])
        placed = problem.insert_urgent(visit_id, now) if visit_id in problem.jobs else None
        where = placed.placements.get(visit_id) if placed else None
        if where is not None and not ({where.caregiver_id, None} & placed.violating_caregivers):
            aggregates.append(self._new_visit(order, elder, entry, where.caregiver_id,
                                              where.start, where.end))
            # The caregiver's later visits move as the insertion moved them.
            for other in placed.placements.values():
                if other.caregiver_id != where.caregiver_id or other.visit_id == visit_id:
                    continue
                visit = self.get_visit(other.visit_id)
                if visit.state in NOT_STARTED and visit.reschedule(
                        caregiver_id=visit.caregiver_id, caregiver_kind=visit.caregiver_kind,
                        provider_id=visit.provider_id, planned_start=other.start,
                        planned_end=other.end, reason=f"emergency {order.order_id} inserted",
                        second_caregiver_id=visit.second_caregiver_id):
                    aggregates.append(visit)
        else:
            aggregates = self._assign_now(order, elder, entry, earliest=start)
        visit = next((a for a in aggregates if isinstance(a, Visit)), None)
        who = f"caregiver {visit.caregiver_id} at {visit.planned_start.astimezone(self.tz):%H:%M}"
        message = (f"紧急救助 emergency for {elder.name} ({elder.address or elder.elder_id}): "
                   + (who if visit else "NO caregiver available"))
        aggregates += self._alert(AlertKind.EMERGENCY, order.order_id, elder.service_area_id,
                                  message, now, severity="critical",
                                  visit_id=visit.visit_id if visit else None,
                                  caregiver_id=visit.caregiver_id if visit else None,
                                  elder_id=elder.elder_id)
        return aggregates

    # Visits ----------------------------------------------------------------------------------
    def get_visit(self, visit_id: str) -> Visit:
        return self._get(Visit.create_id(visit_id), f"no visit {visit_id}")

    def list_visits(self, service_area_id: str, day: date,
                    caregiver_id: str | None = None) -> list[Visit]:
        self.index.catch_up()
        ids = sorted(self._visits_by_day[(service_area_id, day)])
        if caregiver_id is not None:
            # The read model knows each visit's caregivers: load only theirs.
            ids = [v for v in ids if caregiver_id in self._bookings[v].caregiver_ids]
        visits = [self.get_visit(v) for v in ids]
        if caregiver_id is not None:
            visits = [v for v in visits if caregiver_id in v.caregiver_ids]
        return sorted(visits, key=lambda v: (v.planned_start, v.visit_id))

    def caregiver_route(self, caregiver_id: str, day: date) -> tuple[Caregiver, list[Visit]]:
        """The caregiver's visits of the day in planned order (cancelled ones left out)."""
        caregiver = self.get_caregiver(caregiver_id)
        visits = [v for v in self.list_visits(caregiver.service_area_id, day, caregiver_id)
                  if v.state is not VisitState.CANCELLED]
        return caregiver, visits

    def _visit_of_caregiver(self, visit_id: str, caregiver_id: str | None) -> Visit:
        visit = self.get_visit(visit_id)
        if caregiver_id is not None and caregiver_id not in visit.caregiver_ids:
            self.get_caregiver(caregiver_id)  # unknown caregiver: 404 rather than 409
            raise DispatchError(f"visit {visit_id} is not assigned to {caregiver_id} "
                                f"(it is {visit.caregiver_id}'s)")
        return visit

    def _device_time(self, at: datetime, rules: AreaRules, now: datetime | None) -> datetime:
        """The device's original time; refused when it lies in the future beyond clock skew."""
        if at.tzinfo is None:
            raise InvalidInput("times must carry a UTC offset")
        now = now or self.clock()
        if at > now + timedelta(seconds=rules.clock_skew_seconds):
            raise InvalidInput(f"time {at.isoformat()} is in the future (server time "
                               f"{now.isoformat()}, allowed skew {rules.clock_skew_seconds} s)")
        return at

    def depart(self, visit_id: str, *, at: datetime, caregiver_id: str | None = None,
               idempotency_key: str | None = None, now: datetime | None = None) -> Visit:
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        at = self._device_time(at, self.rules(visit.service_area_id), now)
        if visit.depart(at=at, idempotency_key=idempotency_key):
            self.save(visit)
        return visit

    def check_in(self, visit_id: str, *, at: datetime, lat: float | None, lon: float | None,
                 method: CheckMethod = CheckMethod.GPS, caregiver_id: str | None = None,
                 accuracy_m: float | None = None, notes: str | None = None,
                 idempotency_key: str | None = None, now: datetime | None = None) -> Visit:
        """Check in with the device's original time; a repeat with the same key changes
        nothing. A position outside the geofence is accepted and flagged for review."""
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        rules = self.rules(visit.service_area_id)
        at = self._device_time(at, rules, now)
        if abs((self.local_day(at) - self.local_day(visit.planned_start)).days) > 1:
            raise InvalidInput(f"check-in at {at.isoformat()} is not near the visit's day "
                               f"{self.local_day(visit.planned_start).isoformat()}")
        reinstated = (idempotency_key not in visit.idempotency_keys
                      and visit.reinstate_if_started_before_missed(at))
        if not visit.check_in(at=at, lat=lat, lon=lon, method=method,
                              radius_m=rules.geofence_radius_m, accuracy_m=accuracy_m,
                              max_accuracy_m=rules.max_accuracy_m, notes=notes,
                              idempotency_key=idempotency_key):
            return visit
        changed: list[Any] = [visit]
        if not visit.check_in_verified:
            changed += self._alert(AlertKind.LOCATION_NOT_VERIFIED, f"{visit_id}/in",
                                   visit.service_area_id,
                                   f"check-in of {visit_id}: {visit.check_in_problem}",
                                   now or self.clock(), visit_id=visit_id,
                                   caregiver_id=visit.caregiver_id, elder_id=visit.elder_id)
        changed += self._resolve_late_alerts(visit, rules, now or self.clock())
        if reinstated:
            changed += self._close_alerts(visit_id, "offline check-in synced: it took place",
                                          kinds={AlertKind.MISSED})
        self.save(*changed)
        return visit

    def check_out(self, visit_id: str, *, at: datetime, lat: float | None, lon: float | None,
                  tasks_done: list[str], confirmation_code: str | None = None,
                  family_proxy_confirmed: bool = False, caregiver_id: str | None = None,
                  accuracy_m: float | None = None, notes: str | None = None,
                  signature: str | None = None, idempotency_key: str | None = None,
                  now: datetime | None = None) -> Visit:
        """Check out, and verify at once when every rule holds; otherwise it needs review."""
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        rules = self.rules(visit.service_area_id)
        at = self._device_time(at, rules, now)
        entry = self.catalogue(visit.service_area_id)[visit.service_type]
        unknown = [t for t in tasks_done if entry.tasks and t not in entry.tasks]
        if unknown and not self._already_checked_out(visit, idempotency_key):
            raise InvalidInput(f"tasks not in the catalogue for {visit.service_type}: "
                               f"{', '.join(unknown)} (allowed: {', '.join(entry.tasks)})")
        elder = self.get_elder(visit.elder_id)
        if not visit.check_out(at=at, lat=lat, lon=lon, tasks_done=tasks_done,
                               confirmation_code=confirmation_code,
                               family_proxy_confirmed=family_proxy_confirmed,
                               elder_code=elder.confirmation_code,
                               radius_m=rules.geofence_radius_m, accuracy_m=accuracy_m,
                               max_accuracy_m=rules.max_accuracy_m, signature=signature,
                               notes=notes, idempotency_key=idempotency_key):
            return visit
        changed: list[Any] = [visit]
        overlapping = self._overlapping(visit)
        gaps = visit.verification_gaps(rules, overlapping)
        when = now or self.clock()
        if gaps:
            visit.flag_for_review(gaps=gaps)
            changed += self._alert(AlertKind.NEEDS_REVIEW, visit_id, visit.service_area_id,
                                   f"visit {visit_id} needs review: " + "; ".join(gaps), when,
                                   visit_id=visit_id, caregiver_id=visit.caregiver_id,
                                   elder_id=visit.elder_id)
            if not visit.location_verified:
                changed += self._alert(AlertKind.LOCATION_NOT_VERIFIED, visit_id,
                                       visit.service_area_id,
                                       f"visit {visit_id}: location not verified", when,
                                       visit_id=visit_id, caregiver_id=visit.caregiver_id,
                                       elder_id=visit.elder_id)
        else:
            visit.verify(by="automatic", rules=rules)
        changed += self._resolve_late_alerts(visit, rules, now or self.clock())
        self.save(*changed)
        return visit

    @staticmethod
    def _already_checked_out(visit: Visit, key: str | None) -> bool:
        return key is not None and visit.idempotency_keys.get(key) == "check_out"

    def _overlapping(self, visit: Visit) -> list[str]:
        """Other visits of the same caregiver whose actual times overlap this one's."""
        assert visit.checked_in_at and visit.checked_out_at
        out = []
        days = {self.local_day(visit.checked_in_at), self.local_day(visit.planned_start)}
        # From the read model's check-in and check-out times: no visit is loaded (a load of
        # each of the caregiver's other visits was most of a check-out's reads).
        self.index.catch_up()
        for day, caregiver_id in ((d, c) for d in days for c in visit.caregiver_ids):
            # The caregiver's few visits of the day picked out before sorting: sorting the
            # whole area's day compared hundreds of zoned datetimes per check-out.
            others = sorted(
                (booking.start, other_id)
                for other_id in self._visits_by_day[(visit.service_area_id, day)]
                if other_id != visit.visit_id
                and (booking := self._bookings[other_id]).checked_in_at is not None
                and caregiver_id in booking.caregiver_ids)
            for _, other_id in others:
                other = self._bookings[other_id]
                assert other.checked_in_at is not None
                other_end = other.checked_out_at or other.checked_in_at
                if (other.checked_in_at < visit.checked_out_at
                        and visit.checked_in_at < other_end
                        and other_id not in out):
                    out.append(other_id)
        return out

    def verify(self, visit_id: str, *, by: str, override_reason: str | None = None) -> Visit:
        visit = self.get_visit(visit_id)
        if visit.state is VisitState.VERIFIED:
            return visit  # verified already (a retried request): nothing changes
        overlapping = self._overlapping(visit) if visit.checked_out_at else []
        visit.verify(by=by, override_reason=override_reason,
                     rules=self.rules(visit.service_area_id), overlapping=overlapping)
        self.save(visit, *self._close_alerts(visit_id, f"reviewed by {by}"))
        return visit

    def review(self, visit_id: str, *, decision: str, by: str, reason: str) -> Visit:
        """A reviewer's decision on a visit that needs review: approve (verified) or reject."""
        visit = self.get_visit(visit_id)
        if visit.state is VisitState.CHECKED_OUT and not visit.needs_review:
            raise DispatchError(f"visit {visit_id} does not need review")
        if decision == "approve":
            return self.verify(visit_id, by=by, override_reason=reason)
        if decision != "reject":
            raise InvalidInput("decision must be approve or reject")
        visit.reject(by=by, reason=reason)
        self.save(visit, *self._close_alerts(visit_id, f"rejected by {by}"))
        return visit

    def cancel_visit(self, visit_id: str, *, reason: str, cancelled_by: str,
                     now: datetime | None = None, replan: bool = False) -> Visit:
        """Cancel a visit that has not started; with ``replan`` the rest of its day is
        replanned (a proposal, or applied at once where the area accepts automatically)."""
        visit = self.get_visit(visit_id)
        visit.cancel(reason=reason, cancelled_by=cancelled_by)
        self.save(visit)
        if replan:
            self.propose_replan(visit.service_area_id, self.local_day(visit.planned_start),
                                reason=f"visit {visit_id} cancelled: {reason}", now=now)
        return visit

    def no_show(self, visit_id: str, *, at: datetime, caregiver_id: str, reason: str,
                lat: float | None = None, lon: float | None = None,
                idempotency_key: str | None = None, now: datetime | None = None) -> Visit:
        """The elder was not at home; a welfare check escalates to the family at once."""
        visit = self._visit_of_caregiver(visit_id, caregiver_id)
        at = self._device_time(at, self.rules(visit.service_area_id), now)
        if not visit.no_show(at=at, reason=reason, reported_by=caregiver_id, lat=lat, lon=lon,
                             idempotency_key=idempotency_key):
            return visit
        elder = self.get_elder(visit.elder_id)
        if visit.escalation_step:
            alert = self._alert(
                AlertKind.WELFARE_ESCALATION, f"{visit_id}/call_family", visit.service_area_id,
                f"探访关爱 welfare check: {elder.name} not at home. Call the family "
                f"({elder.family_phone or 'no number on file'}) now.", at, severity="critical",
                visit_id=visit_id, caregiver_id=caregiver_id, elder_id=elder.elder_id)
        else:
            alert = self._alert(AlertKind.NO_SHOW, visit_id, visit.service_area_id,
                                f"{elder.name} not at home for {visit_id}: {reason}", at,
                                visit_id=visit_id, caregiver_id=caregiver_id,
                                elder_id=elder.elder_id)
        self.save(visit, *alert)
        return visit

    def record_escalation(self, visit_id: str, *, outcome: str, by: str,
                          at: datetime | None = None) -> Visit:
        visit = self.get_visit(visit_id)
        self.save(*self._escalate(visit, outcome, by, at or self.clock()))
        return visit

    def _escalate(self, visit: Visit, outcome: str, by: str, at: datetime) -> list[Any]:
        """The next step of a welfare escalation, with its alert (unsaved)."""
        visit.record_escalation(outcome=outcome, by=by, at=at)
        changed: list[Any] = [visit, *self._close_alerts(visit.visit_id, f"{outcome} ({by})",
                                                         kinds={AlertKind.WELFARE_ESCALATION})]
        step = visit.escalation_step
        if step in ("call_centre", "emergency_services"):
            elder = self.get_elder(visit.elder_id)
            changed += self._alert(
                AlertKind.WELFARE_ESCALATION, f"{visit.visit_id}/{step}", visit.service_area_id,
                f"探访关爱 welfare check: family of {elder.name} not reached; "
                + ("the service centre must act" if step == "call_centre"
                   else "call emergency services"), at, severity="critical",
                visit_id=visit.visit_id, elder_id=elder.elder_id)
        return changed

    # Funding answers (consumed) --------------------------------------------------------------
    def _funding_answer(self, event: IntegrationEvent) -> list[Any]:
        p = event.payload
        visit = self.get_or_none(Visit.create_id(p.visit_id))
        if visit is None or visit.state in FINISHED - {VisitState.VERIFIED}:
            return []
        volunteer = visit.caregiver_kind is CaregiverKind.VOLUNTEER
        if isinstance(event, HoursReserved):
            legs = [leg.model_dump(mode="json") for leg in p.legs]
            status, detail = FundingStatus.FUNDED, ", ".join(
                f"{leg['source']} {leg['minutes']} min" for leg in legs)
        elif isinstance(event, ReservationRejected):
            legs, status = [], FundingStatus.NOT_FUNDED
            detail = (f"{p.reason} (requested {p.requested_minutes} min, available "
                      f"{p.available_minutes} min)")
        elif isinstance(event, CreditsReserved) and volunteer:
            legs = [{"source": "time_credits", "account_id": p.account_id, "minutes": p.minutes}]
            status, detail = FundingStatus.FUNDED, f"time credits {p.minutes} min"
        elif isinstance(event, CreditsReservationRejected) and volunteer:
            legs, status = [], FundingStatus.NOT_FUNDED
            detail = (f"time credits: {p.reason} (requested {p.requested_minutes} min, "
                      f"available {p.available_minutes} min)")
        else:
            return []  # an employee visit's credits step: the ledger's answer follows
        if visit.funding == status and visit.funding_legs == legs:
            return []
        visit.record_funding(status=status, detail=detail, legs=legs, answered_by=event.type)
        out: list[Any] = [visit]
        if status is FundingStatus.NOT_FUNDED:
            out += self._alert(AlertKind.NOT_FUNDED, visit.visit_id, visit.service_area_id,
                               f"visit {visit.visit_id} is not funded: {detail}; needs a "
                               "decision", event.occurred_at, visit_id=visit.visit_id,
                               elder_id=visit.elder_id)
        else:
            out += self._close_alerts(visit.visit_id, "funded", kinds={AlertKind.NOT_FUNDED})
        return out

    # Daily planning --------------------------------------------------------------------------
    def _day_problem(self, area: str, day: date, extra: list[Job],
                     now: datetime | None = None,
                     available_until: dict[str, datetime] | None = None,
                     include_orders: bool = False) -> DayProblem:
        catalogue = self.catalogue(area)
        jobs = list(extra)
        for v in self.list_visits(area, day):
            if v.state in FINISHED or v.state is VisitState.CHECKED_OUT:
                continue
            order = self.get_order(v.order_id)
            started = v.state is VisitState.CHECKED_IN
            on_the_way = v.state is VisitState.EN_ROUTE
            duration = v.planned_minutes
            if started and now is not None and v.checked_in_at is not None:
                # A visit running long keeps the caregiver at least a while longer.
                elapsed = int((now - v.checked_in_at).total_seconds() // 60)
                duration = max(duration, elapsed + self.rules(area).overrun_grace_minutes)
            jobs.append(Job(
                visit_id=v.visit_id, elder=self.get_elder(v.elder_id),
                service_type=v.service_type, entry=catalogue[v.service_type],
                duration=duration, priority=v.priority, subsidised=order.subsidised,
                window_start=order.window_start, window_end=order.window_end,
                staff_count=2 if v.second_caregiver_id else 1,
                # A caregiver on the way keeps the visit: a replan never sends a second one.
                pinned_caregiver=v.caregiver_id if started or on_the_way else None,
                pinned_start=v.checked_in_at if started else None,
                current_caregiver=v.caregiver_id, current_partner=v.second_caregiver_id,
                current_start=v.planned_start,
                location=(v.home_lat, v.home_lon),
            ))
        if include_orders:
            for order in self.list_orders(area, day):
                if order.state is OrderState.PLACED or (
                        order.state is OrderState.UNASSIGNED and not order.visit_ids):
                    jobs.append(self._job_of_order(order, catalogue))
        caregivers = self.list_caregivers(area)
        unavailable = dict(available_until or {})
        for c in caregivers:
            sick = c.unavailable_from.get(day.isoformat())
            if sick:
                at = datetime.fromisoformat(sick)
                unavailable[c.caregiver_id] = min(at, unavailable.get(c.caregiver_id, at))
        return DayProblem(day, self.tz, caregivers, jobs, self._blacklisted(),
                          available_until=unavailable, now=now)

    def _job_of_order(self, order: ServiceOrder, catalogue: dict[ServiceType, CatalogueEntry],
                      ) -> Job:
        return Job(visit_id=f"V-{order.order_id}", elder=self.get_elder(order.elder_id),
                   service_type=order.service_type, entry=catalogue[order.service_type],
                   duration=order.duration_minutes, priority=order.priority,
                   subsidised=order.subsidised, window_start=order.window_start,
                   window_end=order.window_end, staff_count=order.staff_count)

    def plan_day(self, service_area_id: str, day: date, now: datetime | None = None,
                 time_limit_s: float | None = None) -> dict[str, Any]:
        """Run the router over the day's orders and not-started visits: new visits are
        scheduled (VisitScheduled), moved ones rescheduled (VisitRescheduled)."""
        with self.sections.hold(bookings_of(service_area_id)):
            return self._plan_day(service_area_id, day, now, time_limit_s)

    def _plan_day(self, service_area_id: str, day: date, now: datetime | None,
                  time_limit_s: float | None) -> dict[str, Any]:
        problem = self._day_problem(service_area_id, day, [], now=now, include_orders=True)
        # Warm-started from the day as it stands, so a second run changes little.
        result = problem.solve(time_limit_s or self.plan_time_limit_s, warm=True)
        record_plan(service_area_id, result, kind="daily")
        if result.violations:
            raise DispatchError("the router's plan breaks rules: " + "; ".join(result.violations))
        plan_id = f"plan-{service_area_id}-{day.isoformat()}-{uuid4().hex[:6]}"
        changed = self._apply(problem, result, plan_id, reason="daily plan", now=now)
        self.save(*changed)
        return self._plan_summary(plan_id, result, changed)

    def _apply(self, problem: DayProblem, result: DayPlan, plan_id: str, reason: str,
               now: datetime | None) -> list[Any]:
        changed: list[Any] = []
        for visit_id, where in result.placements.items():
            visit = self.get_or_none(Visit.create_id(visit_id))
            job = problem.jobs[visit_id]
            if visit is None:
                order = self.get_order(visit_id.removeprefix("V-"))
                changed += [order, self._new_visit(order, job.elder, job.entry,
                                                   where.caregiver_id, where.start, where.end,
                                                   plan_id=plan_id, partner_id=where.partner_id)]
            elif visit.state in NOT_STARTED:
                caregiver = self.get_caregiver(where.caregiver_id)
                if visit.reschedule(caregiver_id=caregiver.caregiver_id,
                                    caregiver_kind=caregiver.kind,
                                    provider_id=caregiver.provider_id, planned_start=where.start,
                                    planned_end=where.end, reason=reason, plan_id=plan_id,
                                    second_caregiver_id=where.partner_id):
                    changed.append(visit)
        when = now or self.clock()
        for visit_id, why in result.unassigned.items():
            visit = self.get_or_none(Visit.create_id(visit_id))
            if visit is not None and visit.state not in NOT_STARTED:
                continue  # under way: it stays as it is
            if visit is None:
                order = self.get_order(visit_id.removeprefix("V-"))
                if order.state is not OrderState.UNASSIGNED:
                    order.mark_unassigned(reason=why)
                    changed.append(order)
            changed += self._alert(AlertKind.UNASSIGNED, f"{visit_id}/{plan_id}",
                                   problem.jobs[visit_id].elder.service_area_id,
                                   f"{visit_id} could not be planned: {why}", when,
                                   visit_id=visit_id if visit else None,
                                   elder_id=problem.jobs[visit_id].elder.elder_id)
        return changed

    @staticmethod
    def _plan_summary(plan_id: str, result: DayPlan, changed: list[Any]) -> dict[str, Any]:
        return {
            "plan_id": plan_id, "status": result.status,
            "scheduled": sorted(a.visit_id for a in changed
                                if isinstance(a, Visit) and a.version == 1),
            "rescheduled": sorted(a.visit_id for a in changed
                                  if isinstance(a, Visit) and a.version > 1),
            "unassigned": result.unassigned, "travel_minutes": result.travel_minutes,
            "solve_seconds": round(result.solve_seconds, 3),
        }

    # Live replanning -------------------------------------------------------------------------
    def report_sick(self, caregiver_id: str, *, at: datetime, reason: str,
                    now: datetime | None = None) -> ReplanProposal:
        """The caregiver stops working at ``at``: their later visits move (a proposal)."""
        caregiver = self.get_caregiver(caregiver_id)
        day = self.local_day(at)
        caregiver.report_sick(day=day, from_at=at.isoformat(), reason=reason)
        self.save(caregiver)
        return self.propose_replan(caregiver.service_area_id, day,
                                   reason=f"{caregiver.name} ({caregiver_id}) reported sick",
                                   now=now or at)

    def propose_replan(self, service_area_id: str, day: date, *, reason: str,
                       now: datetime | None = None,
                       time_limit_s: float | None = None) -> ReplanProposal:
        """Replan what has not started (started visits pinned); the dispatcher accepts the
        proposal, or the area accepts automatically."""
        with self.sections.hold(bookings_of(service_area_id)):
            return self._propose_replan(service_area_id, day, reason=reason, now=now,
                                        time_limit_s=time_limit_s)

    def _propose_replan(self, service_area_id: str, day: date, *, reason: str,
                        now: datetime | None, time_limit_s: float | None) -> ReplanProposal:
        now = now or self.clock()
        problem = self._day_problem(service_area_id, day, [], now=now)
        result = problem.solve(time_limit_s or self.plan_time_limit_s, warm=True)
        record_plan(service_area_id, result, kind="replan")
        moves, unassigned = [], []
        for visit_id, where in sorted(result.placements.items()):
            job = problem.jobs[visit_id]
            if job.pinned_caregiver:
                continue
            if (where.caregiver_id, where.partner_id, where.start) != (
                    job.current_caregiver, job.current_partner, job.current_start):
                moves.append({"visit_id": visit_id, "caregiver_id": where.caregiver_id,
                              "second_caregiver_id": where.partner_id,
                              "previous_caregiver_id": job.current_caregiver,
                              "planned_start": where.start.isoformat(),
                              "planned_end": where.end.isoformat()})
        for visit_id, why in sorted(result.unassigned.items()):
            if problem.jobs[visit_id].pinned_start is None:  # what is under way stays
                unassigned.append({"visit_id": visit_id, "reason": why})
        proposal = ReplanProposal(proposal_id=f"R-{uuid4().hex[:10]}",
                                  service_area_id=service_area_id, day=day, reason=reason,
                                  moves=moves, unassigned=unassigned, proposed_at=now)
        changed: list[Any] = [proposal]
        if self.rules(service_area_id).auto_accept_replans:
            proposal.accept(by="automatic")
            changed += self._apply_proposal(proposal, now)
        else:
            changed += self._alert(AlertKind.REPLAN_PROPOSED, proposal.proposal_id,
                                   service_area_id,
                                   f"replan proposed ({reason}): {len(moves)} visits move, "
                                   f"{len(unassigned)} cannot be placed", now)
        self.save(*changed)
        return proposal

    def get_proposal(self, proposal_id: str) -> ReplanProposal:
        return self._get(ReplanProposal.create_id(proposal_id), f"no proposal {proposal_id}")

    def list_proposals(self, service_area_id: str) -> list[ReplanProposal]:
        self.index.catch_up()
        return [self.get_proposal(p) for p in self._proposals_by_area[service_area_id]]

    def decide_proposal(self, proposal_id: str, *, accept: bool, by: str,
                        reason: str = "", now: datetime | None = None) -> ReplanProposal:
        with self.sections.hold(bookings_of(self.get_proposal(proposal_id).service_area_id)):
            return self._decide_proposal(proposal_id, accept=accept, by=by, reason=reason,
                                         now=now)

    def _decide_proposal(self, proposal_id: str, *, accept: bool, by: str, reason: str,
                         now: datetime | None) -> ReplanProposal:
        proposal = self.get_proposal(proposal_id)
        if accept:
            proposal.accept(by=by)
            changed = [proposal, *self._apply_proposal(proposal, now or self.clock())]
        else:
            proposal.reject(by=by, reason=reason or "rejected")
            changed = [proposal]
        changed += self._close_alerts(proposal_id, f"decided by {by}")
        self.save(*changed)
        return proposal

    def _apply_proposal(self, proposal: ReplanProposal, now: datetime) -> list[Any]:
        changed: list[Any] = []
        for move in proposal.moves:
            visit = self.get_visit(move["visit_id"])
            if visit.state not in NOT_STARTED:
                continue  # it started meanwhile: leave it
            caregiver = self.get_caregiver(move["caregiver_id"])
            if visit.reschedule(caregiver_id=caregiver.caregiver_id, caregiver_kind=caregiver.kind,
                                provider_id=caregiver.provider_id,
                                planned_start=datetime.fromisoformat(move["planned_start"]),
                                planned_end=datetime.fromisoformat(move["planned_end"]),
                                reason=proposal.reason, plan_id=proposal.proposal_id,
                                second_caregiver_id=move.get("second_caregiver_id")):
                changed.append(visit)
        for item in proposal.unassigned:
            visit = self.get_or_none(Visit.create_id(item["visit_id"]))
            if visit is None or visit.state not in NOT_STARTED:
                continue
            caregiver = self.get_caregiver(visit.caregiver_id)
            if self.local_day(visit.planned_start).isoformat() in caregiver.unavailable_from:
                # Nobody can take it and its caregiver is off: it will not happen today.
                visit.cancel(reason=f"no replacement: {item['reason']}",
                             cancelled_by="replanning")
                changed.append(visit)
                changed += self._alert(AlertKind.UNASSIGNED, f"{visit.visit_id}/replan",
                                       visit.service_area_id,
                                       f"{visit.visit_id} cancelled, no replacement: "
                                       f"{item['reason']}", now, visit_id=visit.visit_id,
                                       elder_id=visit.elder_id)
        return changed

    # Care plans ------------------------------------------------------------------------------
    def create_care_plan(self, *, care_plan_id: str, elder_id: str, items: list[dict[str, Any]],
                         valid_from: date, created_by: str | None = None,
                         monthly_minutes: int | None = None) -> CarePlan:
        elder = self.get_elder(elder_id)
        existing = self.get_or_none(CarePlan.create_id(care_plan_id))
        if existing is not None:
            return existing
        self._check_items(elder.service_area_id, items)
        plan = CarePlan(care_plan_id=care_plan_id, elder_id=elder_id,
                        service_area_id=elder.service_area_id, items=items,
                        valid_from=valid_from, created_by=created_by,
                        monthly_minutes=monthly_minutes)
        self.save(plan)
        return plan

    def _check_items(self, area: str, items: list[dict[str, Any]]) -> None:
        if not items:
            raise InvalidInput("a care plan needs at least one item")
        for item in items:
            ServiceType(item["service_type"])
            if not item.get("weekdays") or not set(item["weekdays"]) <= set(range(7)):
                raise InvalidInput("weekdays must be a non-empty list of 0 (Monday) .. 6")
            if item.get("window_start", "00:00") >= item.get("window_end", "23:59"):
                raise InvalidInput("an item's window must end after it starts")

    def get_care_plan(self, care_plan_id: str) -> CarePlan:
        return self._get(CarePlan.create_id(care_plan_id), f"no care plan {care_plan_id}")

    def change_care_plan(self, care_plan_id: str, *, items: list[dict[str, Any]],
                         effective_from: date, by: str | None = None) -> CarePlan:
        """A new version from ``effective_from``: the plan's visits from then on that have not
        started are cancelled and the week regenerated; earlier visits are untouched."""
        plan = self.get_care_plan(care_plan_id)
        self._check_items(plan.service_area_id, items)
        plan.change(items=items, effective_from=effective_from, by=by)
        changed: list[Any] = [plan]
        self.index.catch_up()
        for (area, day), order_ids in list(self._orders_by_day.items()):
            if area != plan.service_area_id or day < effective_from:
                continue
            for order_id in order_ids:
                order = self.get_order(order_id)
                if order.care_plan_id != care_plan_id or order.state is OrderState.CANCELLED:
                    continue
                visits = [self.get_visit(v) for v in order.visit_ids]
                if any(v.state not in NOT_STARTED and v.state is not VisitState.CANCELLED
                       for v in visits):
                    continue  # it started: the past is not rewritten
                changed += self._cancel(order, "care plan changed", by)
        self.save(*changed)
        return plan

    def generate_week(self, care_plan_id: str, week_of: date) -> list[ServiceOrder]:
        """The orders of the plan for the week containing ``week_of`` (idempotent: stable
        order ids per plan version, day and item). They wait for the daily plan."""
        plan = self.get_care_plan(care_plan_id)
        monday = week_of - timedelta(days=week_of.weekday())
        catalogue = self.catalogue(plan.service_area_id)
        placed = []
        for offset in range(7):
            day = monday + timedelta(days=offset)
            for version, n, item in plan.items_on(day):
                order_id = f"CP-{care_plan_id}-v{version}-{day.isoformat()}-{n}"
                minutes = item.get("duration_minutes") or catalogue[
                    ServiceType(item["service_type"])].default_minutes
                exists = self.get_or_none(ServiceOrder.create_id(order_id)) is not None
                if (not exists and plan.monthly_minutes is not None
                        and self._plan_minutes(plan, day) + minutes > plan.monthly_minutes):
                    continue  # beyond the hours the plan may use this month
                ws = datetime.combine(day, parse_hhmm(item.get("window_start", "08:00")), self.tz)
                we = datetime.combine(day, parse_hhmm(item.get("window_end", "18:00")), self.tz)
                order, _ = self.place_order(PlaceOrder(
                    elder_id=plan.elder_id, service_type=ServiceType(item["service_type"]),
                    requested_date=day, order_id=order_id, source=OrderSource.CARE_PLAN,
                    window_start=ws, window_end=we,
                    duration_minutes=item.get("duration_minutes"), placed_by="care plan",
                    await_plan=True, care_plan_id=care_plan_id))
                placed.append(order)
        return placed

    def _plan_minutes(self, plan: CarePlan, day: date) -> int:
        """Minutes of the plan's orders (not cancelled) in the month of ``day``."""
        self.index.catch_up()
        total = 0
        for (area, d), order_ids in self._orders_by_day.items():
            if area != plan.service_area_id or (d.year, d.month) != (day.year, day.month):
                continue
            for order_id in order_ids:
                order = self.get_order(order_id)
                if (order.care_plan_id == plan.care_plan_id
                        and order.state is not OrderState.CANCELLED):
                    total += order.duration_minutes
        return total

    def list_care_plans(self, service_area_id: str) -> list[CarePlan]:
        self.index.catch_up()
        return [self.get_care_plan(p) for p in sorted(self._care_plans_by_area[service_area_id])]

    # Alerts ----------------------------------------------------------------------------------
    def _alert(self, kind: AlertKind, subject: str, area: str, message: str, at: datetime,
               severity: str = "warning", **about: Any) -> list[Alert]:
        """A new alert, unsaved; [] when this very alert was raised before."""
        alert_id = f"{kind}:{subject}"
        if self.get_or_none(Alert.create_id(alert_id)) is not None:
            return []
        return [Alert(alert_id=alert_id, kind=kind, service_area_id=area, message=message,
                      raised_at=at, severity=severity, **about)]

    def get_alert(self, alert_id: str) -> Alert:
        return self._get(Alert.create_id(alert_id), f"no alert {alert_id}")

    def list_alerts(self, service_area_id: str, open_only: bool = False) -> list[Alert]:
        self.index.catch_up()
        alerts = [self.get_alert(a) for a in self._alerts_by_area[service_area_id]]
        return [a for a in alerts if a.open] if open_only else alerts

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str | None = None,
                          at: datetime | None = None) -> Alert:
        alert = self.get_alert(alert_id)
        alert.acknowledge(by=by, at=at or self.clock(), note=note)
        self.save(alert)
        return alert

    def _close_alerts(self, subject: str, reason: str,
                      kinds: set[AlertKind] | None = None) -> list[Alert]:
        """Resolve open alerts about a visit or proposal (unsaved)."""
        self.index.catch_up()
        out = []
        for alert_id in dict.fromkeys(self._alerts_by_subject.get(subject, [])):
            alert = self.get_alert(alert_id)
            if alert.open and (kinds is None or alert.kind in kinds):
                alert.resolve(reason=reason)
                out.append(alert)
        return out

    def _resolve_late_alerts(self, visit: Visit, rules: AreaRules,
                             now: datetime) -> list[Alert]:
        """An offline check-in synced late shows when the visit really started: late-start
        alerts it disproves are resolved instead of left crying wolf."""
        if visit.checked_in_at is None or not rules.late_grace_minutes:
            return []
        graces = rules.late_grace_minutes
        if visit.checked_in_at > visit.planned_start + timedelta(minutes=max(graces)):
            return []  # started later than every grace: it disproves none
        if now < visit.planned_start + timedelta(minutes=min(graces)) - CLOCK_SKEW_ALLOWED:
            return []  # told before any grace ran out: the sweep cannot have raised one yet
        # The read model says which were raised: most check-ins have none to look up.
        self.index.catch_up()
        raised = set(self._alerts_by_subject.get(visit.visit_id, ()))
        out = []
        for grace in rules.late_grace_minutes:
            alert_id = f"{AlertKind.LATE_START}:{visit.visit_id}/{grace}"
            alert = self.get_or_none(Alert.create_id(alert_id)) if alert_id in raised else None
            if alert is None or not alert.open:
                continue
            if visit.checked_in_at <= visit.planned_start + timedelta(minutes=grace):
                alert.resolve(reason=f"check-in synced: started at "
                                     f"{visit.checked_in_at.astimezone(self.tz):%H:%M}")
                out.append(alert)
        return out

    def report_pending_sync(self, caregiver_id: str, visit_ids: list[str],
                            now: datetime | None = None) -> dict[str, Any]:
        """The phone says it holds queued records for these visits (weak signal): alerts about
        them wait for the sync for a while instead of firing."""
        caregiver = self.get_caregiver(caregiver_id)
        now = now or self.clock()
        ids = sorted(set(visit_ids))
        if ids or caregiver.pending_sync.get("visit_ids"):
            # An event, so every replica's sweep knows (the phone reports rarely).
            caregiver.report_pending_sync(visit_ids=ids, reported_at=now)
            self.save(caregiver)
        return {"caregiver_id": caregiver_id, "pending_visit_ids": ids, "reported_at": now}

    def _sync_pending(self, visit: Visit, rules: AreaRules, now: datetime) -> bool:
        """Checked-in visits are never swept for lateness, so an entry needs no clearing; it
        lapses after the trust period."""
        pending = self.get_caregiver(visit.caregiver_id).pending_sync
        if visit.visit_id not in pending.get("visit_ids", []):
            return False
        reported = datetime.fromisoformat(pending["reported_at"])
        return now - reported <= timedelta(minutes=rules.pending_sync_trust_minutes)

    def periodic_tasks(self) -> list[tuple[float, Callable[[], Any]]]:
        return [(60.0, self.sweep_all)]

    def sweep_all(self) -> int:
        """Sweep every area (the host runs this once a minute); the alerts raised."""
        raised = 0
        for area in self.areas():
            try:
                raised += len(self.sweep(area))
            except IntegrityError:
                continue  # another process swept the same area at the same moment
        return raised

    def sweep(self, service_area_id: str, now: datetime | None = None) -> list[Alert]:
        """Raise the time-driven alerts of the area (late start, missed, overrun, certificate
        expiring) and mark missed visits. Safe to run as often as one likes."""
        now = now or self.clock()
        rules = self.rules(service_area_id)
        changed: list[Any] = []
        today = self.local_day(now)
        for day in (today - timedelta(days=1), today):
            for visit in self.list_visits(service_area_id, day):
                changed += self._sweep_visit(visit, rules, now)
        for c in self.list_caregivers(service_area_id):
            expires = c.certificate_expires
            if (c.kind is CaregiverKind.EMPLOYEE and expires is not None
                    and expires <= today + timedelta(days=rules.certificate_warning_days)):
                text = "expired" if expires < today else "expires"
                changed += self._alert(
                    AlertKind.CERTIFICATE_EXPIRING, f"{c.caregiver_id}/{expires.isoformat()}",
                    service_area_id, f"certificate of {c.name} ({c.caregiver_id}) {text} on "
                    f"{expires.isoformat()}", now, caregiver_id=c.caregiver_id)
        self.save(*changed)
        alerts = [a for a in changed if isinstance(a, Alert)]
        for alert in alerts:
            if alert.kind is AlertKind.OVERRUN:
                # The caregiver's later visits cannot all keep their times: propose a replan.
                visit = self.get_visit(alert.visit_id)
                self.propose_replan(service_area_id, self.local_day(visit.planned_start),
                                    reason=f"visit {visit.visit_id} runs long", now=now)
        return alerts

    def _sweep_visit(self, visit: Visit, rules: AreaRules, now: datetime) -> list[Any]:
        out: list[Any] = []
        about = {"visit_id": visit.visit_id, "caregiver_id": visit.caregiver_id,
                 "elder_id": visit.elder_id}
        if visit.state in NOT_STARTED:
            if self._sync_pending(visit, rules, now):
                return []  # the phone holds its check-in; do not cry wolf
            if now > visit.planned_end + timedelta(minutes=rules.missed_after_minutes):
                visit.miss(at=now, reason="no check-in by "
                           f"{rules.missed_after_minutes} min after the planned end")
                out.append(visit)
                out += self._alert(AlertKind.MISSED, visit.visit_id, visit.service_area_id,
                                   f"visit {visit.visit_id} was missed", now,
                                   severity="critical", **about)
                return out
            late = (now - visit.planned_start).total_seconds() / 60
            for grace in rules.late_grace_minutes:
                if late > grace:
                    out += self._alert(AlertKind.LATE_START, f"{visit.visit_id}/{grace}",
                                       visit.service_area_id,
                                       f"visit {visit.visit_id} not started {grace} min after "
                                       f"{visit.planned_start.astimezone(self.tz):%H:%M}", now,
                                       severity="warning" if grace < 60 else "critical",
                                       **about)
        elif (visit.state is VisitState.NO_SHOW
              and visit.escalation_step in ("call_family", "call_centre")
              and now - datetime.fromisoformat(visit.escalation[-1]["at"])
              > timedelta(minutes=rules.escalation_minutes)):
            # Nobody recorded an answer in time: the next in line is called.
            out += self._escalate(visit, "not_reached", "no answer in time", now)
        elif visit.state is VisitState.CHECKED_IN and now > visit.planned_end + timedelta(
                minutes=rules.overrun_grace_minutes):
            out += self._alert(AlertKind.OVERRUN, visit.visit_id, visit.service_area_id,
                               f"visit {visit.visit_id} runs over its planned end "
                               f"{visit.planned_end.astimezone(self.tz):%H:%M}", now, **about)
        return out

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        if isinstance(event, OrderPlaced):
            p = event.payload
            # Booked in the area's section like an order taken over HTTP, held until the
            # consumer has recorded what this collects.
            owner = self.owner_of_elder(p.elder_id)
            if owner is not None:
                processing.hold(self.sections.hold(bookings_of(owner.service_area_id)))
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
                emergency_position=p.location.model_dump() if p.location else None,
            ), now=event.occurred_at)
            processing.collect_events(*aggregates)
        elif isinstance(event, OrderCancelled):
            order = self.get_or_none(ServiceOrder.create_id(event.payload.order_id))
            if order is None or order.state == "cancelled":
                return
            processing.collect_events(
                *self._cancel(order, event.payload.reason, event.payload.cancelled_by))
        elif isinstance(event, HoursReserved | ReservationRejected | CreditsReserved
                        | CreditsReservationRejected):
            processing.collect_events(*self._funding_answer(event))

    # Owners (for access checks: None when there is no such record) ---------------------------
    def owner_of_elder(self, elder_id: str) -> Owner | None:
        elder = self.get_or_none(Elder.create_id(elder_id))
        return None if elder is None else Owner(elder.service_area_id, elder_id=elder.elder_id)

    def homes_of(self, elder_ids: Iterable[str]) -> dict[str, LatLon]:
        """Where these elders live (unknown ones left out)."""
        homes = {}
        for elder_id in elder_ids:
            elder = self.get_or_none(Elder.create_id(elder_id))
            if elder is not None and elder.lat is not None and elder.lon is not None:
                homes[elder_id] = LatLon(elder.lat, elder.lon)
        return homes

    def ever_assigned(self, visit_id: str, caregiver_id: str) -> bool:
        """Whether the caregiver was ever one of the visit's caregivers (as far as the read
        model has followed the log)."""
        return caregiver_id in self._ever_assigned.get(visit_id, ())

    def owner_of_caregiver(self, caregiver_id: str) -> Owner | None:
        caregiver = self.peek(Caregiver.create_id(caregiver_id))
        return None if caregiver is None else Owner(caregiver.service_area_id,
                                                    frozenset({caregiver.caregiver_id}))

    def owner_of_order(self, order_id: str) -> Owner | None:
        order = self.peek(ServiceOrder.create_id(order_id))
        return None if order is None else Owner(order.service_area_id, elder_id=order.elder_id)

    def owner_of_visit(self, visit_id: str) -> Owner | None:
        """The visit's area, its caregivers (two for two-person care) and elder."""
        visit = self.peek(Visit.create_id(visit_id))
        return None if visit is None else Owner(visit.service_area_id,
                                                frozenset(visit.caregiver_ids), visit.elder_id)

    def owner_of_care_plan(self, care_plan_id: str) -> Owner | None:
        plan = self.peek(CarePlan.create_id(care_plan_id))
        return None if plan is None else Owner(plan.service_area_id, elder_id=plan.elder_id)

    def owner_of_proposal(self, proposal_id: str) -> Owner | None:
        proposal = self.peek(ReplanProposal.create_id(proposal_id))
        return None if proposal is None else Owner(proposal.service_area_id)

    def owner_of_alert(self, alert_id: str) -> Owner | None:
        alert = self.get_or_none(Alert.create_id(alert_id))
        return None if alert is None else Owner(alert.service_area_id, elder_id=alert.elder_id)

    # Helpers ---------------------------------------------------------------------------------
    def _get(self, aggregate_id: UUID, message: str) -> Any:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(message) from None

    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        return translate(self, domain_event)


__all__ = ["DispatchApplication", "PlaceOrder", "NotFound", "Owner", "DispatchError",
           "InvalidInput", "IllegalTransition", "stable_id", "CaregiverKind"]
