"""What the fault-injection suite found in dispatch: requests retried after a lost answer, and
orders placed at the same moment.

A client that lost the answer sends the same request again; it must get the same result, not a
conflict. Orders taken one by one must not book one caregiver's time twice when they arrive
together (each visit is a new aggregate, so optimistic concurrency alone does not stop that).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from contracts.events.orders import OrderPlaced
from services.dispatch.application import DispatchApplication, bookings_of
from services.runtime.aggregate_cache import UnitOfWorkMiddleware
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome
from tests.integration.dispatch.conftest import AREA, HOME, http_app, seed
from tests.support.auth import bearer


def _checked_out_needing_review(client: TestClient) -> str:
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    placed = client.post("/dispatch/orders", json={
        "order_id": "O-retry", "elder_id": "E-1", "service_type": "cleaning",
        "requested_date": day})
    assert placed.status_code == 201, placed.text
    visit = placed.json()["visit"]
    start = datetime.fromisoformat(visit["planned_start"])
    lat, lon = HOME["E-1"]
    body = {"caregiver_id": visit["caregiver_id"], "lat": lat, "lon": lon}
    assert client.post(f"/dispatch/visits/{visit['visit_id']}/check-in", json={
        **body, "at": start.isoformat()}).status_code == 200
    # No confirmation code: the visit waits for a reviewer.
    out = client.post(f"/dispatch/visits/{visit['visit_id']}/check-out", json={
        **body, "at": (start + timedelta(minutes=60)).isoformat(), "tasks_done": []})
    assert out.status_code == 200 and out.json()["needs_review"], out.text
    return str(visit["visit_id"])


def test_a_retried_verify_answers_the_verified_visit_instead_of_a_conflict(client,
                                                                          dispatch_app):
    """POST /visits/{id}/verify sent twice (the first answer lost) answers 200 both times and
    records one verification."""
    seed(client)
    visit_id = _checked_out_needing_review(client)
    body = {"by": "reviewer", "override_reason": "elder confirmed by phone"}
    first = client.post(f"/dispatch/visits/{visit_id}/verify", json=body)
    version = dispatch_app.get_visit(visit_id).version
    again = client.post(f"/dispatch/visits/{visit_id}/verify", json=body)
    assert first.status_code == 200 and again.status_code == 200, again.text
    assert again.json()["state"] == "verified"
    assert dispatch_app.get_visit(visit_id).version == version  # no second Verified event


def test_orders_placed_together_never_book_one_caregiver_twice(client, dispatch_app,
                                                              monkeypatch):
    """Twelve orders for one day placed from twelve threads at once, each save taking 20 ms
    as on a busy database: no two of the visits given to the same caregiver overlap."""
    _place_together_and_check(client, dispatch_app, monkeypatch)


@pytest.fixture
def stored_dispatch(persistence) -> Iterator[DispatchApplication]:
    app = DispatchApplication(env=persistence)
    app.plan_time_limit_s = 1.0
    yield app
    app.close()


def test_orders_placed_together_on_a_real_store_never_book_one_caregiver_twice(
        stored_dispatch, monkeypatch):
    """The same on SQLite and PostgreSQL, each request a unit of work as the host runs it (the
    aggregate cache and the read model follow the store's log): a placement sees every booking
    committed before it took the placement lock, not only what was committed when its request
    began. (A read model that trusted a log check made by another request before that
    request's own placement booked caregivers twice; in memory the race did not show.)"""
    web = http_app(stored_dispatch)
    web.add_middleware(UnitOfWorkMiddleware)
    with TestClient(web, headers=bearer("admin")) as client:
        _place_together_and_check(client, stored_dispatch, monkeypatch)


def _place_together_and_check(client: TestClient, dispatch_app: DispatchApplication,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    seed(client)
    save = dispatch_app.save

    def slow_save(*aggregates: object, **kwargs: object) -> object:
        time.sleep(0.02)
        return save(*aggregates, **kwargs)

    monkeypatch.setattr(dispatch_app, "save", slow_save)
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    elders = list(HOME)

    def place(i: int) -> dict:
        r = client.post("/dispatch/orders", json={
            "order_id": f"O-race-{i}", "elder_id": elders[i % len(elders)],
            "service_type": "cleaning", "requested_date": day, "duration_minutes": 30})
        assert r.status_code == 201, r.text
        return r.json()["visit"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        visits = [v for v in pool.map(place, range(12)) if v is not None]
    assert len(visits) >= 8
    by_caregiver: dict[str, list[tuple[datetime, datetime]]] = {}
    for v in visits:
        by_caregiver.setdefault(v["caregiver_id"], []).append(
            (datetime.fromisoformat(v["planned_start"]), datetime.fromisoformat(v["planned_end"])))
    for caregiver, slots in by_caregiver.items():
        slots.sort()
        for (_, end), (start, _) in zip(slots, slots[1:], strict=False):
            assert end <= start, f"{caregiver} booked twice: {slots}"


class NoDeadLetters:
    async def publish(self, topic: str, key: bytes, value: bytes, headers: dict) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {headers.get('x-error')}")


def test_orders_placed_by_two_replicas_and_the_consumer_never_book_one_caregiver_twice(
        stored_dispatch, persistence, monkeypatch):
    """Two dispatch processes on one store (replicas behind a load balancer) take orders over
    HTTP at the same moment as the first one's consumer takes time-bank orders (OrderPlaced),
    each write taking 20 ms: no two visits of a caregiver overlap. The area's bookings are an
    exclusive section across processes (a PostgreSQL advisory lock) and the consumer holds it
    until its message is recorded; a lock in each process alone booked caregivers twice."""
    if not persistence["PERSISTENCE_MODULE"].startswith("services.runtime.pgstore"):
        pytest.skip("a store only one process opens (SQLite) is served by one process")
    replica = DispatchApplication(env=persistence)
    first_web, second_web = http_app(stored_dispatch), http_app(replica)
    for web in (first_web, second_web):
        web.add_middleware(UnitOfWorkMiddleware)
    try:
        with TestClient(first_web, headers=bearer("admin")) as first, \
                TestClient(second_web, headers=bearer("admin")) as second:
            seed(first)
            for app in (stored_dispatch, replica):
                record = app._record

                def slow_record(processing, record=record):  # type: ignore[no-untyped-def]
                    time.sleep(0.02)
                    return record(processing)

                monkeypatch.setattr(app, "_record", slow_record)
            _place_from_everywhere_and_check(stored_dispatch, first, second)
    finally:
        replica.close()


def _place_from_everywhere_and_check(app: DispatchApplication, first: TestClient,
                                     second: TestClient) -> None:
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    elders = list(HOME)
    consumer = IdempotentConsumer(app, "homecare-dispatch", {"OrderPlaced": app.policy},
                                  NoDeadLetters())

    def place(i: int) -> None:
        elder = elders[i % len(elders)]
        if i % 3 == 2:  # a redemption at the time bank
            event = OrderPlaced(service_area_id=AREA, payload={
                "order_id": f"O-race-{i}", "elder_id": elder, "service_type": "cleaning",
                "source": "timebank_redemption", "priority": "paid", "emergency": False,
                "requested_date": day, "duration_minutes": 30})
            # A partition each: positions within one partition are consumed in order.
            message = ConsumedMessage(topic="homecare.orders", partition=i, offset=0,
                                      key=AREA.encode(), value=event.to_bytes())
            assert asyncio.run(consumer.consume(message)) is Outcome.PROCESSED
            return
        client = first if i % 3 == 0 else second
        r = client.post("/dispatch/orders", json={
            "order_id": f"O-race-{i}", "elder_id": elder, "service_type": "cleaning",
            "requested_date": day.isoformat(), "duration_minutes": 30})
        assert r.status_code == 201, r.text

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(place, range(12)))
    visits = app.list_visits(AREA, day)
    assert len(visits) >= 8
    by_caregiver: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for v in visits:
        for caregiver in v.caregiver_ids:
            by_caregiver.setdefault(caregiver, []).append(
                (v.planned_start, v.planned_end, v.visit_id))
    for caregiver, slots in by_caregiver.items():
        slots.sort()
        for (_, end, _), (start, _, _) in zip(slots, slots[1:], strict=False):
            assert end <= start, f"{caregiver} booked twice: {slots}"


def test_an_order_waiting_too_long_for_its_area_is_answered_busy_and_nothing_is_saved(
        client, dispatch_app):
    """While the area's bookings are held past the wait (a long plan run, here another thread
    holding the section), POST /orders answers 503 Busy with Retry-After, and the order does
    not exist; repeated once the area is free, it is placed."""
    seed(client)
    dispatch_app.sections.wait_s = 0.05
    entered, leave = threading.Event(), threading.Event()

    def plan_running() -> None:
        with dispatch_app.sections.hold(bookings_of(AREA)):
            entered.set()
            leave.wait(5)

    holder = threading.Thread(target=plan_running)
    holder.start()
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    order = {"order_id": "O-busy", "elder_id": "E-1", "service_type": "cleaning",
             "requested_date": day}
    try:
        assert entered.wait(5)
        busy = client.post("/dispatch/orders", json=order)
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "Busy" and busy.headers["retry-after"]
        assert "bookings:test-area is busy" in busy.json()["detail"]
        assert client.get("/dispatch/orders/O-busy").status_code == 404
    finally:
        leave.set()
        holder.join(5)
    assert client.post("/dispatch/orders", json=order).status_code == 201
