"""Service orders and visits, with the visit's explicit state machine and its verification rules.

A visit is verified when the six elements of electronic visit verification are present and
consistent: who served (caregiver), whom (elder), what (service type), where (a check-in or
check-out position inside the geofence around the home, accurate enough to tell), and when it
started and ended (a plausible duration that overlaps no other visit of the same caregiver); plus
the elder's (or a family proxy's) confirmation by code or signature. Otherwise it waits for a
reviewer, whose decision is an event too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import CaregiverKind, ConfirmationMethod, Priority, ServiceType
from services.dispatch.domain.areas import AreaRules
from services.dispatch.routing.travel import LatLon, haversine_km
from services.runtime.eventstore import stable_id

# How far from the elder's home a check-in may be and still count as "at the home".
DEFAULT_LOCATION_RADIUS_M = AreaRules.geofence_radius_m


class DispatchError(ValueError):
    """A command broke a rule of dispatch; nothing changed."""


class InvalidInput(DispatchError):
    """The request itself cannot be right (e.g. a time in the future): HTTP 422."""


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


NOT_STARTED = frozenset({VisitState.SCHEDULED, VisitState.EN_ROUTE})
FINISHED = frozenset({VisitState.VERIFIED, VisitState.CANCELLED, VisitState.NO_SHOW,
                      VisitState.MISSED, VisitState.DISPUTED})

# Which states each step may start from.
ALLOWED_FROM: dict[str, frozenset[VisitState]] = {
    "depart": frozenset({VisitState.SCHEDULED}),
    "check_in": NOT_STARTED,
    "check_out": frozenset({VisitState.CHECKED_IN}),
    "verify": frozenset({VisitState.CHECKED_OUT}),
    "review": frozenset({VisitState.CHECKED_OUT}),
    "cancel": NOT_STARTED,
    "reschedule": NOT_STARTED,
    "no_show": NOT_STARTED,
    "miss": NOT_STARTED,
    "dispute": frozenset({VisitState.CHECKED_OUT, VisitState.VERIFIED}),
}


def _require(state: VisitState, step: str) -> None:
    if state not in ALLOWED_FROM[step]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_FROM[step]))
        raise IllegalTransition(f"cannot {step.replace('_', ' ')} a visit that is {state.value} "
                                f"(allowed from: {allowed})")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    return round(haversine_km(LatLon(lat1, lon1), LatLon(lat2, lon2)) * 1000)


def locate(lat: float | None, lon: float | None, accuracy_m: float | None,
           home: tuple[float, float], radius_m: int,
           max_accuracy_m: int) -> tuple[bool, int | None, str | None]:
    """(inside the geofence, metres from home, why not verified) for one reported position."""
    if lat is None or lon is None:
        return False, None, "no position reported"
    meters = distance_m(lat, lon, *home)
    if accuracy_m is not None and accuracy_m > max_accuracy_m:
        return False, meters, (f"position accurate to {round(accuracy_m)} m only "
                               f"(limit {max_accuracy_m} m)")
    if meters > radius_m:
        return False, meters, f"{meters} m from the home (geofence {radius_m} m)"
    return True, meters, None


class OrderState(StrEnum):
    PLACED = "placed"  # waiting for the area's daily plan
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
        care_plan_id: str | None = None,
        emergency_position: dict[str, float] | None = None,
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
        self.care_plan_id = care_plan_id
        self.emergency_position = emergency_position
        self.state = OrderState.PLACED
        self.visit_ids: list[str] = []
        self.unassigned_reason: str | None = None

    @property
    def subsidised(self) -> bool:
        """Paid and optional services are the elder's own purchase; the rest draw on subsidy."""
        return self.priority not in (Priority.PAID, Priority.OPTIONAL)

    @event("Scheduled")
    def mark_scheduled(self, visit_id: str) -> None:
        self.state = OrderState.SCHEDULED
        if visit_id not in self.visit_ids:
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


