"""The dispatcher dashboard's backend: the day view it draws and moves judged by the router's
checker (in-memory event store, fixed clock)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contracts.values import CaregiverKind, ServiceType
from services.dispatch import api
from services.dispatch.application import DispatchApplication, NotFound, PlaceOrder
from services.dispatch.domain.visits import DispatchError
from services.dispatch.web import dashboard
from services.runtime.http import install_error_handlers
from services.system import with_pages
from tests.support.auth import bearer, install_test_auth

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 10)  # a Tuesday
AREA = "unit-area"
STATION = (29.3050, 120.0745)
HOMES = [(29.3069, 120.0760), (29.3121, 120.0822), (29.2987, 120.0701)]


def at(hhmm: str, day: date = DAY) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=h, minutes=m)


@pytest.fixture
def app() -> DispatchApplication:
    """Two employees (a carer; a nurse who does no meals), three elders, one meal visit and
    one cleaning visit placed at fixed times; the clock at 07:00."""
    app = DispatchApplication()
    app.clock = lambda: at("07:00")
    app.plan_time_limit_s = 0.2  # a sick report replans the day; keep it short
    for cid, name, skills in (("C-1", "刘美华", ["meal", "cleaning", "mobility"]),
                              ("C-2", "赵建军", ["nursing", "cleaning"])):
        app.register_caregiver(caregiver_id=cid, name=name, kind=CaregiverKind.EMPLOYEE,
                               service_area_id=AREA, skills=skills, station_lat=STATION[0],
                               station_lon=STATION[1], certificate_expires=date(2099, 1, 1))
    for i, (lat, lon) in enumerate(HOMES):
        app.register_elder(elder_id=f"E-{i}", name=f"老人{i}", service_area_id=AREA, lat=lat,
                           lon=lon, confirmation_code="1234")
    place(app, "meal", 0, ServiceType.MEAL_HELP, "09:00")
    place(app, "clean", 1, ServiceType.CLEANING, "11:00")
    return app


def place(app: DispatchApplication, name: str, elder: int, service: ServiceType,
          start: str) -> str:
    """An order whose window pins the visit to ``start`` (the first free caregiver takes it)."""
    minutes = app.catalogue(AREA)[service].default_minutes
    _, visit = app.place_order(PlaceOrder(
        elder_id=f"E-{elder}", service_type=service, requested_date=DAY, order_id=f"O-{name}",
        window_start=at(start), window_end=at(start) + timedelta(minutes=minutes)))
    assert visit is not None
    return visit.visit_id


def test_move_allowed_by_the_checker_is_applied_as_a_reschedule(app) -> None:  # type: ignore[no-untyped-def]
    """Moving the cleaning visit to the other cleaner inside its window is checked clean and
    saved as a Visit.Rescheduled event with the new caregiver, start and same duration."""
    visit = app.get_visit("V-O-clean")
    target = "C-2" if visit.caregiver_id == "C-1" else "C-1"
    assert dashboard.check_move(app, visit.visit_id, target, at("11:00")).violations == []
    moved = dashboard.move_visit(app, visit.visit_id, target, at("11:00"), by="调度员")
    again = app.get_visit(visit.visit_id)
    assert (again.caregiver_id, again.planned_start) == (target, at("11:00"))
    assert again.planned_minutes == visit.planned_minutes
    assert moved.version == visit.version + 1
    last = list(app.repository.event_store.get(again.id))[-1]
    assert type(last).__qualname__ == "Visit.Rescheduled"


def test_move_to_a_caregiver_without_the_skill_is_refused_with_the_reason(app) -> None:  # type: ignore[no-untyped-def]
    """The nurse does no meals: the checker's skill violation is the reason; nothing saved."""
    visit = app.get_visit("V-O-meal")
    assert visit.caregiver_id == "C-1"
    with pytest.raises(dashboard.MoveRefused) as refused:
        dashboard.move_visit(app, visit.visit_id, "C-2", at("09:00"), by="调度员")
    assert any(r.startswith("skill:") and "meal" in r for r in refused.value.reasons)
    assert app.get_visit(visit.visit_id).version == visit.version


