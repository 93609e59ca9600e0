"""Who may do what in dispatch (issue #8): the ownership rules that matter, over HTTP with
signed tokens against the real routes and application (in-memory event store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dispatch import api, web
from services.dispatch.application import DispatchApplication, NotFound
from services.dispatch.domain.visits import DispatchError
from services.dispatch.routing.travel import LatLon, haversine_km
from services.runtime.access import check_every_route_guarded, endpoints, is_public
from services.runtime.http import install_error_handlers
from tests.support.auth import bearer, install_test_auth, token

from .conftest import AREA, HOME, STATION, seed

pytestmark = pytest.mark.integration

DAY = "2026-11-16"  # a Monday in the past: device times of that day are never "future"
T9 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # 09:00 in the area
FAR = "far-area"
MEAL = {"service_type": "meal_delivery", "requested_date": DAY}


def full_app(app: DispatchApplication) -> FastAPI:
    """The dispatch API and the pages' endpoints (sync, dashboard) as the host serves them."""
    http = FastAPI()
    http.include_router(api.build_router(app))
    http.include_router(web.build_router(app))
    install_error_handlers(http, not_found=(NotFound,), conflict=(DispatchError,))
    return install_test_auth(http)


@pytest.fixture
def http(dispatch_app: DispatchApplication) -> FastAPI:
    return full_app(dispatch_app)


def as_(http: FastAPI, role: str, **scopes: Any) -> TestClient:
    return TestClient(http, headers=bearer(role, **scopes))


@pytest.fixture
def world(http: FastAPI, dispatch_app: DispatchApplication) -> dict[str, Any]:
    """The test area seeded (elders E-1..E-4; C-1, C-2 employees, V-1 volunteer), C-1 with a
    cleaning visit for E-1 and C-2 with a nursing visit for E-2 on DAY, an open meal order for
    E-3 left to the plan, a care plan for E-2; and a far area with elder E-9."""
    dispatch_app.clock = lambda: T9 + timedelta(hours=10)
    admin = as_(http, "admin")
    seed(admin)
    visits = {}
    for elder, service in (("E-1", "cleaning"), ("E-2", "rehabilitation_nursing")):
        r = admin.post("/dispatch/orders", json={
            "elder_id": elder, "service_type": service, "requested_date": DAY,
            "window_start": T9.isoformat(), "window_end": (T9 + timedelta(hours=3)).isoformat()})
        assert r.status_code == 201, r.text
        visits[elder] = r.json()["visit"]
    assert (visits["E-1"]["caregiver_id"], visits["E-2"]["caregiver_id"]) == ("C-1", "C-2")
    open_order = admin.post("/dispatch/orders", json={
        "elder_id": "E-3", "service_type": "meal_delivery", "requested_date": DAY,
        "await_plan": True,
        "window_start": (T9 + timedelta(hours=4)).isoformat(),
        "window_end": (T9 + timedelta(hours=6)).isoformat()}).json()["order"]
    plan = admin.post("/dispatch/care-plans", json={
        "care_plan_id": "CP-E-2", "elder_id": "E-2", "valid_from": DAY,
        "items": [{"service_type": "cleaning", "weekdays": [0]}]})
    assert plan.status_code == 201, plan.text
    far = admin.post("/dispatch/elders", json={
        "elder_id": "E-9", "name": "远方", "service_area_id": FAR, "lat": HOME["E-1"][0],
        "lon": HOME["E-1"][1], "confirmation_code": "9999"})
    assert far.status_code == 201, far.text
    return {"visit_c1": visits["E-1"]["visit_id"], "visit_c2": visits["E-2"]["visit_id"],
            "order_e1": visits["E-1"]["order_id"], "order_e2": visits["E-2"]["order_id"],
            "open_order": open_order["order_id"]}


def _check_in(client: TestClient, visit_id: str, caregiver_id: str) -> int:
    lat, lon = HOME["E-1"]
    return client.post(f"/dispatch/visits/{visit_id}/check-in", json={
        "caregiver_id": caregiver_id, "lat": lat, "lon": lon, "at": T9.isoformat()}).status_code


