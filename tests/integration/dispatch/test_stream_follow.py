"""The live streams: the area's stays open, sends changes as they are written, keeps the
connection alive when quiet, and ends when the client goes away; a caregiver's carries only
their own visits and alerts."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from contracts.values import CaregiverKind, ServiceType
from services.dispatch.api import _events, read_caregiver_stream, read_stream
from services.dispatch.application import DispatchApplication, PlaceOrder

pytestmark = pytest.mark.integration


class FakeRequest:
    def __init__(self) -> None:
        self.gone = False

    async def is_disconnected(self) -> bool:
        return self.gone


async def test_a_following_stream_sends_new_changes_then_ends_on_disconnect():
    """Open on an empty area: a keep-alive while quiet, then the visit scheduled meanwhile
    arrives with its log position as id; a disconnected client ends the stream."""
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.clock = lambda: datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
    app.register_elder(elder_id="E", name="王", service_area_id="A", lat=29.3, lon=120.07,
                       confirmation_code="1111")
    app.register_caregiver(caregiver_id="C", name="刘", kind=CaregiverKind.EMPLOYEE,
                           service_area_id="A", skills=["cleaning"], station_lat=29.3,
                           station_lon=120.07, provider_id="P",
                           certificate_expires=date(2028, 1, 1))
    request = FakeRequest()
    stream = _events(lambda position: read_stream(app, "A", position), 0, True, request,
                     poll_s=0.01, heartbeat_s=0.03)
    assert await anext(stream) == "retry: 3000\n\n"
    assert await asyncio.wait_for(anext(stream), 2) == ": keep-alive\n\n"
    app.place_order(PlaceOrder(elder_id="E", service_type=ServiceType.CLEANING,
                               requested_date=date(2026, 11, 16), order_id="O-1"))
    chunk = await asyncio.wait_for(anext(stream), 2)
    while chunk.startswith(":"):
        chunk = await asyncio.wait_for(anext(stream), 2)
    position = app.process_recorder.max_notification_id()
    assert chunk.startswith(f"id: {position}\nevent: visit\n")
    assert '"visit_id": "V-O-1"' in chunk and '"Visit.Scheduled"' in chunk
    request.gone = True
    with pytest.raises(StopAsyncIteration):
        while True:
            await asyncio.wait_for(anext(stream), 2)
    app.close()


def test_the_host_sweeps_every_area_once_a_minute():
    """Dispatch gives the host one periodic task: sweeping every area for time-driven alerts."""
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.clock = lambda: datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
    for area in ("A", "B"):
        app.register_caregiver(caregiver_id=f"C-{area}", name="刘", kind=CaregiverKind.EMPLOYEE,
                               service_area_id=area, skills=[], station_lat=29.3,
                               station_lon=120.07, provider_id="P",
                               certificate_expires=date(2026, 11, 20))
    [(interval, work)] = app.periodic_tasks()
    assert interval == 60.0
    assert work() == 2 and work() == 0
    assert [a.kind for a in app.list_alerts("A") + app.list_alerts("B")] == [
        "certificate_expiring", "certificate_expiring"]
    app.close()


def test_a_caregivers_stream_carries_only_their_visits_and_the_move_that_takes_one_away():
    """C-1's stream has C-1's visits as they change (a cancellation included) and the alerts
    naming C-1; C-2's visits and alerts are not in it; when a visit moves from C-1 to C-2, C-1
    gets only that it moved away (nothing of it afterwards) and C-2 gets the visit from the
    move on."""
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    day = date(2026, 11, 16)
    app.clock = lambda: datetime(2026, 11, 15, 16, 0, tzinfo=UTC)  # 00:00 on the day
    for elder in ("E-1", "E-2", "E-3"):
        app.register_elder(elder_id=elder, name="王", service_area_id="A", lat=29.3,
                           lon=120.07, confirmation_code="1111")
    for caregiver in ("C-1", "C-2"):
        app.register_caregiver(caregiver_id=caregiver, name="刘", kind=CaregiverKind.EMPLOYEE,
                               service_area_id="A", skills=["cleaning"], station_lat=29.3,
                               station_lon=120.07, provider_id="P",
                               certificate_expires=date(2028, 1, 1))
    visits = {}
    for order, elder, caregiver in (("O-1", "E-1", "C-1"), ("O-2", "E-2", "C-2"),
                                    ("O-3", "E-3", "C-1"), ("O-4", "E-1", "C-1"),
                                    ("O-5", "E-2", "C-2")):
        _, visit = app.place_order(PlaceOrder(elder_id=elder, service_type=ServiceType.CLEANING,
                                              requested_date=day, order_id=order))
        assert visit is not None
        if visit.caregiver_id != caregiver:  # the router's choice: put it where the test wants
            _move(app, visit.visit_id, caregiver)
        visits[order] = visit.visit_id
    start = app.process_recorder.max_notification_id() or 0
    app.cancel_visit(visits["O-1"], reason="老人住院", cancelled_by="dispatcher")
    _move(app, visits["O-3"], "C-2")
    app.cancel_visit(visits["O-3"], reason="family visiting", cancelled_by="dispatcher")
    app.cancel_visit(visits["O-2"], reason="family visiting", cancelled_by="dispatcher")

    mine, _, _ = read_caregiver_stream(app, "C-1", start)
    assert [(kind, data["visit_id"], data.get("state"), data.get("moved_away"))
            for _, kind, data in mine] == [
        ("visit", visits["O-1"], "cancelled", None), ("visit", visits["O-3"], None, True)]
    assert mine[1][2] == {"event": "Visit.Rescheduled", "visit_id": visits["O-3"],
                          "service_area_id": "A", "moved_away": True}
    theirs, _, _ = read_caregiver_stream(app, "C-2", start)
    assert [(data["visit_id"], data["state"]) for _, _, data in theirs] == [
        (visits["O-3"], "scheduled"), (visits["O-3"], "cancelled"),
        (visits["O-2"], "cancelled")]
    # The same ids (log positions) as the area's stream, which has all of it.
    area, _, _ = read_stream(app, "A", start)
    assert {i for i, _, _ in mine + theirs} <= {i for i, _, _ in area}

    # Check-ins far from home raise an alert naming each caregiver: each gets only theirs.
    for order, caregiver in (("O-4", "C-1"), ("O-5", "C-2")):
        visit = app.get_visit(visits[order])
        app.clock = lambda v=visit: v.planned_start
        app.check_in(visit.visit_id, at=visit.planned_start, lat=29.4, lon=120.07,
                     caregiver_id=caregiver, accuracy_m=10)
    later, _, _ = read_caregiver_stream(app, "C-1", start)
    assert [d["alert_id"] for _, kind, d in later if kind == "alert"] == [
        f"location_not_verified:{visits['O-4']}/in"]
    app.close()


def _move(app: DispatchApplication, visit_id: str, caregiver_id: str) -> None:
    visit = app.get_visit(visit_id)
    visit.reschedule(caregiver_id=caregiver_id, caregiver_kind=CaregiverKind.EMPLOYEE,
                     provider_id="P", planned_start=visit.planned_start,
                     planned_end=visit.planned_end, reason="moved by the test")
    app.save(visit)