def test_move_outside_the_window_or_into_the_past_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    """The order's window is a hard rule, and so is "not before now"; the reason shows local
    clock times, not minutes since midnight."""
    late = dashboard.check_move(app, "V-O-meal", "C-1", at("15:00")).violations
    assert late and late[0].startswith("window:") and "15:00" in late[0]
    app.clock = lambda: at("10:00")
    past = dashboard.check_move(app, "V-O-clean", "C-1", at("09:30")).violations
    assert any(r.startswith("window:") for r in past)


def test_move_onto_a_busy_route_without_travel_time_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    """Dropping a visit on top of another visit of the same caregiver breaks the route's
    timing (the checker re-times it from the travel matrix)."""
    other = place(app, "mob", 2, ServiceType.MOBILITY, "13:00")
    owner = app.get_visit(other).caregiver_id
    clean = app.get_visit("V-O-clean")
    window_order = app.get_order("O-clean")
    assert window_order.window_start == at("11:00")
    # Move the mobility visit to the cleaning visit's caregiver, overlapping it.
    reasons = dashboard.check_move(app, other, clean.caregiver_id, at("11:10")).violations
    assert reasons, owner
    assert any(r.startswith(("timing:", "window:")) for r in reasons)


def test_started_visits_other_days_and_unavailable_caregivers_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    """Only visits not started move, within their day, to someone working that day."""
    assert "another day" in dashboard.check_move(
        app, "V-O-clean", "C-1", at("11:00", DAY + timedelta(days=1))).violations[0]
    app.report_sick("C-2", at=at("07:00"), reason="发烧")
    assert "reported sick" in dashboard.check_move(app, "V-O-clean", "C-2",
                                                   at("11:00")).violations[0]
    app.check_in("V-O-meal", at=at("07:00"), lat=HOMES[0][0], lon=HOMES[0][1])
    assert "checked_in" in dashboard.check_move(app, "V-O-meal", "C-1",
                                                at("09:00")).violations[0]


def test_day_view_flags_positions_breaks_kpis_and_unassigned(app) -> None:  # type: ignore[no-untyped-def]
    """The day view: the caregiver's last position is their latest check-in, a started visit
    past its grace is late, a long gap is a break, KPIs count on-time and done visits, an
    order nobody can serve is listed with its reason, times carry the area's offset."""
    app.check_in("V-O-meal", at=at("09:20"), lat=HOMES[0][0], lon=HOMES[0][1], now=at("09:30"))
    nobody = app.place_order(PlaceOrder(elder_id="E-2", service_type=ServiceType.BATHING,
                                        requested_date=DAY, order_id="O-bath"))
    assert nobody[1] is None
    view = dashboard.day_view(app, AREA, DAY, now=at("09:30"))
    assert view["utc_offset"] == "+08:00"
    assert view["stream_position"] == app.process_recorder.max_notification_id()
    meal = next(v for v in view["visits"] if v["visit_id"] == "V-O-meal")
    assert meal["late"] is True and meal["overrun"] is False  # 20 min > first grace
    assert meal["travel_minutes"] > 0
    carer = next(c for c in view["caregivers"] if c["caregiver_id"] == "C-1")
    assert carer["last_position"]["visit_id"] == "V-O-meal"
    assert (carer["last_position"]["lat"], carer["last_position"]["lon"]) == HOMES[0]
    assert len({c["colour"] for c in view["caregivers"]}) == 2
    clean_owner = app.get_visit("V-O-clean").caregiver_id
    if clean_owner == "C-1":  # meal ends 09:30, cleaning 11:00: a long gap
        assert carer["breaks"] and carer["breaks"][0]["minutes"] >= dashboard.BREAK_MIN_MINUTES
    kpis = view["kpis"]["day"]
    assert (kpis["planned"], kpis["started"], kpis["on_time"], kpis["done"]) == (2, 1, 0, 0)
    assert kpis["on_time_rate"] == 0.0
    assert kpis["travel_minutes_per_visit"] == pytest.approx(
        sum(v["travel_minutes"] for v in view["visits"]) / 2, abs=0.05)
    [bath] = view["unassigned"]
    assert bath["order_id"] == "O-bath" and "bathing" in bath["reason"]


