"""HTTP adapter of dispatch (thin): registration, areas, orders, care plans, plans, visits,
alerts, replanning and the area's server-sent event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import date, datetime
from typing import Any, Literal

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.values import CaregiverKind, CheckMethod, OrderSource, Priority, ServiceType
from services.dispatch.access import DispatchAccess
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.dispatch.domain.alerts import Alert
from services.dispatch.domain.catalogue import CatalogueEntry
from services.dispatch.domain.people import Caregiver, Elder, Provider
from services.dispatch.domain.plans import CarePlan, ReplanProposal
from services.dispatch.domain.visits import InvalidInput, ServiceOrder, Visit
from services.dispatch.routing.travel import LatLon, haversine_km
from services.runtime.auth import Principal
from services.runtime.http import BUSY_RESPONSES, OffLoopRoute

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
# Who did it is the caller the token names (Principal.actor), never what the body says.
IGNORED_BY = "Ignored (kept for older clients): the caller named by the token is recorded"


class _Route(OffLoopRoute):
    """Requests that cannot be right (InvalidInput) answer 422 with the reason, before the
    service-wide mapping of rule violations to 409."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as error:
                return JSONResponse(status_code=422, content={"detail": str(error),
                                                              "error": "InvalidInput"})
            except IntegrityError:
                # Two requests changed the same record at once; the other one won.
                return JSONResponse(status_code=409, content={
                    "detail": "changed concurrently by another request; retry",
                    "error": "ConcurrentChange"})
        return route


# Bodies ------------------------------------------------------------------------------------
class ElderIn(BaseModel):
    elder_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    service_area_id: str = Field(min_length=1)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    confirmation_code: str = Field(min_length=4, max_length=12)
    address: str = ""
    phone: str = ""
    gender: Literal["female", "male"] | None = None
    capability_level: int = Field(default=0, ge=0, le=4)
    gender_preference: Literal["female", "male"] | None = None
    preferred_caregiver_ids: list[str] = []
    excluded_caregiver_ids: list[str] = []
    family_phone: str = ""
    id_number: str = Field(default="", pattern=r"^(\d{17}[\dXx])?$",
                           description="居民身份证号 (18 characters); stored encrypted per elder")


class ErasureIn(BaseModel):
    by: str | None = Field(default=None, description=IGNORED_BY)


class PreferencesIn(BaseModel):
    gender_preference: Literal["female", "male"] | None = None
    preferred_caregiver_ids: list[str] = []
    excluded_caregiver_ids: list[str] = []


class AssessmentIn(BaseModel):
    capability_level: int = Field(ge=0, le=4, description="0 intact .. 4 fully dependent")
    assessed_on: date


class CaregiverIn(BaseModel):
    caregiver_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kind: CaregiverKind
    service_area_id: str = Field(min_length=1)
    skills: list[str] = []
    station_lat: float = Field(ge=-90, le=90)
    station_lon: float = Field(ge=-180, le=180)
    provider_id: str | None = None
    certificate_expires: date | None = None
    gender: Literal["female", "male"] | None = None
    certificate_level: int = Field(default=1, ge=0, le=5)
    shift_start: str = Field(default="08:00", pattern=HHMM)
    shift_end: str = Field(default="17:00", pattern=HHMM)
    work_days: list[Literal[0, 1, 2, 3, 4, 5, 6]] | None = None
    travel_mode: Literal["walk", "bicycle", "ebike", "car"] = "ebike"
    max_visits_per_day: int | None = Field(default=None, gt=0)
    max_minutes_per_week: int | None = Field(default=None, gt=0)
    phone: str = ""


class CertificateIn(BaseModel):
    expires: date
    level: int = Field(default=1, ge=1, le=5)


class ShiftIn(BaseModel):
    shift_start: str = Field(pattern=HHMM)
    shift_end: str = Field(pattern=HHMM)
    work_days: list[Literal[0, 1, 2, 3, 4, 5, 6]]


class SickIn(BaseModel):
    at: AwareDatetime | None = Field(default=None, description="From when; now if absent")
    reason: str = "sick"


class PendingSyncIn(BaseModel):
    visit_ids: list[str] = Field(description="Visits with records queued on the phone")


class ClaimIn(BaseModel):
    caregiver_id: str = Field(min_length=1, description="The volunteer taking the task")


class ProviderIn(BaseModel):
    provider_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    service_area_id: str = Field(min_length=1)


class DecisionIn(BaseModel):
    by: str | None = Field(default=None, description=IGNORED_BY)
    reason: str = Field(min_length=1)


