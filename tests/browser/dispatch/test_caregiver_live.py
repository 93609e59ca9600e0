"""The caregiver page follows the caregiver's own event stream: the dispatcher's changes reach
the phone live, without 立即同步 and well before the 30 s fallback read of the route."""

from __future__ import annotations

import time
from datetime import date

import pytest

from contracts.values import CaregiverKind
from tests.browser.conftest import log_in_as
from tests.browser.dispatch.conftest import STATION, Site, seed_day
from tests.support.auth import token

pytestmark = pytest.mark.browser

LIVE_MS = 10_000  # well under the page's 30 s fallback read of the route


def card(visit_id: str) -> str:
    return f".visit[data-visit-id='{visit_id}']"


def gone_or_cancelled(page, visit_id: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("id => !document.querySelector("
                           "`.visit[data-visit-id='${id}']:not([data-state='cancelled'])`)",
                           arg=visit_id, timeout=LIVE_MS)


def test_a_cancellation_and_a_move_reach_the_caregivers_page_live(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Logged in as the caregiver, the page opens the caregiver's own stream (never the area's,
    which caregivers may not follow); the dispatcher cancels a visit and moves another to a
    colleague, and the page shows both within seconds with no click and no error."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    day = seed_day(site.app, "live")
    area = site.app.get_caregiver(day.caregiver_id).service_area_id
    site.app.register_caregiver(caregiver_id="C-live-2", name="王丽", kind=CaregiverKind.EMPLOYEE,
                                service_area_id=area, skills=["meal", "cleaning", "mobility"],
                                station_lat=STATION[0], station_lon=STATION[1],
                                certificate_expires=date(2099, 12, 31), gender="female")
    log_in_as(page, token("caregiver", caregiver_id=day.caregiver_id))
    page.goto(f"{site.base_url}/dispatch/app/")
    for visit_id in day.visit_ids:
        page.wait_for_selector(card(visit_id))
    own_stream = f"GET /dispatch/caregivers/{day.caregiver_id}/stream"
    deadline = time.monotonic() + 10
    while own_stream not in site.requests:
        assert time.monotonic() < deadline, "the page did not open the caregiver's stream"
        time.sleep(0.05)

    started = time.monotonic()
    site.app.cancel_visit(day.visit_ids[2], reason="老人住院", cancelled_by="dispatcher")
    gone_or_cancelled(page, day.visit_ids[2])

    moved = site.app.get_visit(day.visit_ids[1])
    moved.reschedule(caregiver_id="C-live-2", caregiver_kind=CaregiverKind.EMPLOYEE,
                     provider_id=None, planned_start=moved.planned_start,
                     planned_end=moved.planned_end, reason="moved on the dashboard")
    site.app.save(moved)
    page.wait_for_selector(card(day.visit_ids[1]), state="detached", timeout=LIVE_MS)
    assert time.monotonic() - started < 25  # live, not the 30 s fallback
    assert page.locator(card(day.visit_ids[0])).count() == 1
    assert not any(r.startswith(f"GET /dispatch/areas/{area}/stream") for r in site.requests)
    assert errors == []