def test_a_caregiver_works_only_on_their_own_visits(http, world) -> None:  # type: ignore[no-untyped-def]
    """A caregiver reads and checks in their own visit, as themself only; another caregiver's
    visit, route, record and pending-sync answer 403, as does an unknown visit (no hint that
    it exists); area listings are not theirs at all."""
    c1, c2 = as_(http, "caregiver", caregiver_id="C-1"), as_(http, "caregiver", caregiver_id="C-2")
    mine, theirs = world["visit_c1"], world["visit_c2"]
    assert c2.get(f"/dispatch/visits/{mine}").status_code == 403
    assert _check_in(c2, mine, "C-2") == 403
    assert _check_in(c2, mine, "C-1") == 403  # naming the owner in the body does not help
    assert _check_in(c1, mine, "C-2") == 403  # on their own visit, but as someone else
    assert _check_in(c1, theirs, "C-1") == 403
    assert _check_in(c1, "V-NOPE", "C-1") == 403
    assert c1.get(f"/dispatch/visits/{mine}").status_code == 200
    assert _check_in(c1, mine, "C-1") == 200
    assert c1.get(f"/dispatch/caregivers/C-1/route?date={DAY}").status_code == 200
    assert c1.get(f"/dispatch/caregivers/C-2/route?date={DAY}").status_code == 403
    assert c1.get("/dispatch/caregivers/C-2").status_code == 403
    assert c1.post("/dispatch/caregivers/C-2/pending-sync",
                   json={"visit_ids": [theirs]}).status_code == 403
    assert c1.post("/dispatch/caregivers/C-1/pending-sync",
                   json={"visit_ids": [mine]}).status_code == 200
    assert c1.get(f"/dispatch/areas/{AREA}/visits?date={DAY}").status_code == 403
    assert c1.post(f"/dispatch/visits/{mine}/verify", json={"by": "C-1"}).status_code == 403
    assert c1.post("/dispatch/caregivers/C-1/sick", json={}).status_code == 403


def test_the_phone_queue_is_accepted_only_for_its_own_caregiver(http, world) -> None:  # type: ignore[no-untyped-def]
    """POST /dispatch/sync: a caregiver sends only their own queue (the body's caregiver_id)."""
    c1 = as_(http, "caregiver", caregiver_id="C-1")
    batch = {"device_id": "phone-1", "records": []}
    assert c1.post("/dispatch/sync", json={**batch, "caregiver_id": "C-2"}).status_code == 403
    ok = c1.post("/dispatch/sync", json={**batch, "caregiver_id": "C-1"})
    assert ok.status_code == 200 and ok.json()["results"] == []
    far = as_(http, "dispatcher", service_areas=[FAR])
    assert far.post("/dispatch/sync", json={**batch, "caregiver_id": "C-1"}).status_code == 403


def test_a_dispatcher_works_only_in_their_own_areas(http, world) -> None:  # type: ignore[no-untyped-def]
    """The test area's dispatcher reads, plans and records on behalf in it; the far area's
    elders, visits, plans and new records answer 403; an unknown visit is 403 for them while
    the administrator gets 404; erasure is the administrator's alone."""
    d = as_(http, "dispatcher", service_areas=[AREA])
    far = as_(http, "dispatcher", service_areas=[FAR])
    visit = world["visit_c1"]
    assert d.get(f"/dispatch/areas/{FAR}/visits?date={DAY}").status_code == 403
    assert d.post(f"/dispatch/areas/{FAR}/plans?date={DAY}").status_code == 403
    assert d.get("/dispatch/elders/E-9").status_code == 403
    assert d.post("/dispatch/orders", json={"elder_id": "E-9", **MEAL}).status_code == 403
    assert d.post("/dispatch/elders", json={
        "elder_id": "E-10", "name": "新", "service_area_id": FAR, "lat": 29.3, "lon": 120.07,
        "confirmation_code": "1010"}).status_code == 403
    assert d.post("/dispatch/caregivers", json={
        "caregiver_id": "C-10", "name": "新", "kind": "employee", "service_area_id": FAR,
        "station_lat": STATION[0], "station_lon": STATION[1]}).status_code == 403
    assert far.get(f"/dispatch/visits/{visit}").status_code == 403
    assert far.post(f"/dispatch/visits/{visit}/cancel", json={
        "reason": "x", "cancelled_by": "far"}).status_code == 403
    assert far.get(f"/dispatch/dashboard/api/areas/{AREA}/day").status_code == 403
    assert d.get(f"/dispatch/areas/{AREA}/visits?date={DAY}").status_code == 200
    assert d.get(f"/dispatch/visits/{visit}").status_code == 200
    assert _check_in(d, visit, "C-1") == 200  # on behalf of the caregiver
    assert d.get("/dispatch/visits/V-NOPE").status_code == 403
    assert as_(http, "admin").get("/dispatch/visits/V-NOPE").status_code == 404
    assert d.post("/dispatch/elders/E-1/erasure", json={"by": "d"}).status_code == 403
    assert d.post("/dispatch/providers", json={"provider_id": "P-9", "name": "x",
                                               "service_area_id": AREA}).status_code == 403
    several = as_(http, "dispatcher", service_areas=[AREA, FAR])
    assert several.get("/dispatch/elders/E-9").status_code == 200


