"""The interface the caregiver page relies on: the day's route, check-in/out with idempotency
keys and the device's original time, and the area's server-sent event stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .conftest import AREA, HOME, seed

pytestmark = pytest.mark.integration

DAY = "2026-11-16"  # a Monday in the past: device times of that day are never "future"
T9 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # 09:00 in the area


@pytest.fixture
def visits(client, dispatch_app):
    """Two visits for caregiver C-1 on DAY (cleaning at 09:00, bathing at 14:00)."""
    dispatch_app.clock = lambda: T9 + timedelta(hours=10)
    seed(client)
    out = []
    for elder, service, start in (("E-1", "cleaning", T9), ("E-2", "bathing",
                                                            T9 + timedelta(hours=5))):
        r = client.post("/dispatch/orders", json={
            "elder_id": elder, "service_type": service, "requested_date": DAY,
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(hours=2)).isoformat()})
        assert r.status_code == 201, r.text
        out.append(r.json()["visit"])
    assert {v["caregiver_id"] for v in out} == {"C-1"}
    return out


def _check_in(client, visit, **extra):
    lat, lon = HOME[visit["elder_id"]]
    body = {"caregiver_id": "C-1", "lat": lat, "lon": lon, "accuracy_m": 12,
            "at": T9.isoformat(), **extra}
    return client.post(f"/dispatch/visits/{visit['visit_id']}/check-in", json=body)


def test_route_lists_the_day_in_order_with_what_the_page_needs(client, visits):
    """The route gives the visits in planned order with elder, address, position, tasks from
    the catalogue, the confirmation need and the caregiver's station."""
    r = client.get(f"/dispatch/caregivers/C-1/route?date={DAY}")
    assert r.status_code == 200, r.text
    route = r.json()
    assert route["station"] == {"lat": 29.3050, "lon": 120.0745}
    stops = route["visits"]
    assert [s["visit_id"] for s in stops] == [v["visit_id"] for v in visits]
    first = stops[0]
    assert (first["elder_name"], first["service_type"], first["state"]) == (
        "王秀英", "cleaning", "scheduled")
    assert (first["lat"], first["lon"]) == HOME["E-1"]
    assert "扫地拖地" in first["tasks"] and first["needs_confirmation"] is True
    assert first["planned_start"] < stops[1]["planned_start"]
    other = client.get(f"/dispatch/caregivers/C-2/route?date={DAY}").json()
    assert other["visits"] == []
    assert client.get(f"/dispatch/caregivers/NOPE/route?date={DAY}").status_code == 404


def test_a_repeated_check_in_with_the_same_key_changes_nothing(client, visits, dispatch_app):
    """The phone may send a queued check-in twice: the same key returns the visit unchanged;
    another check-in of a checked-in visit is refused."""
    first = _check_in(client, visits[0], idempotency_key="k-1", notes="门铃坏了")
    assert first.status_code == 200 and first.json()["state"] == "checked_in"
    version = dispatch_app.get_visit(visits[0]["visit_id"]).version
    again = _check_in(client, visits[0], idempotency_key="k-1",
                      at=(T9 + timedelta(minutes=5)).isoformat())
    assert again.status_code == 200
    assert again.json()["checked_in_at"] == first.json()["checked_in_at"]
    assert dispatch_app.get_visit(visits[0]["visit_id"]).version == version
    other = _check_in(client, visits[0], idempotency_key="k-2")
    assert other.status_code == 409 and "checked_in" in other.json()["detail"]
    assert first.json()["notes"] == ["门铃坏了"]


def test_times_in_the_future_are_refused_and_the_original_time_is_kept(client, visits,
                                                                       dispatch_app):
    """A device time beyond the clock skew is a 422 with the reason and changes nothing; a time
    within the skew, or hours in the past (an offline queue), is taken as given."""
    now = dispatch_app.clock()
    r = _check_in(client, visits[0], at=(now + timedelta(minutes=5)).isoformat())
    assert r.status_code == 422 and "future" in r.json()["detail"]
    assert client.get(f"/dispatch/visits/{visits[0]['visit_id']}").json()["state"] == "scheduled"
    r = _check_in(client, visits[0], at=(now + timedelta(seconds=60)).isoformat())
    assert r.status_code == 200
    r = _check_in(client, visits[1], at=(T9 + timedelta(hours=5, minutes=2)).isoformat())
    assert r.status_code == 200
    assert r.json()["checked_in_at"].startswith("2026-11-16T06:02:00")


def test_check_out_takes_a_signature_notes_and_tasks_from_the_catalogue(client, visits):
    """Check-out with the elder's signature instead of a code verifies the visit; a task not in
    the catalogue is a 422 and the visit stays checked in."""
    _check_in(client, visits[0], idempotency_key="in-1")
    lat, lon = HOME["E-1"]
    body = {"caregiver_id": "C-1", "lat": lat, "lon": lon, "accuracy_m": 8,
            "at": (T9 + timedelta(minutes=55)).isoformat(), "idempotency_key": "out-1",
            "tasks_done": ["扫地拖地", "倒垃圾"], "signature": "M0 0 L10 10", "notes": "ok"}
    bad = client.post(f"/dispatch/visits/{visits[0]['visit_id']}/check-out",
                      json={**body, "tasks_done": ["洗车"]})
    assert bad.status_code == 422 and "洗车" in bad.json()["detail"]
    assert client.get(f"/dispatch/visits/{visits[0]['visit_id']}").json()["state"] == \
        "checked_in"
    r = client.post(f"/dispatch/visits/{visits[0]['visit_id']}/check-out", json=body)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["state"], done["confirmation"], done["actual_minutes"]) == (
        "verified", "signature", 55)
    again = client.post(f"/dispatch/visits/{visits[0]['visit_id']}/check-out", json=body)
    assert again.status_code == 200 and again.json()["state"] == "verified"


def test_a_position_too_inaccurate_is_accepted_but_not_verified(client, visits):
    """A check-in at the home but with 500 m accuracy proves nothing: accepted, flagged."""
    r = _check_in(client, visits[0], accuracy_m=500)
    assert r.status_code == 200
    assert r.json()["location_verified"] is False
    assert "500 m" in r.json()["check_in_problem"]
    alerts = client.get(f"/dispatch/areas/{AREA}/alerts?open=true").json()
    assert [a["kind"] for a in alerts] == ["location_not_verified"]


def _parse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "id" in fields:
            events.append(fields)
    return events


def test_the_area_stream_sends_visit_and_alert_changes_and_resumes(client, visits):
    """The stream carries the area's visit and alert changes as server-sent events; with
    Last-Event-ID it sends only what came after."""
    r = client.get(f"/dispatch/areas/{AREA}/stream?follow=false")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _parse(r.text)
    assert [e["event"] for e in events] == ["visit", "visit"]
    last = events[-1]["id"]
    _check_in(client, visits[0], accuracy_m=800)
    r = client.get(f"/dispatch/areas/{AREA}/stream?follow=false",
                   headers={"Last-Event-ID": last})
    later = _parse(r.text)
    assert sorted(e["event"] for e in later) == ["alert", "visit"]
    assert all(int(e["id"]) > int(last) for e in later)
    assert '"Visit.CheckedIn"' in r.text
    other = client.get("/dispatch/areas/elsewhere/stream?follow=false")
    assert _parse(other.text) == []
    assert _parse(client.get(f"/dispatch/areas/{AREA}/stream?follow=false&from_now=true")
                  .text) == []
