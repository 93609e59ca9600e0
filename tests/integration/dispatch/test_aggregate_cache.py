"""Dispatch's aggregate cache: faster reads that change nothing a caller can see.

Two dispatch applications share one SQLite file (as two processes would); each caches visits
and areas. What one writes the other reads, a cached copy handed to a command is the caller's
own, an erased elder's cached copy goes at once, and alerts are never kept in the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from contracts.values import ServiceType
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.dispatch.domain.alerts import Alert
from services.dispatch.domain.areas import ServiceArea
from services.dispatch.domain.people import Elder
from services.dispatch.domain.visits import DispatchError, Visit, VisitState
from services.runtime.cipher import cipher_env
from services.runtime.settings import SharedSettings

AREA = "cache-area"
HOME = (29.3069, 120.0760)
DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "dispatch.sqlite"), "SQLITE_LOCK_TIMEOUT": "10",
            **cipher_env(SharedSettings(data_dir=tmp_path))}


def dispatch(env: dict[str, str]) -> DispatchApplication:
    app = DispatchApplication(env)
    app.clock = lambda: NOW
    return app


@pytest.fixture
def apps(env: dict[str, str]) -> Iterator[tuple[DispatchApplication, DispatchApplication]]:
    first, second = dispatch(env), dispatch(env)
    yield first, second
    first.close()
    second.close()


def scheduled_visit(app: DispatchApplication) -> Visit:
    app.register_elder(elder_id="E-1", name="王秀英", service_area_id=AREA, lat=HOME[0],
                       lon=HOME[1], confirmation_code="1234")
    for caregiver in ("C-1", "C-2"):
        app.register_caregiver(caregiver_id=caregiver, name=f"护理员{caregiver}",
                               kind="employee", service_area_id=AREA, skills=["cleaning"],
                               station_lat=HOME[0], station_lon=HOME[1], provider_id="P-1",
                               certificate_expires=date(2030, 12, 31), shift_start="00:00",
                               shift_end="23:59")
    _, visit = app.place_order(PlaceOrder(elder_id="E-1", service_type=ServiceType.CLEANING,
                                          requested_date=DAY, order_id="O-1",
                                          duration_minutes=15), now=NOW - timedelta(days=2))
    assert visit is not None
    return visit


def test_a_write_by_another_process_is_read_by_one_that_cached_the_visit(
        apps: tuple[DispatchApplication, DispatchApplication]) -> None:
    """The second process cached the visit; after the first checks in, the second reads the
    check-in, refuses a second one by someone else's key as the first would, and checks out on
    top of it (no stale version, no conflict)."""
    first, second = apps
    visit = scheduled_visit(first)
    assert second.get_visit(visit.visit_id).state is VisitState.SCHEDULED  # now cached
    first.check_in(visit.visit_id, at=visit.planned_start, lat=HOME[0], lon=HOME[1],
                   caregiver_id=visit.caregiver_id, idempotency_key="in-1")
    seen = second.get_visit(visit.visit_id)
    assert seen.state is VisitState.CHECKED_IN
    assert seen.checked_in_at == visit.planned_start
    second.check_out(visit.visit_id, at=visit.planned_start + timedelta(minutes=20),
                     lat=HOME[0], lon=HOME[1], tasks_done=[], confirmation_code="1234",
                     caregiver_id=visit.caregiver_id, idempotency_key="out-1")
    assert first.get_visit(visit.visit_id).state is second.get_visit(visit.visit_id).state
    assert first.get_visit(visit.visit_id).version == second.get_visit(visit.visit_id).version


def test_a_visit_cancelled_elsewhere_is_not_checked_in_here(
        apps: tuple[DispatchApplication, DispatchApplication]) -> None:
    """The second process cached the visit before the first cancelled it: its check-in is
    refused as a cancelled visit's, not accepted on the stale copy."""
    first, second = apps
    visit = scheduled_visit(first)
    assert second.owner_of_visit(visit.visit_id) is not None  # cached by the ownership check
    first.cancel_visit(visit.visit_id, reason="elder in hospital", cancelled_by="dispatcher")
    with pytest.raises(DispatchError):
        second.check_in(visit.visit_id, at=visit.planned_start, lat=HOME[0], lon=HOME[1],
                        caregiver_id=visit.caregiver_id)
    assert second.get_visit(visit.visit_id).state is VisitState.CANCELLED


def test_a_command_gets_its_own_copy_of_a_cached_visit(
        apps: tuple[DispatchApplication, DispatchApplication]) -> None:
    """Changing a visit read from the cache without saving it (a command that fails half way)
    leaves what the next reader gets untouched."""
    first, _ = apps
    visit = scheduled_visit(first)
    taken = first.get_visit(visit.visit_id)
    taken.check_in(at=visit.planned_start, lat=HOME[0], lon=HOME[1], method="gps",
                   radius_m=200, accuracy_m=10, max_accuracy_m=100, notes=None,
                   idempotency_key="never-saved")
    assert taken.state is VisitState.CHECKED_IN
    assert first.get_visit(visit.visit_id).state is VisitState.SCHEDULED


def test_an_erased_elder_leaves_no_readable_copy_in_any_process_cache(
        apps: tuple[DispatchApplication, DispatchApplication]) -> None:
    """Visits, areas and elders are cached, alerts (a message sealed with the elder's key)
    never. When one process erases an elder, the other, which had the elder cached with its
    name, drops that copy at its next read: what it reads then, and what either process keeps,
    holds no personal data."""
    first, second = apps
    visit = scheduled_visit(first)
    first.configure_area(AREA, {"geofence_radius_m": 300})
    far = (HOME[0] + 0.05, HOME[1])  # outside the geofence: a location alert is raised
    first.check_in(visit.visit_id, at=visit.planned_start, lat=far[0], lon=far[1],
                   caregiver_id=visit.caregiver_id)
    first.list_alerts(AREA)
    assert second.get_elder("E-1").name == "王秀英"

    def cached(app: DispatchApplication) -> list[object]:
        # eventsourcing's LRU cache keeps links [prev, next, key, aggregate] by key.
        return [link[3] for link in app.repository.cache.cache.values()]

    assert {Visit, ServiceArea, Elder} <= {type(a) for a in cached(first)}
    assert Alert not in {type(a) for a in cached(first)}
    assert any(getattr(a, "name", None) == "王秀英" for a in cached(second))
    first.erase_elder("E-1", by="admin")
    assert second.get_elder("E-1").name == "[erased]"
    assert first.get_elder("E-1").name == "[erased]"
    for app in apps:
        assert not any(getattr(a, "name", None) == "王秀英" for a in cached(app))