def test_an_elder_sees_only_their_own(http, world) -> None:  # type: ignore[no-untyped-def]
    """An elder reads their record, visits, orders and care plans and orders for themself;
    another elder's answer 403. A family proxy acting for two elders reaches both."""
    e1 = as_(http, "elder", elder_ids=["E-1"])
    assert e1.get("/dispatch/elders/E-1").status_code == 200
    assert e1.get("/dispatch/elders/E-2").status_code == 403
    assert e1.get(f"/dispatch/visits/{world['visit_c1']}").status_code == 200
    assert e1.get(f"/dispatch/visits/{world['visit_c2']}").status_code == 403
    assert e1.get(f"/dispatch/orders/{world['order_e1']}").status_code == 200
    assert e1.get(f"/dispatch/orders/{world['order_e2']}").status_code == 403
    assert e1.post(f"/dispatch/orders/{world['order_e2']}/cancel", json={
        "reason": "x", "cancelled_by": "E-1"}).status_code == 403
    assert e1.get("/dispatch/care-plans/CP-E-2").status_code == 403
    assert e1.put("/dispatch/elders/E-2/preferences", json={}).status_code == 403
    assert e1.post("/dispatch/orders", json={"elder_id": "E-2", **MEAL}).status_code == 403
    placed = e1.post("/dispatch/orders", json={"elder_id": "E-1", **MEAL, "await_plan": True})
    assert placed.status_code == 201, placed.text
    assert e1.get(f"/dispatch/areas/{AREA}/elders").status_code == 403
    proxy = as_(http, "elder", elder_ids=["E-1", "E-2"])
    assert proxy.get("/dispatch/care-plans/CP-E-2").status_code == 200
    assert proxy.get(f"/dispatch/visits/{world['visit_c2']}").status_code == 200


def test_a_volunteer_takes_open_orders_only_for_themself(http, world) -> None:  # type: ignore[no-untyped-def]
    """A volunteer lists their own area's orders (not another area's), takes an open one
    naming themself (naming someone else: 403) and then checks in on it; others' records stay
    closed."""
    v = as_(http, "volunteer", caregiver_id="V-1", volunteer_id="P-V-1")
    order = world["open_order"]
    assert v.get(f"/dispatch/areas/{AREA}/orders?date={DAY}").status_code == 200
    assert v.get(f"/dispatch/areas/{FAR}/orders?date={DAY}").status_code == 403
    assert v.get(f"/dispatch/areas/{AREA}/elders").status_code == 403
    assert v.post(f"/dispatch/orders/{order}/claim",
                  json={"caregiver_id": "C-1"}).status_code == 403
    claimed = v.post(f"/dispatch/orders/{order}/claim", json={"caregiver_id": "V-1"})
    assert claimed.status_code == 201, claimed.text
    visit = claimed.json()["visit"]["visit_id"]
    assert _check_in(v, visit, "V-1") == 200
    assert v.get(f"/dispatch/visits/{world['visit_c1']}").status_code == 403
    assert as_(http, "caregiver", caregiver_id="C-1").post(
        f"/dispatch/orders/{world['order_e1']}/claim",
        json={"caregiver_id": "C-1"}).status_code == 403


