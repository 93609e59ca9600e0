"""HTTP adapter of dispatch (thin): registration, orders, and the visit steps caregivers take."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from contracts.values import CaregiverKind, CheckMethod, OrderSource, Priority, ServiceType
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.dispatch.domain.people import Caregiver, Elder
from services.dispatch.domain.visits import ServiceOrder, Visit


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
    placed_by: str | None = None


class CheckInIn(BaseModel):
    caregiver_id: str = Field(min_length=1)
    at: AwareDatetime | None = Field(default=None, description="Device time; server time if absent")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    method: CheckMethod = CheckMethod.GPS


class CheckOutIn(CheckInIn):
    tasks_done: list[str] = []
    confirmation_code: str | None = None
    family_proxy_confirmed: bool = False


class VerifyIn(BaseModel):
    by: str = Field(min_length=1)
    override_reason: str | None = None


class CancelIn(BaseModel):
    reason: str = Field(min_length=1)
    cancelled_by: str = Field(min_length=1)


def elder_view(e: Elder) -> dict[str, Any]:
    return {"elder_id": e.elder_id, "name": e.name, "service_area_id": e.service_area_id,
            "lat": e.lat, "lon": e.lon, "address": e.address, "gender": e.gender}


def caregiver_view(c: Caregiver) -> dict[str, Any]:
    return {"caregiver_id": c.caregiver_id, "name": c.name, "kind": c.kind,
            "service_area_id": c.service_area_id, "skills": c.skills,
            "provider_id": c.provider_id, "certificate_expires": c.certificate_expires}


def order_view(o: ServiceOrder) -> dict[str, Any]:
    return {"order_id": o.order_id, "elder_id": o.elder_id, "state": o.state,
            "service_type": o.service_type, "priority": o.priority, "emergency": o.emergency,
            "requested_date": o.requested_date, "duration_minutes": o.duration_minutes,
            "visit_ids": o.visit_ids, "unassigned_reason": o.unassigned_reason}


def visit_view(v: Visit) -> dict[str, Any]:
    return {
        "visit_id": v.visit_id, "order_id": v.order_id, "elder_id": v.elder_id,
        "service_area_id": v.service_area_id, "caregiver_id": v.caregiver_id,
        "caregiver_kind": v.caregiver_kind, "provider_id": v.provider_id,
        "service_type": v.service_type, "state": v.state, "planned_start": v.planned_start,
        "planned_end": v.planned_end, "planned_minutes": v.planned_minutes,
        "checked_in_at": v.checked_in_at, "checked_out_at": v.checked_out_at,
        "location_verified": v.location_verified, "actual_minutes": v.actual_minutes,
        "confirmation": v.confirmation, "verification_problems": v.verification_problems,
    }


def _now(at: datetime | None) -> datetime:
    return at or datetime.now(UTC)


def build_router(app: DispatchApplication) -> APIRouter:
    router = APIRouter(prefix="/dispatch", tags=["dispatch"])

    @router.post("/elders", status_code=201)
    def register_elder(body: ElderIn) -> dict[str, Any]:
        return elder_view(app.register_elder(**body.model_dump()))

    @router.get("/elders/{elder_id}")
    def get_elder(elder_id: str) -> dict[str, Any]:
        return elder_view(app.get_elder(elder_id))

    @router.post("/caregivers", status_code=201)
    def register_caregiver(body: CaregiverIn) -> dict[str, Any]:
        return caregiver_view(app.register_caregiver(**body.model_dump()))

    @router.get("/caregivers/{caregiver_id}")
    def get_caregiver(caregiver_id: str) -> dict[str, Any]:
        return caregiver_view(app.get_caregiver(caregiver_id))

    @router.get("/areas/{service_area_id}/caregivers")
    def list_caregivers(service_area_id: str) -> list[dict[str, Any]]:
        return [caregiver_view(c) for c in app.list_caregivers(service_area_id)]

    @router.get("/areas/{service_area_id}/elders")
    def list_elders(service_area_id: str) -> list[dict[str, Any]]:
        return [elder_view(e) for e in app.list_elders(service_area_id)]

    @router.post("/orders", status_code=201)
    def place_order(body: OrderIn) -> dict[str, Any]:
        """Take an order; it is scheduled to a caregiver at once when one fits."""
        data = body.model_dump(exclude_none=True)
        order, visit = app.place_order(PlaceOrder(**data))
        return {"order": order_view(order), "visit": visit_view(visit) if visit else None}

    @router.get("/orders/{order_id}")
    def get_order(order_id: str) -> dict[str, Any]:
        return order_view(app.get_order(order_id))

    @router.post("/orders/{order_id}/cancel")
    def cancel_order(order_id: str, body: CancelIn) -> dict[str, Any]:
        return order_view(app.cancel_order(order_id, body.reason, body.cancelled_by))

    @router.get("/visits/{visit_id}")
    def get_visit(visit_id: str) -> dict[str, Any]:
        return visit_view(app.get_visit(visit_id))

    @router.get("/areas/{service_area_id}/visits")
    def list_visits(service_area_id: str, day: date = Query(alias="date"),
                    caregiver_id: str | None = None) -> list[dict[str, Any]]:
        return [visit_view(v) for v in app.list_visits(service_area_id, day, caregiver_id)]

    @router.post("/visits/{visit_id}/check-in")
    def check_in(visit_id: str, body: CheckInIn) -> dict[str, Any]:
        return visit_view(app.check_in(visit_id, at=_now(body.at), lat=body.lat, lon=body.lon,
                                       method=body.method, caregiver_id=body.caregiver_id))

    @router.post("/visits/{visit_id}/check-out")
    def check_out(visit_id: str, body: CheckOutIn) -> dict[str, Any]:
        """Check out; the visit is verified at once when location and confirmation hold."""
        return visit_view(app.check_out(
            visit_id, at=_now(body.at), lat=body.lat, lon=body.lon, tasks_done=body.tasks_done,
            confirmation_code=body.confirmation_code,
            family_proxy_confirmed=body.family_proxy_confirmed, caregiver_id=body.caregiver_id))

    @router.post("/visits/{visit_id}/verify")
    def verify(visit_id: str, body: VerifyIn) -> dict[str, Any]:
        return visit_view(app.verify(visit_id, by=body.by, override_reason=body.override_reason))

    @router.post("/visits/{visit_id}/cancel")
    def cancel_visit(visit_id: str, body: CancelIn) -> dict[str, Any]:
        return visit_view(app.cancel_visit(visit_id, reason=body.reason,
                                           cancelled_by=body.cancelled_by))

    return router
