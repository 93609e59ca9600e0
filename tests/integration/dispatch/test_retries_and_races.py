"""What the fault-injection suite found in dispatch: requests retried after a lost answer, and
orders placed at the same moment.

A client that lost the answer sends the same request again; it must get the same result, not a
conflict. Orders taken one by one must not book one caregiver's time twice when they arrive
together (each visit is a new aggregate, so optimistic concurrency alone does not stop that).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.dispatch.application import DispatchApplication
from services.runtime.aggregate_cache import UnitOfWorkMiddleware
from tests.integration.dispatch.conftest import HOME, http_app, seed
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