def test_the_auditor_reads_and_never_writes_and_finance_has_no_dispatch(http, world) -> None:  # type: ignore[no-untyped-def]
    """The auditor reads any area's records but every write answers 403; finance gets 403 on
    dispatch reads too; no token is 401."""
    auditor = as_(http, "auditor")
    visit = world["visit_c1"]
    assert auditor.get(f"/dispatch/visits/{visit}").status_code == 200
    assert auditor.get(f"/dispatch/areas/{AREA}/alerts").status_code == 200
    assert auditor.get("/dispatch/elders/E-9").status_code == 200
    assert _check_in(auditor, visit, "C-1") == 403
    assert auditor.post(f"/dispatch/visits/{visit}/verify", json={"by": "a"}).status_code == 403
    assert auditor.post("/dispatch/orders", json={"elder_id": "E-1", **MEAL}).status_code == 403
    assert auditor.patch(f"/dispatch/areas/{AREA}/settings", json={}).status_code == 403
    finance = as_(http, "finance", service_areas=[AREA])
    assert finance.get(f"/dispatch/visits/{visit}").status_code == 403
    assert finance.get(f"/dispatch/areas/{AREA}/visits?date={DAY}").status_code == 403
    assert TestClient(http).get(f"/dispatch/visits/{visit}").status_code == 401


def test_the_stream_takes_the_token_in_the_url(http, world) -> None:  # type: ignore[no-untyped-def]
    """EventSource sends no headers: the area stream accepts ?access_token=, with the same
    area rule; other endpoints do not take a token from the URL."""
    public = TestClient(http)
    mine = token("dispatcher", service_areas=[AREA])
    url = f"/dispatch/areas/{AREA}/stream?follow=false"
    assert public.get(url).status_code == 401
    answer = public.get(f"{url}&access_token={mine}")
    assert answer.status_code == 200 and "event: visit" in answer.text
    other = token("dispatcher", service_areas=[FAR])
    assert public.get(f"{url}&access_token={other}").status_code == 403
    assert public.get(f"/dispatch/visits/{world['visit_c1']}?access_token={mine}"
                      ).status_code == 401


def test_a_caregiver_follows_their_own_stream_not_the_areas(http, world) -> None:  # type: ignore[no-untyped-def]
    """Caregivers and volunteers may not open the area's stream; each opens their own (token
    in the URL, as EventSource needs), which carries their visits and not a colleague's, and
    no one else's; the dispatcher of the area may open a caregiver's stream too."""
    public = TestClient(http)
    c1 = token("caregiver", caregiver_id="C-1")
    volunteer = token("volunteer", caregiver_id="V-1", volunteer_id="V-1")
    area = f"/dispatch/areas/{AREA}/stream?follow=false&access_token="
    assert public.get(area + c1).status_code == 403
    assert public.get(area + volunteer).status_code == 403
    own = public.get(f"/dispatch/caregivers/C-1/stream?follow=false&access_token={c1}")
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/event-stream")
    assert world["visit_c1"] in own.text and world["visit_c2"] not in own.text
    assert public.get(f"/dispatch/caregivers/C-2/stream?follow=false&access_token={c1}"
                      ).status_code == 403
    assert public.get("/dispatch/caregivers/C-1/stream?follow=false").status_code == 401
    assert public.get(f"/dispatch/caregivers/V-1/stream?follow=false&access_token={volunteer}"
                      ).status_code == 200
    dispatcher = token("dispatcher", service_areas=[AREA])
    assert public.get(f"/dispatch/caregivers/C-2/stream?follow=false&access_token={dispatcher}"
                      ).status_code == 200
    far = token("dispatcher", service_areas=[FAR])
    assert public.get(f"/dispatch/caregivers/C-2/stream?follow=false&access_token={far}"
                      ).status_code == 403