class FundingStatus(StrEnum):
    PENDING = "pending"  # asked the ledger / time bank, no answer yet
    FUNDED = "funded"
    NOT_FUNDED = "not_funded"  # needs a decision by the dispatcher
    NOT_REQUIRED = "not_required"  # a volunteer's mutual-aid visit: nobody is paid


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
        needs_confirmation: bool = True,
        priority: str = Priority.ENTITLED_CARE,
        plan_id: str | None = None,
        second_caregiver_id: str | None = None,
    ) -> None:
        self.visit_id = visit_id
        # Two-person care (e.g. bathing a bed-bound elder): both start together.
        self.second_caregiver_id = second_caregiver_id
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
        self.needs_confirmation = needs_confirmation
        self.priority = Priority(priority)
        self.plan_id = plan_id
        self.state = VisitState.SCHEDULED
        self.departed_at: datetime | None = None
        self.checked_in_at: datetime | None = None
        self.checked_out_at: datetime | None = None
        self.check_in_verified = False
        self.check_out_verified = False
        self.check_in_problem: str | None = None
        self.check_out_problem: str | None = None
        self.actual_minutes: int | None = None
        self.confirmation: ConfirmationMethod | None = None
        self.code_mismatch = False
        self.verification_problems: list[str] = []
        self.needs_review = False
        self.tasks_done: list[str] = []
        self.notes: list[str] = []
        self.idempotency_keys: dict[str, str] = {}
        self.escalation: list[dict[str, Any]] = []
        self.review: dict[str, Any] | None = None
        volunteer_only = self.caregiver_kind is CaregiverKind.VOLUNTEER and not use_time_credits
        self.funding = FundingStatus.NOT_REQUIRED if volunteer_only else FundingStatus.PENDING
        self.funding_detail: str | None = None
        self.funding_legs: list[dict[str, Any]] = []

    @property
    def planned_minutes(self) -> int:
        return math.ceil((self.planned_end - self.planned_start).total_seconds() / 60)

    @property
    def caregiver_ids(self) -> list[str]:
        return [c for c in (self.caregiver_id, self.second_caregiver_id) if c]

    @property
    def location_verified(self) -> bool:
        return self.check_in_verified or self.check_out_verified

    def _already_done(self, key: str | None, step: str) -> bool:
        """True when this idempotency key already did this step (a harmless duplicate)."""
        if key is None or key not in self.idempotency_keys:
            return False
        if self.idempotency_keys[key] != step:
            raise DispatchError(f"idempotency key {key} was already used for "
                                f"{self.idempotency_keys[key].replace('_', ' ')}")
        return True

    def _remember(self, key: str | None, step: str) -> None:
        if key is not None:
            self.idempotency_keys = {**self.idempotency_keys, key: step}

    def _note(self, notes: str | None) -> None:
        if notes:
            self.notes = [*self.notes, notes]

    # Steps -----------------------------------------------------------------------------------
    def depart(self, at: datetime, idempotency_key: str | None = None) -> bool:
        if self._already_done(idempotency_key, "depart"):
            return False
        _require(self.state, "depart")
        self._departed(at=at, idempotency_key=idempotency_key)
        return True

    @event("Departed")
    def _departed(self, at: datetime, idempotency_key: str | None = None) -> None:
        self.state = VisitState.EN_ROUTE
        self.departed_at = at
        self._remember(idempotency_key, "depart")

    def check_in(self, at: datetime, lat: float | None, lon: float | None, method: str,
                 radius_m: int = DEFAULT_LOCATION_RADIUS_M, accuracy_m: float | None = None,
                 max_accuracy_m: int = AreaRules.max_accuracy_m, notes: str | None = None,
                 idempotency_key: str | None = None) -> bool:
        """Check in; False when the same idempotency key did it already (nothing changes)."""
        if self._already_done(idempotency_key, "check_in"):
            return False
        _require(self.state, "check_in")
        verified, meters, problem = locate(lat, lon, accuracy_m, (self.home_lat, self.home_lon),
                                           radius_m, max_accuracy_m)
        self._checked_in(at=at, lat=lat, lon=lon, method=method, location_verified=verified,
                         distance_m=meters, accuracy_m=accuracy_m, problem=problem, notes=notes,
                         idempotency_key=idempotency_key)
        return True

    @event("CheckedIn")
    def _checked_in(self, at: datetime, lat: float | None, lon: float | None, method: str,
                    location_verified: bool, distance_m: int | None,
                    accuracy_m: float | None = None, problem: str | None = None,
                    notes: str | None = None, idempotency_key: str | None = None) -> None:
        self.state = VisitState.CHECKED_IN
        self.checked_in_at = at
        self.check_in_lat, self.check_in_lon = lat, lon
        self.check_in_method = method
        self.check_in_verified = location_verified
        self.check_in_distance_m = distance_m
        self.check_in_accuracy_m = accuracy_m
        self.check_in_problem = problem
        self._note(notes)
        self._remember(idempotency_key, "check_in")

    def check_out(self, at: datetime, lat: float | None, lon: float | None,
                  tasks_done: Sequence[str], confirmation_code: str | None,
                  family_proxy_confirmed: bool, elder_code: str,
                  radius_m: int = DEFAULT_LOCATION_RADIUS_M, accuracy_m: float | None = None,
                  max_accuracy_m: int = AreaRules.max_accuracy_m, signature: str | None = None,
                  notes: str | None = None, idempotency_key: str | None = None) -> bool:
        """Check out; False when the same idempotency key did it already (nothing changes)."""
        if self._already_done(idempotency_key, "check_out"):
            return False
        _require(self.state, "check_out")
        assert self.checked_in_at is not None
        if at <= self.checked_in_at:
            raise InvalidInput(f"check-out must come after check-in ({at.isoformat()} is not "
                               f"after {self.checked_in_at.isoformat()})")
        verified, meters, problem = locate(lat, lon, accuracy_m, (self.home_lat, self.home_lon),
                                           radius_m, max_accuracy_m)
        if confirmation_code is not None and confirmation_code == elder_code:
            confirmation = ConfirmationMethod.ELDER_CODE
        elif signature:
            confirmation = ConfirmationMethod.SIGNATURE
        elif family_proxy_confirmed:
            confirmation = ConfirmationMethod.FAMILY_PROXY
        else:
            confirmation = ConfirmationMethod.NONE
        minutes = math.floor((at - self.checked_in_at).total_seconds() / 60)
        self._checked_out(at=at, lat=lat, lon=lon, tasks_done=list(tasks_done),
                          location_verified=verified, distance_m=meters,
                          actual_minutes=minutes, confirmation=confirmation,
                          code_mismatch=confirmation_code is not None
                          and confirmation_code != elder_code,
                          accuracy_m=accuracy_m, problem=problem, signature=signature,
                          notes=notes, idempotency_key=idempotency_key)
        return True

    @event("CheckedOut")
    def _checked_out(self, at: datetime, lat: float | None, lon: float | None,
                     tasks_done: list[str], location_verified: bool, distance_m: int | None,
                     actual_minutes: int, confirmation: ConfirmationMethod,
                     code_mismatch: bool, accuracy_m: float | None = None,
                     problem: str | None = None, signature: str | None = None,
                     notes: str | None = None, idempotency_key: str | None = None) -> None:
        self.state = VisitState.CHECKED_OUT
        self.checked_out_at = at
        self.check_out_lat, self.check_out_lon = lat, lon
        self.tasks_done = tasks_done
        self.check_out_verified = location_verified
        self.check_out_distance_m = distance_m
        self.check_out_accuracy_m = accuracy_m
        self.check_out_problem = problem
        self.actual_minutes = actual_minutes
        self.confirmation = ConfirmationMethod(confirmation)
        self.code_mismatch = code_mismatch
        self.signature = signature
        self._note(notes)
        self._remember(idempotency_key, "check_out")

    def verification_gaps(self, rules: AreaRules | None = None,
                          overlapping: Sequence[str] = ()) -> list[str]:
        """What keeps this checked-out visit from being verified automatically."""
        rules = rules or AreaRules()
        gaps = []
        if not self.location_verified:
            why = "; ".join(p for p in (self.check_in_problem, self.check_out_problem) if p)
            gaps.append("location not verified: neither check-in nor check-out was at the "
                        "elder's home" + (f" ({why})" if why else ""))
        if (self.needs_confirmation and rules.confirmation_required
                and self.confirmation in (None, ConfirmationMethod.NONE)):
            gaps.append("no confirmation by the elder or a family proxy")
        if self.code_mismatch:
            gaps.append("the confirmation code given did not match")
        minutes = self.actual_minutes or 0
        if minutes < 1:
            gaps.append("the visit lasted less than a minute")
        elif minutes * 100 < self.planned_minutes * rules.min_duration_percent:
            gaps.append(f"lasted {minutes} min, under {rules.min_duration_percent}% of the "
                        f"planned {self.planned_minutes} min")
        elif minutes * 100 > self.planned_minutes * rules.max_duration_percent:
            gaps.append(f"lasted {minutes} min, over {rules.max_duration_percent}% of the "
                        f"planned {self.planned_minutes} min")
        for other in overlapping:
            gaps.append(f"overlaps visit {other} of the same caregiver")
        return gaps

    def verify(self, *, by: str, override_reason: str | None = None,
               rules: AreaRules | None = None, overlapping: Sequence[str] = ()) -> None:
        """Verify automatically when nothing is missing, or by a reviewer with a reason."""
        _require(self.state, "verify")
        gaps = self.verification_gaps(rules, overlapping)
        if gaps and not override_reason:
            raise DispatchError("cannot verify: " + "; ".join(gaps))
        self._verified(by=by, override_reason=override_reason, gaps=gaps)

    @event("Verified")
    def _verified(self, by: str, override_reason: str | None, gaps: list[str]) -> None:
        self.state = VisitState.VERIFIED
        self.verified_by = by
        self.override_reason = override_reason
        self.verification_problems = gaps
        self.needs_review = False
        if override_reason:
            self.review = {"decision": "approve", "by": by, "reason": override_reason}

    @event("NeedsReview")
    def flag_for_review(self, gaps: list[str]) -> None:
        self.verification_problems = gaps
        self.needs_review = True

    def reject(self, *, by: str, reason: str) -> None:
        """A reviewer decides the visit did not take place as recorded."""
        _require(self.state, "review")
        self._rejected(by=by, reason=reason)

    @event("ReviewRejected")
    def _rejected(self, by: str, reason: str) -> None:
        self.state = VisitState.DISPUTED
        self.needs_review = False
        self.review = {"decision": "reject", "by": by, "reason": reason}

    def cancel(self, reason: str, cancelled_by: str) -> None:
        _require(self.state, "cancel")
        self._cancelled(reason=reason, cancelled_by=cancelled_by)

    @event("Cancelled")
    def _cancelled(self, reason: str, cancelled_by: str) -> None:
        self.state = VisitState.CANCELLED
        self.cancel_reason = reason
        self.cancelled_by = cancelled_by

    def no_show(self, at: datetime, reason: str, reported_by: str,
                lat: float | None = None, lon: float | None = None,
                idempotency_key: str | None = None) -> bool:
        """The elder was not at home. A welfare check cannot stop there: escalate."""
        if self._already_done(idempotency_key, "no_show"):
            return False
        _require(self.state, "no_show")
        welfare = self.service_type is ServiceType.WELFARE_CHECK
        self._no_show(at=at, reason=reason, reported_by=reported_by, lat=lat, lon=lon,
                      escalate_to="call_family" if welfare else None,
                      idempotency_key=idempotency_key)
        return True

    @event("NoShow")
    def _no_show(self, at: datetime, reason: str, reported_by: str, lat: float | None,
                 lon: float | None, escalate_to: str | None,
                 idempotency_key: str | None = None) -> None:
        self.state = VisitState.NO_SHOW
        self.no_show_at = at
        self.cancel_reason = f"no_show: {reason}"
        self.cancelled_by = reported_by
        if escalate_to:
            self.escalation = [{"step": escalate_to, "at": at.isoformat(), "outcome": None}]
        self._remember(idempotency_key, "no_show")

    @property
    def escalation_step(self) -> str | None:
        return self.escalation[-1]["step"] if self.escalation else None

    def record_escalation(self, outcome: str, by: str, at: datetime) -> None:
        """Family called: reached -> done; not reached -> the service centre is called next."""
        step = self.escalation_step
        if step not in ("call_family", "call_centre"):
            raise DispatchError(f"visit {self.visit_id} has no open escalation")
        if outcome not in ("reached", "not_reached"):
            raise InvalidInput("outcome must be reached or not_reached")
        following = "resolved" if outcome == "reached" else (
            "call_centre" if step == "call_family" else "emergency_services")
        self._escalated(step=step, outcome=outcome, by=by, at=at, next_step=following)

    @event("Escalated")
    def _escalated(self, step: str, outcome: str, by: str, at: datetime, next_step: str) -> None:
        done = [*self.escalation[:-1], {**self.escalation[-1], "outcome": outcome, "by": by}]
        self.escalation = [*done, {"step": next_step, "at": at.isoformat(), "outcome": None}]

    def miss(self, at: datetime, reason: str) -> None:
        _require(self.state, "miss")
        self._missed(at=at, reason=reason)

    @event("Missed")
    def _missed(self, at: datetime, reason: str) -> None:
        self.state = VisitState.MISSED
        self.missed_at = at
        self.cancel_reason = f"missed: {reason}"
        self.cancelled_by = "dispatch"

    def reinstate_if_started_before_missed(self, at: datetime) -> bool:
        """A check-in queued offline arrives after the visit was marked missed, with a device
        time before that: the visit did happen; it is scheduled again and the check-in
        proceeds (the ledger charges a verification it holds nothing for directly)."""
        if self.state is not VisitState.MISSED or at >= self.missed_at:
            return False
        self._reinstated(at=at)
        return True

    @event("Reinstated")
    def _reinstated(self, at: datetime) -> None:
        self.state = VisitState.SCHEDULED
        self.cancel_reason = None
        self.cancelled_by = None

    def reschedule(self, *, caregiver_id: str, caregiver_kind: CaregiverKind,
                   provider_id: str | None, planned_start: datetime, planned_end: datetime,
                   reason: str, plan_id: str | None = None,
                   second_caregiver_id: str | None = None) -> bool:
        """Move to another caregiver or time; False when nothing would change."""
        _require(self.state, "reschedule")
        if (caregiver_id, second_caregiver_id, planned_start, planned_end) == (
                self.caregiver_id, self.second_caregiver_id, self.planned_start,
                self.planned_end):
            return False
        self._rescheduled(caregiver_id=caregiver_id, caregiver_kind=caregiver_kind,
                          provider_id=provider_id, planned_start=planned_start,
                          planned_end=planned_end, reason=reason, plan_id=plan_id,
                          previous_caregiver_id=self.caregiver_id,
                          second_caregiver_id=second_caregiver_id)
        return True

    @event("Rescheduled")
    def _rescheduled(self, caregiver_id: str, caregiver_kind: CaregiverKind,
                     provider_id: str | None, planned_start: datetime, planned_end: datetime,
                     reason: str, plan_id: str | None, previous_caregiver_id: str,
                     second_caregiver_id: str | None = None) -> None:
        self.caregiver_id = caregiver_id
        self.second_caregiver_id = second_caregiver_id
        self.caregiver_kind = CaregiverKind(caregiver_kind)
        self.provider_id = provider_id
        self.planned_start, self.planned_end = planned_start, planned_end
        self.state = VisitState.SCHEDULED  # an en-route visit moved is no longer en route
        self.reschedule_reason = reason
        self.previous_caregiver_id = previous_caregiver_id
        self.plan_id = plan_id or self.plan_id

    @event("FundingAnswered")
    def record_funding(self, status: str, detail: str | None, legs: list[dict[str, Any]],
                       answered_by: str) -> None:
        self.funding = FundingStatus(status)
        self.funding_detail = detail
        self.funding_legs = legs
        self.funding_answered_by = answered_by
