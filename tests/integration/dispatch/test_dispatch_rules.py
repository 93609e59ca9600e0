"""Who may be dispatched where: certificates, blacklisted providers, volunteers' limits, the
elder's preferences and capability level, shifts; for single orders and for the daily plan."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from .conftest import AREA, seed

pytestmark = pytest.mark.integration

DAY = "2026-11-16"


@pytest.fixture
def area(client, dispatch_app):
    dispatch_app.clock = lambda: datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
    seed(client, certificate_expires=date(2026, 11, 10))  # C-1's certificate has expired
    return client


def _order(client, elder: str, service: str, **extra) -> dict:
    r = client.post("/dispatch/orders", json={"elder_id": elder, "service_type": service,
                                              "requested_date": DAY} | extra)
    assert r.status_code == 201, r.text
    return r.json()


def test_an_expired_certificate_is_never_dispatched(area):
    """C-1 alone bathes but its certificate expired: the order stays unassigned with the
    reason, and the daily plan cannot place it either; renewed, C-1 gets it."""
    placed = _order(area, "E-1", "bathing")
    assert placed["visit"] is None
    assert "certificate missing or expired" in placed["order"]["unassigned_reason"]
    _order(area, "E-2", "bathing", await_plan=True, order_id="O-bath")
    plan = area.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1").json()
    assert "V-O-bath" in plan["unassigned"]
    r = area.post("/dispatch/caregivers/C-1/certificate", json={"expires": "2027-11-10"})
    assert r.status_code == 200
    assert _order(area, "E-3", "bathing")["visit"]["caregiver_id"] == "C-1"


def test_a_blacklisted_providers_caregivers_get_no_subsidised_visits(area):
    """P-2 blacklisted: its caregiver C-2 gets no subsidised nursing; a paid order still may."""
    r = area.post("/dispatch/providers/P-2/blacklist", json={"by": "civil-affairs",
                                                              "reason": "fake visits"})
    assert r.status_code == 200 and r.json()["blacklisted"]
    refused = _order(area, "E-1", "rehabilitation_nursing")
    assert refused["visit"] is None and "blacklisted" in refused["order"]["unassigned_reason"]
    paid = _order(area, "E-2", "rehabilitation_nursing", priority="paid")
    assert paid["visit"]["caregiver_id"] == "C-2"
    area.post("/dispatch/providers/P-2/reinstate", json={"by": "civil-affairs",
                                                          "reason": "appeal upheld"})
    assert _order(area, "E-3", "rehabilitation_nursing")["visit"]["caregiver_id"] == "C-2"


def test_volunteers_do_mutual_aid_only_and_within_their_daily_limit(area):
    """A volunteer takes welfare checks (first, before employees) but never nursing or
    cleaning, and no more than three visits a day."""
    taken = [_order(area, e, "welfare_check")["visit"]["caregiver_id"]
             for e in ("E-1", "E-2", "E-3", "E-4")]
    assert taken[:3] == ["V-1"] * 3 and taken[3] != "V-1"
    assert _order(area, "E-1", "cleaning")["visit"]["caregiver_id"] != "V-1"


def test_a_volunteers_weekly_minutes_are_capped(area, dispatch_app):
    """A volunteer giving at most 90 minutes a week takes one 60-minute companionship, not a
    second one that week; the next week again."""
    dispatch_app.register_caregiver(
        caregiver_id="V-2", name="吴", kind="volunteer", service_area_id="village",
        skills=[], station_lat=29.305, station_lon=120.0745, max_minutes_per_week=90)
    dispatch_app.register_elder(elder_id="E-9", name="钱", service_area_id="village",
                                lat=29.31, lon=120.08, confirmation_code="9999")
    area.patch("/dispatch/areas/village/catalogue/companionship", json={"default_minutes": 60})
    taken = [_order(area, "E-9", "companionship", requested_date=d)
             for d in ("2026-11-17", "2026-11-19", "2026-11-24")]
    assert [t["visit"] and t["visit"]["caregiver_id"] for t in taken] == ["V-2", None, "V-2"]
    assert "would exceed 90 minutes this week" in taken[1]["order"]["unassigned_reason"]


def test_the_elders_preferences_are_respected(area):
    """An elder who asks for a male caregiver, or excludes one, is served accordingly."""
    r = area.put("/dispatch/elders/E-1/preferences", json={"gender_preference": "male"})
    assert r.status_code == 200
    assert _order(area, "E-1", "cleaning")["visit"]["caregiver_id"] == "C-2"
    area.put("/dispatch/elders/E-2/preferences", json={"excluded_caregiver_ids": ["C-2"]})
    refused = _order(area, "E-2", "rehabilitation_nursing")
    assert refused["visit"] is None and "excluded by the elder" in \
        refused["order"]["unassigned_reason"]


def test_a_severely_dependent_elder_needs_a_higher_certificate_in_the_plan(area):
    """Capability level 4 (fully dependent): personal care needs certificate level 2, so the
    plan leaves mobility unassigned until a caregiver holds it."""
    area.post("/dispatch/elders/E-3/assessment", json={"capability_level": 4,
                                                      "assessed_on": "2026-11-01"})
    _order(area, "E-3", "mobility", await_plan=True, order_id="O-mob")
    plan = area.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1").json()
    assert "V-O-mob" in plan["unassigned"]
    area.post("/dispatch/caregivers/C-2/certificate", json={"expires": "2027-06-30",
                                                           "level": 2})
    plan = area.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1").json()
    assert plan["scheduled"] == ["V-O-mob"]
    assert area.get("/dispatch/visits/V-O-mob").json()["caregiver_id"] == "C-2"


def test_shifts_bound_the_plan(area):
    """A caregiver working 13:00-17:00 gets nothing in the morning."""
    area.put("/dispatch/caregivers/C-2/shift", json={"shift_start": "13:00",
                                                    "shift_end": "17:00",
                                                    "work_days": [0, 1, 2, 3, 4]})
    _order(area, "E-1", "rehabilitation_nursing", await_plan=True, order_id="O-am",
           window_start="2026-11-16T08:00:00+08:00", window_end="2026-11-16T11:00:00+08:00")
    _order(area, "E-2", "rehabilitation_nursing", await_plan=True, order_id="O-pm",
           window_start="2026-11-16T13:00:00+08:00", window_end="2026-11-16T17:00:00+08:00")
    plan = area.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1").json()
    assert list(plan["unassigned"]) == ["V-O-am"] and plan["scheduled"] == ["V-O-pm"]
    start = datetime.fromisoformat(area.get("/dispatch/visits/V-O-pm").json()["planned_start"])
    assert start >= datetime.fromisoformat("2026-11-16T13:00:00+08:00")
    order = area.get("/dispatch/orders/O-am").json()
    assert order["state"] == "unassigned" and order["unassigned_reason"]


def test_the_catalogue_per_area_is_editable(area):
    """An area changes cleaning to 90 minutes with its own tasks; orders follow it and other
    areas keep the default."""
    r = area.patch(f"/dispatch/areas/{AREA}/catalogue/cleaning",
                   json={"default_minutes": 90, "tasks": ["擦窗"]})
    assert r.status_code == 200 and r.json()["tasks"] == ["擦窗"]
    visit = _order(area, "E-1", "cleaning")["visit"]
    assert visit["planned_minutes"] == 90
    other = area.get("/dispatch/areas/elsewhere/catalogue").json()
    assert next(e for e in other if e["service_type"] == "cleaning")["default_minutes"] == 60
    start = datetime.fromisoformat(visit["planned_start"])
    route = area.get(f"/dispatch/caregivers/{visit['caregiver_id']}/route?date={DAY}").json()
    assert route["visits"][0]["tasks"] == ["擦窗"]
    assert start + timedelta(minutes=90) == datetime.fromisoformat(visit["planned_end"])


def test_a_two_person_visit_gets_two_caregivers_at_once(area, dispatch_app):
    """Bathing set to two staff: one order takes two bathers for the same time (both see it on
    their route, either may check in); without a second bather it stays unassigned; the daily
    plan places a two-person visit with two caregivers too."""
    area.post("/dispatch/caregivers/C-1/certificate", json={"expires": "2027-11-10"})
    area.patch(f"/dispatch/areas/{AREA}/catalogue/bathing", json={"staff_count": 2})
    alone = _order(area, "E-1", "bathing")
    assert alone["visit"] is None and "no second caregiver" in \
        alone["order"]["unassigned_reason"]
    dispatch_app.register_caregiver(
        caregiver_id="C-3", name="孙", kind="employee", service_area_id=AREA,
        skills=["bathing"], station_lat=29.305, station_lon=120.0745, provider_id="P-1",
        certificate_expires=date(2028, 1, 1))
    visit = _order(area, "E-2", "bathing")["visit"]
    assert {visit["caregiver_id"], visit["second_caregiver_id"]} == {"C-1", "C-3"}
    for who in ("C-1", "C-3"):
        route = area.get(f"/dispatch/caregivers/{who}/route?date={DAY}").json()
        assert [s["visit_id"] for s in route["visits"]] == [visit["visit_id"]]
    r = area.post(f"/dispatch/visits/{visit['visit_id']}/check-in", json={
        "caregiver_id": "C-3", "at": visit["planned_start"], "lat": 29.3121, "lon": 120.0822})
    assert r.status_code == 200, r.text
    _order(area, "E-3", "bathing", await_plan=True, order_id="O-pair",
           window_start="2026-11-16T14:00:00+08:00", window_end="2026-11-16T17:00:00+08:00")
    plan = area.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1").json()
    assert "V-O-pair" in plan["scheduled"] and plan["unassigned"] == {}, plan
    paired = area.get("/dispatch/visits/V-O-pair").json()
    assert {paired["caregiver_id"], paired["second_caregiver_id"]} == {"C-1", "C-3"}