class AreaSettingsIn(BaseModel):
    """Only the settings given change."""

    model_config = ConfigDict(extra="forbid")

    geofence_radius_m: int | None = Field(default=None, gt=0, le=5000)
    max_accuracy_m: int | None = Field(default=None, gt=0, le=5000)
    min_duration_percent: int | None = Field(default=None, ge=0, le=100)
    max_duration_percent: int | None = Field(default=None, ge=100, le=1000)
    confirmation_required: bool | None = None
    late_grace_minutes: list[int] | None = Field(default=None, min_length=1)
    missed_after_minutes: int | None = Field(default=None, ge=0)
    overrun_grace_minutes: int | None = Field(default=None, ge=0)
    clock_skew_seconds: int | None = Field(default=None, ge=0, le=3600)
    auto_accept_replans: bool | None = None
    certificate_warning_days: int | None = Field(default=None, ge=0)
    escalation_minutes: int | None = Field(default=None, gt=0)
    pending_sync_trust_minutes: int | None = Field(default=None, ge=0)
    changed_by: str | None = Field(default=None, description=IGNORED_BY)


class CatalogueEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_minutes: int | None = Field(default=None, gt=0, le=24 * 60)
    skills: list[str] | None = None
    staff_count: Literal[1, 2] | None = None
    priority: Priority | None = None
    volunteer_allowed: bool | None = None
    tasks: list[str] | None = None
    needs_confirmation: bool | None = None
    personal_care: bool | None = None
    changed_by: str | None = Field(default=None, description=IGNORED_BY)


class OrderIn(BaseModel):
    elder_id: str = Field(min_length=1)
    service_type: ServiceType
    requested_date: date
    order_id: str | None = Field(default=None, min_length=1,
                                 description="Your idempotency key; generated when absent")
    source: OrderSource = OrderSource.HOTLINE
    priority: Priority | None = None
    emergency: bool = False
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    duration_minutes: int | None = Field(default=None, gt=0, le=24 * 60)
    staff_count: Literal[1, 2] | None = None
    use_time_credits: bool = False
    time_credit_account_id: str | None = None
    out_of_pocket_agreed: bool = False
    notes: str | None = None
    placed_by: str | None = Field(default=None, description=IGNORED_BY)
    await_plan: bool = Field(default=False,
                             description="Leave it to the area's daily plan (POST .../plans)")
    emergency_lat: float | None = Field(default=None, ge=-90, le=90)
    emergency_lon: float | None = Field(default=None, ge=-180, le=180)


class CarePlanItemIn(BaseModel):
    service_type: ServiceType
    weekdays: list[Literal[0, 1, 2, 3, 4, 5, 6]] = Field(min_length=1,
                                                         description="Monday = 0")
    every_weeks: Literal[1, 2, 4] = 1
    window_start: str = Field(default="08:00", pattern=HHMM)
    window_end: str = Field(default="18:00", pattern=HHMM)
    duration_minutes: int | None = Field(default=None, gt=0, le=24 * 60)


class CarePlanIn(BaseModel):
    care_plan_id: str = Field(min_length=1)
    elder_id: str = Field(min_length=1)
    items: list[CarePlanItemIn] = Field(min_length=1)
    valid_from: date
    created_by: str | None = Field(default=None, description=IGNORED_BY)
    monthly_minutes: int | None = Field(
        default=None, gt=0, description="Hours the plan may use a month (e.g. the elder's "
                                        "entitlement); visits beyond are not generated")


class CarePlanChangeIn(BaseModel):
    items: list[CarePlanItemIn] = Field(min_length=1)
    effective_from: date
    by: str | None = Field(default=None, description=IGNORED_BY)


class StepIn(BaseModel):
    caregiver_id: str = Field(min_length=1)
    at: AwareDatetime | None = Field(
        default=None, description="The device's original time (offline sync); server time if "
                                  "absent. Refused when in the future beyond the clock skew.")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="A repeat with the same key returns the visit unchanged")


class CheckInIn(StepIn):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0)
    method: CheckMethod = CheckMethod.GPS
    notes: str | None = Field(default=None, max_length=2000)


class CheckOutIn(CheckInIn):
    tasks_done: list[str] = []
    confirmation_code: str | None = None
    family_proxy_confirmed: bool = False
    signature: str | None = Field(default=None, max_length=200_000,
                                  description="The elder's signature (e.g. an SVG path or a "
                                              "data: URL) when no code is given")


class NoShowIn(StepIn):
    reason: str = "elder not at home"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class EscalationIn(BaseModel):
    outcome: Literal["reached", "not_reached"]
    by: str | None = Field(default=None, description=IGNORED_BY)


class VerifyIn(BaseModel):
    by: str | None = Field(default=None, description=IGNORED_BY)
    override_reason: str | None = None


class ReviewIn(BaseModel):
    decision: Literal["approve", "reject"]
    by: str | None = Field(default=None, description=IGNORED_BY)
    reason: str = Field(min_length=1)


class CancelIn(BaseModel):
    reason: str = Field(min_length=1)
    cancelled_by: str | None = Field(default=None, description=IGNORED_BY)


class CancelVisitIn(CancelIn):
    replan: bool = Field(default=False, description="Replan the rest of the day (a proposal)")


class ReplanIn(BaseModel):
    date: date
    reason: str = Field(min_length=1)


class AcknowledgeIn(BaseModel):
    by: str | None = Field(default=None, description=IGNORED_BY)
    note: str | None = None