def test_a_volunteer_gets_open_orders_nearest_first_without_the_homes(http, world) -> None:  # type: ignore[no-untyped-def]
    """A volunteer may not read the area's elders (their addresses and homes); the orders
    listing with ?near=lat,lon gives each order how far its elder lives from there, rounded
    to 100 m, and nothing of the home; a malformed position answers 422."""
    volunteer = as_(http, "volunteer", caregiver_id="V-1", volunteer_id="V-1")
    assert volunteer.get(f"/dispatch/areas/{AREA}/elders").status_code == 403
    lat, lon = HOME["E-1"]
    r = volunteer.get(f"/dispatch/areas/{AREA}/orders?date={DAY}&near={lat},{lon}")
    assert r.status_code == 200, r.text
    orders = {o["elder_id"]: o for o in r.json()}
    assert orders["E-1"]["distance_m"] == 0
    expected = haversine_km(LatLon(lat, lon), LatLon(*HOME["E-3"])) * 1000
    assert orders["E-3"]["distance_m"] % 100 == 0
    assert abs(orders["E-3"]["distance_m"] - expected) <= 50
    for order in orders.values():
        assert not {"address", "lat", "lon", "home", "position"} & set(order)
    plain = volunteer.get(f"/dispatch/areas/{AREA}/orders?date={DAY}").json()
    assert plain and all("distance_m" not in o for o in plain)
    for bad in ("here", "29.3", "91,120", "29.3,120.1,5"):
        assert volunteer.get(f"/dispatch/areas/{AREA}/orders?date={DAY}&near={bad}"
                             ).status_code == 422, bad


def test_every_dispatch_endpoint_is_guarded(http) -> None:  # type: ignore[no-untyped-def]
    """No dispatch endpoint answers without a token except the pages' static files (and the
    login endpoints)."""
    assert check_every_route_guarded(http) == []
    public = {e.path for e in endpoints(http) if is_public(e) and not e.path.startswith("/auth/")}
    assert public == {"/dispatch/app", "/dispatch/app/", "/dispatch/app/{name}",
                      "/dispatch/dashboard", "/dispatch/dashboard/", "/dispatch/dashboard/{name}"}


def test_who_did_it_is_the_caller_of_the_token_not_the_body(http, world,  # type: ignore[no-untyped-def]
                                                            dispatch_app) -> None:
    """A dashboard move, an order placed and cancelled, a visit cancelled and a care plan
    changed record the token's caller (role:subject) as who did it; a name in the body
    ("by", "placed_by", "cancelled_by"...) is ignored, and may be left out."""
    li = TestClient(http, headers=bearer("dispatcher", "li", service_areas=[AREA]))
    dispatch_app.clock = lambda: T9 - timedelta(hours=1)  # before the day's visits start
    moved = li.post(f"/dispatch/dashboard/api/visits/{world['visit_c1']}/move", json={
        "caregiver_id": "C-1", "planned_start": (T9 + timedelta(hours=1)).isoformat(),
        "by": "调度员"})
    assert moved.status_code == 200, moved.text
    visit = dispatch_app.get_visit(world["visit_c1"])
    reasons = [e.reason for e in dispatch_app.events.get(visit.id)
               if type(e).__name__ == "Rescheduled"]
    assert reasons and reasons[-1] == "moved by dispatcher:li on the dashboard"

    placed = li.post("/dispatch/orders", json={**MEAL, "elder_id": "E-4", "await_plan": True,
                                               "placed_by": "somebody"})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]
    assert dispatch_app.get_order(order_id).placed_by == "dispatcher:li"
    assert li.post(f"/dispatch/orders/{order_id}/cancel",
                   json={"reason": "family visiting"}).status_code == 200
    assert dispatch_app.get_order(order_id).cancelled_by == "dispatcher:li"

    r = li.post(f"/dispatch/visits/{world['visit_c2']}/cancel",
                json={"reason": "elder in hospital", "cancelled_by": "family"})
    assert r.status_code == 200, r.text
    assert dispatch_app.get_visit(world["visit_c2"]).cancelled_by == "dispatcher:li"

    r = li.put("/dispatch/care-plans/CP-E-2", json={
        "items": [{"service_type": "cleaning", "weekdays": [1]}], "effective_from": DAY,
        "by": "nobody"})
    assert r.status_code == 200, r.text
    plan = dispatch_app.get_care_plan("CP-E-2")
    changes = [e.by for e in dispatch_app.events.get(plan.id) if type(e).__name__ == "Changed"]
    assert changes == ["dispatcher:li"]