def test_overrun_when_checked_in_past_the_planned_end(app) -> None:  # type: ignore[no-untyped-def]
    """A visit still checked in after its planned end plus the grace is an overrun."""
    app.check_in("V-O-meal", at=at("09:00"), lat=HOMES[0][0], lon=HOMES[0][1], now=at("09:00"))
    visit = app.get_visit("V-O-meal")
    grace = app.rules(AREA).overrun_grace_minutes
    assert not dashboard.visit_flags(visit, visit.planned_end, 10, grace)["overrun"]
    assert dashboard.visit_flags(visit, visit.planned_end + timedelta(minutes=grace + 1), 10,
                                 grace)["overrun"]


def test_http_move_answers_409_with_reasons_and_pages_are_served(app) -> None:  # type: ignore[no-untyped-def]
    """Over HTTP, as the area's dispatcher: a refused move answers 409 with the reasons, an
    allowed one the visit; another area's dispatcher gets 403. The page and its assets are
    served without a token, anything else under the page is 404."""
    http = FastAPI()
    http.include_router(with_pages("dispatch", app, api.build_router(app)))
    install_error_handlers(http, not_found=(NotFound,), conflict=(DispatchError,))
    install_test_auth(http)
    client = TestClient(http, headers=bearer("dispatcher", service_areas=[AREA]))
    elsewhere = TestClient(http, headers=bearer("dispatcher", service_areas=["other-area"]))
    assert elsewhere.post("/dispatch/dashboard/api/visits/V-O-meal/move", json={
        "caregiver_id": "C-2", "planned_start": at("09:00").isoformat()}).status_code == 403
    assert elsewhere.get(f"/dispatch/dashboard/api/areas/{AREA}/day").status_code == 403
    refused = client.post("/dispatch/dashboard/api/visits/V-O-meal/move",
                          json={"caregiver_id": "C-2", "planned_start": at("09:00").isoformat()})
    assert refused.status_code == 409 and refused.json()["reasons"]
    target = "C-2" if app.get_visit("V-O-clean").caregiver_id == "C-1" else "C-1"
    moved = client.post("/dispatch/dashboard/api/visits/V-O-clean/move",
                        json={"caregiver_id": target, "planned_start": at("11:00").isoformat()})
    assert moved.status_code == 200 and moved.json()["caregiver_id"] == target
    assert TestClient(http, headers=bearer()).post("/dispatch/dashboard/api/visits/nope/move",
                                                   json={"caregiver_id": "C-1",
                                                         "planned_start": at("11:00").isoformat()}
                                                   ).status_code == 404
    day = client.get(f"/dispatch/dashboard/api/areas/{AREA}/day", params={"date": "2026-03-10"})
    assert day.status_code == 200 and len(day.json()["visits"]) == 2
    public = TestClient(http)
    assert public.get("/dispatch/dashboard/").headers["content-type"].startswith("text/html")
    assert public.get("/dispatch/dashboard/map.js").status_code == 200
    assert public.get("/dispatch/dashboard/..%2F__init__.py").status_code == 404
    assert public.get("/dispatch/dashboard/missing.js").status_code == 404
    assert public.get(f"/dispatch/dashboard/api/areas/{AREA}/day").status_code == 401