# Views -------------------------------------------------------------------------------------
def mask_id_number(number: str) -> str:
    """The last four characters only (enough to tell two elders apart on a phone call)."""
    return number if len(number) < 18 else "*" * 14 + number[-4:]


def elder_view(e: Elder) -> dict[str, Any]:
    return {"elder_id": e.elder_id, "name": e.name, "service_area_id": e.service_area_id,
            "lat": e.lat, "lon": e.lon, "address": e.address, "gender": e.gender,
            "capability_level": e.capability_level, "gender_preference": e.gender_preference,
            "preferred_caregiver_ids": e.preferred_caregiver_ids,
            "excluded_caregiver_ids": e.excluded_caregiver_ids,
            "id_number": mask_id_number(getattr(e, "id_number", "")),
            "erased": e.erased, "erased_at": e.erased_at, "erased_by": e.erased_by}


def caregiver_view(c: Caregiver) -> dict[str, Any]:
    return {"caregiver_id": c.caregiver_id, "name": c.name, "kind": c.kind,
            "service_area_id": c.service_area_id, "skills": c.skills,
            "provider_id": c.provider_id, "certificate_expires": c.certificate_expires,
            "certificate_level": c.certificate_level, "gender": c.gender,
            "shift_start": c.shift_start, "shift_end": c.shift_end, "work_days": c.work_days,
            "travel_mode": c.travel_mode, "max_visits_per_day": c.max_visits_per_day,
            "max_minutes_per_week": c.max_minutes_per_week,
            "station": {"lat": c.station_lat, "lon": c.station_lon},
            "unavailable_from": c.unavailable_from}


def provider_view(p: Provider) -> dict[str, Any]:
    return {"provider_id": p.provider_id, "name": p.name, "service_area_id": p.service_area_id,
            "blacklisted": p.blacklisted, "blacklist_reason": p.blacklist_reason}


def order_view(o: ServiceOrder) -> dict[str, Any]:
    return {"order_id": o.order_id, "elder_id": o.elder_id, "state": o.state,
            "service_type": o.service_type, "priority": o.priority, "emergency": o.emergency,
            "requested_date": o.requested_date, "duration_minutes": o.duration_minutes,
            "window_start": o.window_start, "window_end": o.window_end,
            "care_plan_id": o.care_plan_id, "subsidised": o.subsidised,
            "visit_ids": o.visit_ids, "unassigned_reason": o.unassigned_reason}


def visit_view(v: Visit) -> dict[str, Any]:
    return {
        "visit_id": v.visit_id, "order_id": v.order_id, "elder_id": v.elder_id,
        "service_area_id": v.service_area_id, "caregiver_id": v.caregiver_id,
        "second_caregiver_id": v.second_caregiver_id,
        "caregiver_kind": v.caregiver_kind, "provider_id": v.provider_id,
        "service_type": v.service_type, "state": v.state, "priority": v.priority,
        "planned_start": v.planned_start, "planned_end": v.planned_end,
        "planned_minutes": v.planned_minutes, "departed_at": v.departed_at,
        "checked_in_at": v.checked_in_at, "checked_out_at": v.checked_out_at,
        "location_verified": v.location_verified,
        "check_in_problem": v.check_in_problem, "check_out_problem": v.check_out_problem,
        "actual_minutes": v.actual_minutes, "confirmation": v.confirmation,
        "tasks_done": v.tasks_done, "notes": v.notes,
        "needs_review": v.needs_review, "verification_problems": v.verification_problems,
        "review": v.review, "escalation": v.escalation,
        "funding": v.funding, "funding_detail": v.funding_detail,
        "funding_legs": v.funding_legs, "plan_id": v.plan_id,
        "cancel_reason": getattr(v, "cancel_reason", None),
    }


def alert_view(a: Alert) -> dict[str, Any]:
    return {"alert_id": a.alert_id, "kind": a.kind, "service_area_id": a.service_area_id,
            "severity": a.severity, "message": a.message, "raised_at": a.raised_at,
            "visit_id": a.visit_id, "caregiver_id": a.caregiver_id, "elder_id": a.elder_id,
            "open": a.open, "acknowledged_by": a.acknowledged_by,
            "acknowledged_at": a.acknowledged_at, "resolved": a.resolved}


def proposal_view(p: ReplanProposal) -> dict[str, Any]:
    return {"proposal_id": p.proposal_id, "service_area_id": p.service_area_id, "date": p.day,
            "reason": p.reason, "state": p.state, "moves": p.moves, "unassigned": p.unassigned,
            "proposed_at": p.proposed_at, "decided_by": p.decided_by}


def care_plan_view(p: CarePlan) -> dict[str, Any]:
    return {"care_plan_id": p.care_plan_id, "elder_id": p.elder_id,
            "service_area_id": p.service_area_id, "valid_from": p.valid_from,
            "monthly_minutes": p.monthly_minutes, "items": p.items, "versions": p.versions}


def catalogue_view(e: CatalogueEntry) -> dict[str, Any]:
    return e.as_dict()


