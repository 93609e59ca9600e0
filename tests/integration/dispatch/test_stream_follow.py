"""The live area stream: it stays open, sends changes as they are written, keeps the
connection alive when quiet, and ends when the client goes away."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from contracts.values import CaregiverKind, ServiceType
from services.dispatch.api import _events
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
    stream = _events(app, "A", 0, True, request, poll_s=0.01, heartbeat_s=0.03)
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
