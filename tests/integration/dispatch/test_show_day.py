"""The "Show" of issue 4: a whole day of one area over HTTP.

Orders and a care plan -> the daily plan by the router -> an emergency inserted -> check-ins
(one late, one outside the geofence, one offline batch synced late with a duplicate) ->
verification and a reviewer's decision -> alerts (late start, location, pending sync) ->
a sick caregiver replanned -> the final state asserted visit by visit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from .conftest import AREA, HOME, seed

pytestmark = pytest.mark.integration

DAY = "2026-11-16"  # a Monday


def at(hhmm: str, *, minutes: int = 0) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{hhmm}:00+08:00") + timedelta(minutes=minutes)


class Day:
    """The test's hands: a clock that moves and the HTTP calls a caregiver's phone makes."""

    def __init__(self, client: Any, app: Any) -> None:
        self.client, self.app = client, app
        self.now = at("06:00")
        app.clock = lambda: self.now

    def visit(self, visit_id: str) -> dict[str, Any]:
        return self.client.get(f"/dispatch/visits/{visit_id}").json()

    def check_in(self, v: dict[str, Any], when: datetime, *, offset_m: float = 0.0,
                 key: str | None = None) -> Any:
        lat, lon = HOME[v["elder_id"]]
        return self.client.post(f"/dispatch/visits/{v['visit_id']}/check-in", json={
            "caregiver_id": v["caregiver_id"], "at": when.isoformat(),
            "lat": lat + offset_m / 111_000, "lon": lon, "accuracy_m": 10,
            "idempotency_key": key or f"in-{v['visit_id']}"})

    def check_out(self, v: dict[str, Any], when: datetime, code: str, *,
                  offset_m: float = 0.0) -> Any:
        lat, lon = HOME[v["elder_id"]]
        return self.client.post(f"/dispatch/visits/{v['visit_id']}/check-out", json={
            "caregiver_id": v["caregiver_id"], "at": when.isoformat(),
            "lat": lat + offset_m / 111_000, "lon": lon, "accuracy_m": 10,
            "confirmation_code": code, "idempotency_key": f"out-{v['visit_id']}"})

    def serve(self, v: dict[str, Any], start: datetime, minutes: int, code: str,
              **where: float) -> dict[str, Any]:
        assert self.check_in(v, start, **where).status_code == 200
        r = self.check_out(v, start + timedelta(minutes=minutes), code, **where)
        assert r.status_code == 200, r.text
        return r.json()

    def alerts(self) -> list[dict[str, Any]]:
        return self.client.get(f"/dispatch/areas/{AREA}/alerts").json()


CODES = {"E-1": "1111", "E-2": "2222", "E-3": "3333", "E-4": "4444"}


def test_a_whole_day_of_one_area(client, dispatch_app):
    """Everything the dispatcher sees at the end of the day follows from the day's events."""
    day = Day(client, dispatch_app)
    seed(client)
    c = client
    # The area's own rules and catalogue.
    r = c.patch(f"/dispatch/areas/{AREA}/settings",
                json={"geofence_radius_m": 150, "late_grace_minutes": [15, 30]})
    assert r.status_code == 200 and r.json()["geofence_radius_m"] == 150
    r = c.patch(f"/dispatch/areas/{AREA}/catalogue/cleaning", json={"default_minutes": 45})
    assert r.json()["default_minutes"] == 45

    # A care plan for E-1: cleaning on Mondays and Thursdays, meals on weekdays.
    r = c.post("/dispatch/care-plans", json={
        "care_plan_id": "CP-E1", "elder_id": "E-1", "valid_from": DAY, "items": [
            {"service_type": "cleaning", "weekdays": [0, 3], "window_start": "09:00",
             "window_end": "11:00"},
            {"service_type": "meal_help", "weekdays": [0, 1, 2, 3, 4],
             "window_start": "11:00", "window_end": "12:30"}]})
    assert r.status_code == 201, r.text
    week = c.post(f"/dispatch/care-plans/CP-E1/weeks?week_of={DAY}").json()
    assert len(week) == 2 + 5 and all(o["state"] == "placed" for o in week)
    assert c.post(f"/dispatch/care-plans/CP-E1/weeks?week_of={DAY}").json() == week

    # Hotline orders for the day, left to the plan.
    def order(elder: str, service: str, start: str, end: str, **extra: Any) -> str:
        r = c.post("/dispatch/orders", json={
            "elder_id": elder, "service_type": service, "requested_date": DAY,
            "window_start": at(start).isoformat(), "window_end": at(end).isoformat(),
            "await_plan": True, "order_id": f"O-{elder}-{service}", **extra})
        assert r.status_code == 201, r.text
        return f"V-O-{elder}-{service}"

    bathing = order("E-2", "bathing", "09:00", "12:00")
    rehab = order("E-2", "rehabilitation_nursing", "13:00", "15:30")
    welfare = order("E-3", "welfare_check", "14:00", "16:00")
    mobility = order("E-4", "mobility", "14:00", "17:00")

    # The daily plan: every visit scheduled, nobody double-booked.
    plan = c.post(f"/dispatch/areas/{AREA}/plans?date={DAY}&time_limit_s=1")
    assert plan.status_code == 201, plan.text
    assert plan.json()["unassigned"] == {}
    visits = {v["visit_id"]: v for v in
              c.get(f"/dispatch/areas/{AREA}/visits?date={DAY}").json()}
    cleaning = f"V-CP-CP-E1-v0-{DAY}-0"
    meal = f"V-CP-CP-E1-v0-{DAY}-1"
    assert set(visits) == {cleaning, meal, bathing, rehab, welfare, mobility}
    assert visits[bathing]["caregiver_id"] == "C-1"  # the only one who bathes
    assert visits[rehab]["caregiver_id"] == "C-2"  # the only nurse
    by_caregiver: dict[str, list[tuple[str, str]]] = {}
    for v in visits.values():
        by_caregiver.setdefault(v["caregiver_id"], []).append(
            (v["planned_start"], v["planned_end"]))
    for spans in by_caregiver.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))

    # 10:20 an SOS from E-4's wearable: scheduled at once and announced.
    day.now = at("10:20")
    sos = c.post("/dispatch/orders", json={
        "elder_id": "E-4", "service_type": "emergency", "requested_date": DAY,
        "emergency": True, "source": "wearable_sos", "order_id": "SOS-1",
        "emergency_lat": HOME["E-4"][0], "emergency_lon": HOME["E-4"][1]})
    assert sos.status_code == 201, sos.text
    emergency = sos.json()["visit"]
    assert emergency["priority"] == "emergency"
    assert emergency["planned_start"] >= day.now.isoformat()
    assert any(a["kind"] == "emergency" and a["severity"] == "critical" for a in day.alerts())

    # The morning, in time order, with a sweep before each step as a dispatcher's screen
    # would run it. Bathing starts 22 minutes late; the meal is served 400 m from home.
    def serve_in_order(visit_ids: list[str], plan: dict[str, tuple[int, int, int]]) -> None:
        """plan: visit -> (minutes late, minutes served, metres from home)."""
        steps = []
        for vid in visit_ids:
            v = day.visit(vid)
            late, served, off = plan.get(vid, (2, 20, 0))
            start = datetime.fromisoformat(v["planned_start"]) + timedelta(minutes=late)
            steps += [(start, 0, vid), (start + timedelta(minutes=served), 1, vid)]
        for when, step, vid in sorted(steps):
            day.now = when
            c.post(f"/dispatch/areas/{AREA}/sweep")
            v = day.visit(vid)
            _, _, off = plan.get(vid, (2, 20, 0))
            r = (day.check_in(v, when, offset_m=off) if step == 0 else
                 day.check_out(v, when, CODES[v["elder_id"]], offset_m=off))
            assert r.status_code == 200, r.text

    sick_at = at("12:45")
    morning = sorted(vid for vid in [*visits, emergency["visit_id"]]
                     if datetime.fromisoformat(day.visit(vid)["planned_start"]) < sick_at)
    assert {cleaning, bathing, meal, emergency["visit_id"]} <= set(morning)
    serve_in_order(morning, {bathing: (22, 35, 0), meal: (1, 25, 400),
                             cleaning: (2, 40, 0), emergency["visit_id"]: (5, 40, 0)})
    assert day.visit(bathing)["state"] == "verified"
    out = day.visit(meal)
    assert out["state"] == "checked_out" and out["needs_review"]
    assert "location not verified" in out["verification_problems"][0]
    kinds = {(a["kind"], a["visit_id"]) for a in day.alerts() if a["open"]}
    assert {("location_not_verified", meal), ("needs_review", meal),
            ("late_start", bathing)} <= kinds
    r = c.post(f"/dispatch/visits/{meal}/review", json={
        "decision": "approve", "by": "dispatcher-li", "reason": "elder confirmed by phone"})
    assert r.status_code == 200 and r.json()["state"] == "verified"

    # C-2 reports sick: the rest of C-2's day is replanned as a proposal.
    day.now = sick_at
    proposal = c.post("/dispatch/caregivers/C-2/sick", json={"at": sick_at.isoformat(),
                                                              "reason": "fever"})
    assert proposal.status_code == 201, proposal.text
    p = proposal.json()
    assert p["state"] == "proposed"
    assert rehab in {u["visit_id"] for u in p["unassigned"]}  # nobody else nurses
    assert all(m["caregiver_id"] != "C-2" for m in p["moves"])
    r = c.post(f"/dispatch/proposals/{p['proposal_id']}/accept", json={"by": "dispatcher-li"})
    assert r.status_code == 200 and r.json()["state"] == "accepted"
    for m in p["moves"]:
        assert day.visit(m["visit_id"])["caregiver_id"] == m["caregiver_id"]
    for vid in (welfare, mobility):
        assert day.visit(vid)["caregiver_id"] != "C-2"

    # The welfare check: no signal at the elder's home; the phone says it holds the records
    # and the sweeps stay quiet. The queued batch arrives later with the original times, then
    # once more (a duplicate, harmless).
    v = day.visit(welfare)
    start = datetime.fromisoformat(v["planned_start"])
    day.now = start
    assert c.post(f"/dispatch/caregivers/{v['caregiver_id']}/pending-sync",
                  json={"visit_ids": [welfare]}).status_code == 200
    afternoon = sorted(vid for vid in visits if vid not in morning
                       and vid not in (welfare, rehab))
    serve_in_order(afternoon, {})
    day.now = start + timedelta(minutes=100)
    assert [a for a in c.post(f"/dispatch/areas/{AREA}/sweep").json()
            if a["visit_id"] == welfare] == []
    for _ in range(2):
        assert day.check_in(v, start + timedelta(minutes=3)).status_code == 200
        r = day.check_out(v, start + timedelta(minutes=23), CODES["E-3"])
        assert r.status_code == 200 and r.json()["state"] == "verified"
    assert day.visit(welfare)["checked_in_at"] == (start + timedelta(minutes=3)).isoformat()

    # The end of the day, visit by visit.
    day.now = at("20:00")
    c.post(f"/dispatch/areas/{AREA}/sweep")
    final = {v["visit_id"]: v for v in c.get(f"/dispatch/areas/{AREA}/visits?date={DAY}").json()}
    assert {vid: v["state"] for vid, v in final.items()} == {
        cleaning: "verified", bathing: "verified", emergency["visit_id"]: "verified",
        meal: "verified", rehab: "cancelled", welfare: "verified", mobility: "verified"}
    # Who reviewed and acknowledged is the token's caller (the client's), not the body's "by".
    assert final[meal]["review"] == {"decision": "approve", "by": "admin:test-admin",
                                     "reason": "elder confirmed by phone"}
    assert final[bathing]["actual_minutes"] == 35
    assert "no replacement" in final[rehab]["cancel_reason"]
    assert final[welfare]["location_verified"] and final[welfare]["actual_minutes"] == 20
    late = {a["alert_id"] for a in day.alerts() if a["kind"] == "late_start"}
    assert late == {f"late_start:{bathing}/15"}
    r = c.post(f"/dispatch/alerts/late_start:{bathing}/15/acknowledge",
               json={"by": "dispatcher-li", "note": "traffic"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "admin:test-admin"
    assert f"late_start:{bathing}/15" not in {
        a["alert_id"] for a in c.get(f"/dispatch/areas/{AREA}/alerts?open=true").json()}
    assert not any(a["kind"] == "missed" for a in day.alerts())
    # Other days of the care plan are untouched by the day's events.
    tuesday = c.get("/dispatch/areas/test-area/orders?date=2026-11-17").json()
    assert [o["state"] for o in tuesday] == ["placed"]