def route_stop_view(v: Visit, elder: Elder, entry: CatalogueEntry) -> dict[str, Any]:
    """One stop of a caregiver's day, with what the phone needs offline."""
    return {
        "visit_id": v.visit_id, "state": v.state, "planned_start": v.planned_start,
        "planned_end": v.planned_end, "planned_minutes": v.planned_minutes,
        "elder_id": elder.elder_id, "elder_name": elder.name, "address": elder.address,
        "phone": elder.phone, "lat": v.home_lat, "lon": v.home_lon,
        "service_type": v.service_type, "tasks": list(entry.tasks),
        "caregiver_ids": v.caregiver_ids,
        "needs_confirmation": v.needs_confirmation, "funding": v.funding,
        "checked_in_at": v.checked_in_at, "checked_out_at": v.checked_out_at,
        "needs_review": v.needs_review, "tasks_done": v.tasks_done,
        "navigation_url": (f"https://uri.amap.com/marker?position={v.home_lon},{v.home_lat}"
                           f"&name={elder.name}"),
    }


STREAM_VIEWS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "visit": visit_view, "alert": alert_view, "proposal": proposal_view}


def build_router(app: DispatchApplication) -> APIRouter:
    router = APIRouter(prefix="/dispatch", tags=["dispatch"], route_class=_Route)
    grants = DispatchAccess(app)  # who may call what: services/dispatch/access.py

    def _now(at: datetime | None) -> datetime:
        return at or app.clock()

    # Elders, caregivers, providers -----------------------------------------------------------
    @router.post("/elders", status_code=201, dependencies=[grants.elder_register])
    def register_elder(body: ElderIn) -> dict[str, Any]:
        return elder_view(app.register_elder(**body.model_dump()))

    @router.get("/elders/{elder_id}", dependencies=[grants.elder_read])
    def get_elder(elder_id: str) -> dict[str, Any]:
        return elder_view(app.get_elder(elder_id))

    @router.post("/elders/{elder_id}/erasure")
    def erase_elder(elder_id: str, body: ErasureIn,
                    principal: Principal = grants.admin_only) -> dict[str, Any]:
        """Erase the elder's personal data (crypto-shredding): name, address, phones and ID
        number read as "[erased]" from now on, everywhere; visits and ledger totals stay."""
        return elder_view(app.erase_elder(elder_id, by=principal.actor))

    @router.put("/elders/{elder_id}/preferences", dependencies=[grants.elder_preferences])
    def change_preferences(elder_id: str, body: PreferencesIn) -> dict[str, Any]:
        return elder_view(app.change_preferences(elder_id, **body.model_dump()))

    @router.post("/elders/{elder_id}/assessment", dependencies=[grants.elder_manage])
    def assess(elder_id: str, body: AssessmentIn) -> dict[str, Any]:
        return elder_view(app.assess_elder(elder_id, body.capability_level, body.assessed_on))

    @router.post("/caregivers", status_code=201, dependencies=[grants.caregiver_register])
    def register_caregiver(body: CaregiverIn) -> dict[str, Any]:
        return caregiver_view(app.register_caregiver(**body.model_dump()))

    @router.get("/caregivers/{caregiver_id}", dependencies=[grants.caregiver_read])
    def get_caregiver(caregiver_id: str) -> dict[str, Any]:
        return caregiver_view(app.get_caregiver(caregiver_id))

    @router.post("/caregivers/{caregiver_id}/certificate", dependencies=[grants.caregiver_manage])
    def renew_certificate(caregiver_id: str, body: CertificateIn) -> dict[str, Any]:
        return caregiver_view(app.renew_certificate(caregiver_id, body.expires, body.level))

    @router.put("/caregivers/{caregiver_id}/shift", dependencies=[grants.caregiver_manage])
    def change_shift(caregiver_id: str, body: ShiftIn) -> dict[str, Any]:
        return caregiver_view(app.change_shift(caregiver_id, body.shift_start, body.shift_end,
                                               list(body.work_days)))

    @router.post("/caregivers/{caregiver_id}/sick", status_code=201, responses=BUSY_RESPONSES,
                 dependencies=[grants.caregiver_manage])
    def report_sick(caregiver_id: str, body: SickIn) -> dict[str, Any]:
        """The caregiver stops for the day: a replanning proposal of their later visits."""
        return proposal_view(app.report_sick(caregiver_id, at=_now(body.at), reason=body.reason))

    @router.post("/caregivers/{caregiver_id}/pending-sync", dependencies=[grants.caregiver_self])
    def pending_sync(caregiver_id: str, body: PendingSyncIn) -> dict[str, Any]:
        """The phone holds queued check-ins for these visits: alerts about them wait."""
        return app.report_pending_sync(caregiver_id, body.visit_ids)

    @router.get("/caregivers/{caregiver_id}/route", dependencies=[grants.caregiver_read])
    def caregiver_route(caregiver_id: str, day: date = Query(alias="date")) -> dict[str, Any]:
        """The caregiver's visits of the day in order, with everything the phone page needs."""
        caregiver, visits = app.caregiver_route(caregiver_id, day)
        catalogue = app.catalogue(caregiver.service_area_id)
        return {
            "caregiver_id": caregiver.caregiver_id, "name": caregiver.name,
            "kind": caregiver.kind, "date": day, "service_area_id": caregiver.service_area_id,
            "station": {"lat": caregiver.station_lat, "lon": caregiver.station_lon},
            "visits": [route_stop_view(v, app.get_elder(v.elder_id), catalogue[v.service_type])
                       for v in visits],
        }

    @router.post("/providers", status_code=201, dependencies=[grants.admin_only])
    def register_provider(body: ProviderIn) -> dict[str, Any]:
        return provider_view(app.register_provider(**body.model_dump()))

    @router.get("/providers/{provider_id}", dependencies=[grants.provider_read])
    def get_provider(provider_id: str) -> dict[str, Any]:
        return provider_view(app.get_provider(provider_id))

    @router.post("/providers/{provider_id}/blacklist")
    def blacklist(provider_id: str, body: DecisionIn,
                  principal: Principal = grants.admin_only) -> dict[str, Any]:
        """Its caregivers get no subsidised visits from now on."""
        return provider_view(app.blacklist_provider(provider_id, body.reason, principal.actor))

    @router.post("/providers/{provider_id}/reinstate")
    def reinstate(provider_id: str, body: DecisionIn,
                  principal: Principal = grants.admin_only) -> dict[str, Any]:
        return provider_view(app.reinstate_provider(provider_id, body.reason, principal.actor))

    # Areas -----------------------------------------------------------------------------------
    @router.get("/areas/{service_area_id}/caregivers", dependencies=[grants.area_read])
    def list_caregivers(service_area_id: str) -> list[dict[str, Any]]:
        return [caregiver_view(c) for c in app.list_caregivers(service_area_id)]

    @router.get("/areas/{service_area_id}/elders", dependencies=[grants.area_read])
    def list_elders(service_area_id: str) -> list[dict[str, Any]]:
        return [elder_view(e) for e in app.list_elders(service_area_id)]

    @router.get("/areas/{service_area_id}/settings", dependencies=[grants.area_read])
    def get_settings(service_area_id: str) -> dict[str, Any]:
        return app.rules(service_area_id).as_dict()

    @router.patch("/areas/{service_area_id}/settings")
    def change_settings(service_area_id: str, body: AreaSettingsIn,
                        principal: Principal = grants.area_write) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True, exclude={"changed_by"})
        return app.configure_area(service_area_id, changes, principal.actor).as_dict()

    @router.get("/areas/{service_area_id}/catalogue", dependencies=[grants.area_open_tasks])
    def get_catalogue(service_area_id: str) -> list[dict[str, Any]]:
        return [catalogue_view(e) for e in app.catalogue(service_area_id).values()]

    @router.patch("/areas/{service_area_id}/catalogue/{service_type}")
    def change_catalogue(service_area_id: str, service_type: ServiceType,
                         body: CatalogueEntryIn,
                         principal: Principal = grants.area_write) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True, exclude={"changed_by"})
        return catalogue_view(app.change_catalogue_entry(service_area_id, service_type, changes,
                                                         principal.actor))

    @router.get("/areas/{service_area_id}/visits", dependencies=[grants.area_read])
    def list_visits(service_area_id: str, day: date = Query(alias="date"),
                    caregiver_id: str | None = None) -> list[dict[str, Any]]:
        return [visit_view(v) for v in app.list_visits(service_area_id, day, caregiver_id)]

    @router.get("/areas/{service_area_id}/orders", dependencies=[grants.area_open_tasks])
    def list_orders(service_area_id: str, day: date = Query(alias="date"),
                    near: str | None = Query(default=None, description=(
                        "lat,lon (e.g. the volunteer's phone): each order gets distance_m, how "
                        f"far its elder's home is, rounded to {DISTANCE_STEP_M} m (never the "
                        "home's address or position)"))) -> list[dict[str, Any]]:
        orders = [order_view(o) for o in app.list_orders(service_area_id, day)]
        if near is not None:
            origin, homes = _position(near), app.homes_of({o["elder_id"] for o in orders})
            for o in orders:
                home = homes.get(o["elder_id"])
                o["distance_m"] = None if home is None else _rounded_metres(origin, home)
        return orders

    @router.post("/areas/{service_area_id}/plans", status_code=201, responses=BUSY_RESPONSES,
                 dependencies=[grants.area_write])
    def plan_day(service_area_id: str, day: date = Query(alias="date"),
                 time_limit_s: float | None = Query(default=None, gt=0, le=60)) -> dict[str, Any]:
        """Run the router over the day's orders and not-started visits."""
        return app.plan_day(service_area_id, day, time_limit_s=time_limit_s)

    @router.post("/areas/{service_area_id}/replans", status_code=201, responses=BUSY_RESPONSES,
                 dependencies=[grants.area_write])
    def replan(service_area_id: str, body: ReplanIn) -> dict[str, Any]:
        """Replan the rest of the day (a cancellation, a visit running long...)."""
        return proposal_view(app.propose_replan(service_area_id, body.date, reason=body.reason))

    @router.get("/areas/{service_area_id}/proposals", dependencies=[grants.area_read])
    def list_proposals(service_area_id: str) -> list[dict[str, Any]]:
        return [proposal_view(p) for p in app.list_proposals(service_area_id)]

    @router.post("/proposals/{proposal_id}/accept", responses=BUSY_RESPONSES)
    def accept_proposal(proposal_id: str, body: AcknowledgeIn,
                        principal: Principal = grants.proposal_decide) -> dict[str, Any]:
        return proposal_view(app.decide_proposal(proposal_id, accept=True, by=principal.actor))

    @router.post("/proposals/{proposal_id}/reject", responses=BUSY_RESPONSES)
    def reject_proposal(proposal_id: str, body: DecisionIn,
                        principal: Principal = grants.proposal_decide) -> dict[str, Any]:
        return proposal_view(app.decide_proposal(proposal_id, accept=False, by=principal.actor,
                                                 reason=body.reason))

    @router.post("/areas/{service_area_id}/sweep", dependencies=[grants.area_write])
    def sweep(service_area_id: str) -> list[dict[str, Any]]:
        """Raise the time-driven alerts now (late start, missed, overrun, certificates)."""
        return [alert_view(a) for a in app.sweep(service_area_id)]

    @router.get("/areas/{service_area_id}/alerts", dependencies=[grants.area_read])
    def list_alerts(service_area_id: str, open_only: bool = Query(False, alias="open")
                    ) -> list[dict[str, Any]]:
        return [alert_view(a) for a in app.list_alerts(service_area_id, open_only)]

    @router.post("/alerts/{alert_id:path}/acknowledge")
    def acknowledge(alert_id: str, body: AcknowledgeIn,
                    principal: Principal = grants.alert_acknowledge) -> dict[str, Any]:
        return alert_view(app.acknowledge_alert(alert_id, by=principal.actor, note=body.note))

    @router.get("/areas/{service_area_id}/stream", response_class=StreamingResponse,
                 dependencies=[grants.area_stream])
    async def stream(service_area_id: str, request: Request,
                     last_event_id: str | None = Header(default=None),
                     after: int | None = Query(default=None, ge=0,
                                               description="Resume after this event id"),
                     follow: bool = Query(default=True,
                                          description="false: send what is there, then end"),
                     from_now: bool = Query(default=False,
                                            description="skip the past: only changes from now"),
                     ) -> StreamingResponse:
        """Server-sent events of the area's visit, alert and proposal changes. Each event's id
        is its position in dispatch's log: reconnecting with Last-Event-ID resumes there."""
        return _stream(lambda position: read_stream(app, service_area_id, position),
                       request, last_event_id, after, follow, from_now)

    @router.get("/caregivers/{caregiver_id}/stream", response_class=StreamingResponse,
                dependencies=[grants.caregiver_stream])
    async def caregiver_stream(caregiver_id: str, request: Request,
                               last_event_id: str | None = Header(default=None),
                               after: int | None = Query(default=None, ge=0,
                                                         description="Resume after this "
                                                                     "event id"),
                               follow: bool = Query(default=True, description="false: send "
                                                    "what is there, then end"),
                               from_now: bool = Query(default=False, description="skip the "
                                                      "past: only changes from now"),
                               ) -> StreamingResponse:
        """Server-sent events of the caregiver's own visits (and of a visit moved away from
        them) and of alerts naming them, in the area stream's format: the caregiver's phone
        follows this one (the area's stream is the dispatchers')."""
        return _stream(lambda position: read_caregiver_stream(app, caregiver_id, position),
                       request, last_event_id, after, follow, from_now)

    def _stream(read: Callable[[int], StreamBatch], request: Request,
                last_event_id: str | None, after: int | None, follow: bool,
                from_now: bool) -> StreamingResponse:
        start = after if after is not None else _int(last_event_id)
        if from_now and after is None and last_event_id is None:
            start = app.process_recorder.max_notification_id() or 0
        return StreamingResponse(_events(read, start, follow, request),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # Orders and care plans -------------------------------------------------------------------
    @router.post("/orders", status_code=201, responses=BUSY_RESPONSES)
    def place_order(body: OrderIn,
                    principal: Principal = grants.order_place) -> dict[str, Any]:
        """Take an order; scheduled at once to the first free caregiver (emergencies by urgent
        insertion), or left to the daily plan with await_plan."""
        data = body.model_dump(exclude_none=True, exclude={"emergency_lat", "emergency_lon"})
        data["placed_by"] = principal.actor
        if body.emergency_lat is not None and body.emergency_lon is not None:
            data["emergency_position"] = {"lat": body.emergency_lat, "lon": body.emergency_lon}
        order, visit = app.place_order(PlaceOrder(**data))
        return {"order": order_view(order), "visit": visit_view(visit) if visit else None}

    @router.get("/orders/{order_id}", dependencies=[grants.order_read])
    def get_order(order_id: str) -> dict[str, Any]:
        return order_view(app.get_order(order_id))

    @router.post("/orders/{order_id}/claim", status_code=201, responses=BUSY_RESPONSES,
                 dependencies=[grants.order_claim])
    def claim_order(order_id: str, body: ClaimIn) -> dict[str, Any]:
        """A volunteer takes an open mutual-aid task or welfare check (the page's 接单)."""
        order, visit = app.claim_order(order_id, body.caregiver_id)
        return {"order": order_view(order), "visit": visit_view(visit)}

    @router.post("/orders/{order_id}/cancel")
    def cancel_order(order_id: str, body: CancelIn,
                     principal: Principal = grants.order_cancel) -> dict[str, Any]:
        return order_view(app.cancel_order(order_id, body.reason, principal.actor))

    @router.post("/care-plans", status_code=201)
    def create_care_plan(body: CarePlanIn,
                         principal: Principal = grants.care_plan_create) -> dict[str, Any]:
        return care_plan_view(app.create_care_plan(
            care_plan_id=body.care_plan_id, elder_id=body.elder_id,
            items=[i.model_dump(mode="json") for i in body.items], valid_from=body.valid_from,
            created_by=principal.actor, monthly_minutes=body.monthly_minutes))

    @router.get("/care-plans/{care_plan_id}", dependencies=[grants.care_plan_read])
    def get_care_plan(care_plan_id: str) -> dict[str, Any]:
        return care_plan_view(app.get_care_plan(care_plan_id))

    @router.put("/care-plans/{care_plan_id}")
    def change_care_plan(care_plan_id: str, body: CarePlanChangeIn,
                         principal: Principal = grants.care_plan_write) -> dict[str, Any]:
        """A new version from effective_from: future visits change, the past does not."""
        return care_plan_view(app.change_care_plan(
            care_plan_id, items=[i.model_dump(mode="json") for i in body.items],
            effective_from=body.effective_from, by=principal.actor))

    @router.post("/care-plans/{care_plan_id}/weeks", status_code=201, responses=BUSY_RESPONSES,
                 dependencies=[grants.care_plan_write])
    def generate_week(care_plan_id: str, week_of: date = Query()) -> list[dict[str, Any]]:
        """The plan's orders for the week containing week_of (idempotent)."""
        return [order_view(o) for o in app.generate_week(care_plan_id, week_of)]

    # Visits ----------------------------------------------------------------------------------
    @router.get("/visits/{visit_id}", dependencies=[grants.visit_read])
    def get_visit(visit_id: str) -> dict[str, Any]:
        return visit_view(app.get_visit(visit_id))

    @router.post("/visits/{visit_id}/depart", dependencies=[grants.visit_step])
    def depart(visit_id: str, body: StepIn) -> dict[str, Any]:
        return visit_view(app.depart(visit_id, at=_now(body.at), caregiver_id=body.caregiver_id,
                                     idempotency_key=body.idempotency_key))

    @router.post("/visits/{visit_id}/check-in", dependencies=[grants.visit_step])
    def check_in(visit_id: str, body: CheckInIn) -> dict[str, Any]:
        """Check in (possibly synced late from the phone's queue, with its original time)."""
        return visit_view(app.check_in(
            visit_id, at=_now(body.at), lat=body.lat, lon=body.lon, method=body.method,
            caregiver_id=body.caregiver_id, accuracy_m=body.accuracy_m, notes=body.notes,
            idempotency_key=body.idempotency_key))

    @router.post("/visits/{visit_id}/check-out", dependencies=[grants.visit_step])
    def check_out(visit_id: str, body: CheckOutIn) -> dict[str, Any]:
        """Check out; verified at once when every rule holds, else it needs review."""
        return visit_view(app.check_out(
            visit_id, at=_now(body.at), lat=body.lat, lon=body.lon, tasks_done=body.tasks_done,
            confirmation_code=body.confirmation_code,
            family_proxy_confirmed=body.family_proxy_confirmed, caregiver_id=body.caregiver_id,
            accuracy_m=body.accuracy_m, notes=body.notes, signature=body.signature,
            idempotency_key=body.idempotency_key))

    @router.post("/visits/{visit_id}/no-show", dependencies=[grants.visit_step])
    def no_show(visit_id: str, body: NoShowIn) -> dict[str, Any]:
        """The elder was not at home (a welfare check escalates to the family, then the
        centre)."""
        return visit_view(app.no_show(visit_id, at=_now(body.at), caregiver_id=body.caregiver_id,
                                      reason=body.reason, lat=body.lat, lon=body.lon,
                                      idempotency_key=body.idempotency_key))

    @router.post("/visits/{visit_id}/escalation")
    def escalation(visit_id: str, body: EscalationIn,
                   principal: Principal = grants.visit_escalation) -> dict[str, Any]:
        return visit_view(app.record_escalation(visit_id, outcome=body.outcome, by=principal.actor))

    @router.post("/visits/{visit_id}/verify")
    def verify(visit_id: str, body: VerifyIn,
               principal: Principal = grants.visit_manage) -> dict[str, Any]:
        return visit_view(app.verify(visit_id, by=principal.actor,
                                     override_reason=body.override_reason))

    @router.post("/visits/{visit_id}/review")
    def review(visit_id: str, body: ReviewIn,
               principal: Principal = grants.visit_manage) -> dict[str, Any]:
        """A reviewer's decision on a visit that needs review."""
        return visit_view(app.review(visit_id, decision=body.decision, by=principal.actor,
                                     reason=body.reason))

    @router.post("/visits/{visit_id}/cancel")
    def cancel_visit(visit_id: str, body: CancelVisitIn,
                     principal: Principal = grants.visit_manage) -> dict[str, Any]:
        return visit_view(app.cancel_visit(visit_id, reason=body.reason,
                                           cancelled_by=principal.actor, replan=body.replan))

    return router


# Distances from a position the caller sends are rounded: the exact distance from a few chosen
# points would give away the elder's home.
DISTANCE_STEP_M = 100


def _position(text: str) -> LatLon:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInput(f"near must be 'lat,lon', got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(f"near is not a position on Earth: {text!r}")
    return LatLon(lat, lon)


def _rounded_metres(a: LatLon, b: LatLon) -> int:
    return round(haversine_km(a, b) * 1000 / DISTANCE_STEP_M) * DISTANCE_STEP_M


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


StreamBatch = tuple[list[tuple[int, str, dict[str, Any]]], int, bool]
# What a stream sends of one stored event: (kind, data), or None to skip it. Given the event and
# its stream key (area, kind, record id).
Pick = Callable[[Any, tuple[str, str, str]], tuple[str, dict[str, Any]] | None]


def _read(app: DispatchApplication, after: int, limit: int, pick: Pick) -> StreamBatch:
    """The changes after log position ``after`` that ``pick`` keeps: (events, new position,
    more waiting)."""
    notifications = app.process_recorder.select_notifications(after + 1, limit)
    if not notifications:
        return [], after, False
    app.index.catch_up()
    out = []
    for n in notifications:
        domain_event = app.domain_event_of(n)
        key = app.stream_keys.get(domain_event.originator_id)
        picked = None if key is None else pick(domain_event, key)
        if picked is not None:
            kind, data = picked
            data = {"event": type(domain_event).__qualname__, **data}
            out.append((n.id, kind, jsonable_encoder(data)))
    return out, notifications[-1].id, len(notifications) == limit


def _at(app: DispatchApplication, domain_event: Any, back: int = 0) -> Any:
    """The record as it was after this event (``back`` events before it)."""
    return app.repository.get(domain_event.originator_id,
                              version=domain_event.originator_version - back)


def read_stream(app: DispatchApplication, area: str, after: int,
                limit: int = 200) -> StreamBatch:
    """The area's visit, alert and proposal changes after log position ``after``."""
    def pick(domain_event: Any, key: tuple[str, str, str]) -> tuple[str, dict[str, Any]] | None:
        if key[0] != area:
            return None
        return key[1], STREAM_VIEWS[key[1]](_at(app, domain_event))
    return _read(app, after, limit, pick)


def read_caregiver_stream(app: DispatchApplication, caregiver_id: str, after: int,
                          limit: int = 200) -> StreamBatch:
    """The changes of the caregiver's own visits and alerts after log position ``after``: a
    visit while it is theirs (full view), and the move that takes it away from them (only
    that it left: ``{"visit_id", "moved_away": true}``); alerts naming them."""
    owner = app.owner_of_caregiver(caregiver_id)
    area = None if owner is None else owner.service_area_id

    def pick(domain_event: Any, key: tuple[str, str, str]) -> tuple[str, dict[str, Any]] | None:
        kind, record_id = key[1], key[2]
        if kind == "visit" and app.ever_assigned(record_id, caregiver_id):
            visit = _at(app, domain_event)
            if caregiver_id in visit.caregiver_ids:
                return kind, visit_view(visit)
            if (type(domain_event).__qualname__.endswith(".Rescheduled")
                    and caregiver_id in _at(app, domain_event, back=1).caregiver_ids):
                return kind, {"visit_id": record_id, "service_area_id": key[0],
                              "moved_away": True}
        elif kind == "alert" and key[0] == area:
            alert = _at(app, domain_event)
            if alert.caregiver_id == caregiver_id:
                return kind, alert_view(alert)
        return None
    return _read(app, after, limit, pick)


async def _events(read: Callable[[int], StreamBatch], after: int, follow: bool,
                  request: Request, poll_s: float = 0.5,
                  heartbeat_s: float = 15.0) -> AsyncIterator[str]:
    yield "retry: 3000\n\n"
    position, quiet = after, 0.0
    while True:
        events, position, more = await asyncio.to_thread(read, position)
        for event_id, kind, data in events:
            yield f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        if more:
            continue
        if not follow or await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)
        quiet = 0.0 if events else quiet + poll_s
        if quiet >= heartbeat_s:
            quiet = 0.0
            yield ": keep-alive\n\n"