def test_month_kpis_add_the_earlier_days_to_today(app) -> None:  # type: ignore[no-untyped-def]
    """The month's measures sum every day of the month up to the one shown: a visit started on
    time the day before counts in the month, not in the day; a later day does not count."""
    before, after = DAY - timedelta(days=1), DAY + timedelta(days=1)
    for name, day in (("yday", before), ("tmrw", after)):
        app.place_order(PlaceOrder(elder_id="E-2", service_type=ServiceType.MOBILITY,
                                   requested_date=day, order_id=f"O-{name}",
                                   window_start=at("10:00", day),
                                   window_end=at("11:00", day)))
    app.check_in("V-O-yday", at=at("10:00", before), lat=HOMES[2][0], lon=HOMES[2][1])
    kpis = dashboard.day_view(app, AREA, DAY)["kpis"]
    assert (kpis["day"]["planned"], kpis["day"]["started"]) == (2, 0)
    month = kpis["month"]
    assert month["month"] == "2026-03"
    assert (month["planned"], month["started"], month["on_time"]) == (3, 1, 1)
    assert month["on_time_rate"] == 1.0
    assert month["travel_minutes"] > kpis["day"]["travel_minutes"]


def test_a_sick_colleagues_visits_do_not_block_other_moves(app) -> None:  # type: ignore[no-untyped-def]
    """Visits still on a sick caregiver's lane are outside the day's problem: moving another
    caregiver's visit is judged on its own merits, not refused for them."""
    dashboard.move_visit(app, "V-O-clean", "C-2", at("11:00"), by="调度员")
    _, mobility = app.place_order(PlaceOrder(
        elder_id="E-2", service_type=ServiceType.MOBILITY, requested_date=DAY,
        order_id="O-wide", window_start=at("13:00"), window_end=at("17:00")))
    assert mobility is not None and mobility.caregiver_id == "C-1"
    app.report_sick("C-2", at=at("07:00"), reason="发烧")
    assert app.get_visit("V-O-clean").caregiver_id == "C-2"  # the proposal is not accepted
    verdict = dashboard.check_move(app, mobility.visit_id, "C-1",
                                   mobility.planned_start + timedelta(minutes=30))
    assert verdict.violations == []


def test_two_person_visit_in_both_lanes_and_one_partner_replaced(app) -> None:  # type: ignore[no-untyped-def]
    """A two-person visit shows in both caregivers' lanes (each with its own travel); moving it
    from one partner's lane to a third caregiver replaces that partner only, both keep
    starting together; the partner already on it cannot be its other half as well."""
    app.register_caregiver(caregiver_id="C-3", name="孙丽", kind=CaregiverKind.EMPLOYEE,
                           service_area_id=AREA, skills=["cleaning"], station_lat=STATION[0],
                           station_lon=STATION[1], certificate_expires=date(2099, 1, 1))
    _, visit = app.place_order(PlaceOrder(
        elder_id="E-2", service_type=ServiceType.CLEANING, requested_date=DAY,
        order_id="O-pair", staff_count=2, window_start=at("14:00"), window_end=at("16:00")))
    assert visit is not None and len(visit.caregiver_ids) == 2
    first, second = visit.caregiver_ids
    view = dashboard.day_view(app, AREA, DAY)
    pair = next(v for v in view["visits"] if v["visit_id"] == visit.visit_id)
    assert pair["caregiver_ids"] == [first, second]
    assert pair["travel_minutes"] > 0 and pair["partner_travel_minutes"] > 0

    third = next(c for c in ("C-1", "C-2", "C-3") if c not in visit.caregiver_ids)
    refused = dashboard.check_move(app, visit.visit_id, first, visit.planned_start,
                                   replacing=second).violations
    assert refused and "already on visit" in refused[0]
    moved = dashboard.move_visit(app, visit.visit_id, third, visit.planned_start, by="调度员",
                                 replacing=second)
    assert moved.caregiver_ids == [first, third]
    assert app.get_visit(visit.visit_id).planned_start == visit.planned_start
