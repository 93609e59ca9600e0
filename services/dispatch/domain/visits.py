"""Service orders and visits, with the visit's explicit state machine and its verification rule.

A visit is verified when the six elements of electronic visit verification are present and
consistent: who served (caregiver), whom (elder), what (service type), where (a check-in or
check-out position near the home), and when it started and ended; plus the elder's (or a family
proxy's) confirmation.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import CaregiverKind, ConfirmationMethod, Priority, ServiceType
from services.dispatch.routing.travel import LatLon, haversine_km
from services.runtime.eventstore import stable_id

# How far from the elder's home a check-in may be and still count as "at the home".
DEFAULT_LOCATION_RADIUS_M = 200


class DispatchError(ValueError):
    """A command broke a rule of dispatch; nothing changed."""


class IllegalTransition(DispatchError):
    """The visit is not in a state that allows this step."""


class VisitState(StrEnum):
    SCHEDULED = "scheduled"
    EN_ROUTE = "en_route"
    CHECKED_IN = "checked_in"
    CHECKED_OUT = "checked_out"
    VERIFIED = "verified"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    MISSED = "missed"
    DISPUTED = "disputed"


# Which states each step may start from.
ALLOWED_FROM: dict[str, frozenset[VisitState]] = {
    "depart": frozenset({VisitState.SCHEDULED}),
    "check_in": frozenset({VisitState.SCHEDULED, VisitState.EN_ROUTE}),
    "check_out": frozenset({VisitState.CHECKED_IN}),
    "verify": frozenset({VisitState.CHECKED_OUT}),
    "cancel": frozenset({VisitState.SCHEDULED, VisitState.EN_ROUTE}),
    "dispute": frozenset({VisitState.CHECKED_OUT, VisitState.VERIFIED}),
}


def _require(state: VisitState, step: str) -> None:
    if state not in ALLOWED_FROM[step]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_FROM[step]))
        raise IllegalTransition(f"cannot {step.replace('_', ' ')} a visit that is {state.value} "
                                f"(allowed from: {allowed})")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    return round(haversine_km(LatLon(lat1, lon1), LatLon(lat2, lon2)) * 1000)


class OrderState(StrEnum):
    PLACED = "placed"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    UNASSIGNED = "unassigned"


class ServiceOrder(Aggregate):
    """An order for one visit (from the hotline, a care plan, an app, an SOS, a redemption)."""

    @staticmethod
    def create_id(order_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("order", order_id)

    @event("Placed")
    def __init__(
        self,
        order_id: str,
        elder_id: str,
        service_area_id: str,
        service_type: ServiceType,
        source: str,
        priority: Priority,
        emergency: bool,
        requested_date: date,
        window_start: datetime | None,
        window_end: datetime | None,
        duration_minutes: int,
        staff_count: int,
        use_time_credits: bool,
        time_credit_account_id: str | None,
        out_of_pocket_agreed: bool,
        notes: str | None,
        placed_by: str | None,
        correlation_id: str,
        origin_event_id: str | None = None,
    ) -> None:
        self.order_id = order_id
        # Set when the order arrived as an integration event (e.g. a time-bank redemption).
        self.origin_event_id = origin_event_id
        self.elder_id = elder_id
        self.service_area_id = service_area_id
        self.service_type = ServiceType(service_type)
        self.source = source
        self.priority = Priority(priority)
        self.emergency = emergency
        self.requested_date = requested_date
        self.window_start = window_start
        self.window_end = window_end
        self.duration_minutes = duration_minutes
        self.staff_count = staff_count
        self.use_time_credits = use_time_credits
        self.time_credit_account_id = time_credit_account_id
        self.out_of_pocket_agreed = out_of_pocket_agreed
        self.notes = notes
        self.placed_by = placed_by
        self.correlation_id = correlation_id
        self.state = OrderState.PLACED
        self.visit_ids: list[str] = []
        self.unassigned_reason: str | None = None

    @event("Scheduled")
    def mark_scheduled(self, visit_id: str) -> None:
        self.state = OrderState.SCHEDULED
        self.visit_ids.append(visit_id)

    @event("LeftUnassigned")
    def mark_unassigned(self, reason: str) -> None:
        self.state = OrderState.UNASSIGNED
        self.unassigned_reason = reason

    @event("Cancelled")
    def cancel(self, reason: str, cancelled_by: str | None) -> None:
        if self.state is OrderState.CANCELLED:
            raise DispatchError("the order is cancelled already")
        self.state = OrderState.CANCELLED
        self.cancel_reason = reason
        self.cancelled_by = cancelled_by


class Visit(Aggregate):
    """One visit of one caregiver to one elder, from scheduling to verification."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("visit", visit_id)

    @event("Scheduled")
    def __init__(
        self,
        visit_id: str,
        order_id: str,
        elder_id: str,
        service_area_id: str,
        caregiver_id: str,
        caregiver_kind: CaregiverKind,
        provider_id: str | None,
        service_type: ServiceType,
        planned_start: datetime,
        planned_end: datetime,
        home_lat: float,
        home_lon: float,
        use_time_credits: bool,
        time_credit_account_id: str | None,
        out_of_pocket_agreed: bool,
        correlation_id: str,
    ) -> None:
        self.visit_id = visit_id
        self.order_id = order_id
        self.elder_id = elder_id
        self.service_area_id = service_area_id
        self.caregiver_id = caregiver_id
        self.caregiver_kind = CaregiverKind(caregiver_kind)
        self.provider_id = provider_id
        self.service_type = ServiceType(service_type)
        self.planned_start = planned_start
        self.planned_end = planned_end
        self.home_lat = home_lat
        self.home_lon = home_lon
        self.use_time_credits = use_time_credits
        self.time_credit_account_id = time_credit_account_id
        self.out_of_pocket_agreed = out_of_pocket_agreed
        self.correlation_id = correlation_id
        self.state = VisitState.SCHEDULED
        self.checked_in_at: datetime | None = None
        self.checked_out_at: datetime | None = None
        self.check_in_verified = False
        self.check_out_verified = False
        self.actual_minutes: int | None = None
        self.confirmation: ConfirmationMethod | None = None
        self.verification_problems: list[str] = []

    @property
    def planned_minutes(self) -> int:
        return math.ceil((self.planned_end - self.planned_start).total_seconds() / 60)

    @property
    def location_verified(self) -> bool:
        return self.check_in_verified or self.check_out_verified

    def _near_home(self, lat: float | None, lon: float | None,
                   radius_m: int) -> tuple[bool, int | None]:
        if lat is None or lon is None:
            return False, None
        meters = distance_m(lat, lon, self.home_lat, self.home_lon)
        return meters <= radius_m, meters

    # Steps -----------------------------------------------------------------------------------
    def check_in(self, at: datetime, lat: float | None, lon: float | None, method: str,
                 radius_m: int = DEFAULT_LOCATION_RADIUS_M) -> None:
        _require(self.state, "check_in")
        verified, meters = self._near_home(lat, lon, radius_m)
        self._checked_in(at=at, lat=lat, lon=lon, method=method, location_verified=verified,
                         distance_m=meters)

    @event("CheckedIn")
    def _checked_in(self, at: datetime, lat: float | None, lon: float | None, method: str,
                    location_verified: bool, distance_m: int | None) -> None:
        self.state = VisitState.CHECKED_IN
        self.checked_in_at = at
        self.check_in_lat, self.check_in_lon = lat, lon
        self.check_in_method = method
        self.check_in_verified = location_verified
        self.check_in_distance_m = distance_m

    def check_out(self, at: datetime, lat: float | None, lon: float | None,
                  tasks_done: list[str], confirmation_code: str | None,
                  family_proxy_confirmed: bool, elder_code: str,
                  radius_m: int = DEFAULT_LOCATION_RADIUS_M) -> None:
        _require(self.state, "check_out")
        assert self.checked_in_at is not None
        if at <= self.checked_in_at:
            raise DispatchError("check-out must come after check-in")
        verified, meters = self._near_home(lat, lon, radius_m)
        if confirmation_code is not None and confirmation_code == elder_code:
            confirmation = ConfirmationMethod.ELDER_CODE
        elif family_proxy_confirmed:
            confirmation = ConfirmationMethod.FAMILY_PROXY
        else:
            confirmation = ConfirmationMethod.NONE
        minutes = math.floor((at - self.checked_in_at).total_seconds() / 60)
        self._checked_out(at=at, lat=lat, lon=lon, tasks_done=list(tasks_done),
                          location_verified=verified, distance_m=meters,
                          actual_minutes=minutes, confirmation=confirmation,
                          code_mismatch=confirmation_code is not None
                          and confirmation_code != elder_code)

    @event("CheckedOut")
    def _checked_out(self, at: datetime, lat: float | None, lon: float | None,
                     tasks_done: list[str], location_verified: bool, distance_m: int | None,
                     actual_minutes: int, confirmation: ConfirmationMethod,
                     code_mismatch: bool) -> None:
        self.state = VisitState.CHECKED_OUT
        self.checked_out_at = at
        self.check_out_lat, self.check_out_lon = lat, lon
        self.tasks_done = tasks_done
        self.check_out_verified = location_verified
        self.check_out_distance_m = distance_m
        self.actual_minutes = actual_minutes
        self.confirmation = ConfirmationMethod(confirmation)
        self.code_mismatch = code_mismatch

    def verification_gaps(self) -> list[str]:
        """What keeps this checked-out visit from being verified automatically."""
        gaps = []
        if not self.location_verified:
            gaps.append("neither check-in nor check-out was at the elder's home")
        if self.confirmation in (None, ConfirmationMethod.NONE):
            gaps.append("no confirmation by the elder or a family proxy")
        if getattr(self, "code_mismatch", False):
            gaps.append("the confirmation code given did not match")
        if not self.actual_minutes:
            gaps.append("the visit lasted less than a minute")
        return gaps

    def verify(self, *, by: str, override_reason: str | None = None) -> None:
        """Verify automatically when nothing is missing, or by a dispatcher with a reason."""
        _require(self.state, "verify")
        gaps = self.verification_gaps()
        if gaps and not override_reason:
            raise DispatchError("cannot verify: " + "; ".join(gaps))
        self._verified(by=by, override_reason=override_reason, gaps=gaps)

    @event("Verified")
    def _verified(self, by: str, override_reason: str | None, gaps: list[str]) -> None:
        self.state = VisitState.VERIFIED
        self.verified_by = by
        self.override_reason = override_reason
        self.verification_problems = gaps

    @event("NeedsReview")
    def flag_for_review(self, gaps: list[str]) -> None:
        self.verification_problems = gaps

    def cancel(self, reason: str, cancelled_by: str) -> None:
        _require(self.state, "cancel")
        self._cancelled(reason=reason, cancelled_by=cancelled_by)

    @event("Cancelled")
    def _cancelled(self, reason: str, cancelled_by: str) -> None:
        self.state = VisitState.CANCELLED
        self.cancel_reason = reason
        self.cancelled_by = cancelled_by
