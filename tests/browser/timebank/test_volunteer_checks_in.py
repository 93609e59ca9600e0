"""The volunteer page's check-in and check-out against dispatch's real endpoints (both services
served by one uvicorn, as `homecare up` does; no broker: the time bank is handed the
VisitScheduled that dispatch's outbox would publish)."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Tracking
from fastapi import FastAPI

from contracts.values import ServiceType
from services.demo import SEEDERS
from services.dispatch import api as dispatch_api
from services.dispatch.application import DispatchApplication, NotFound, PlaceOrder
from services.dispatch.domain.visits import DispatchError
from services.dispatch.routing.travel import LatLon, haversine_km
from services.runtime.http import install_error_handlers
from services.system import with_pages
from services.timebank import api as timebank_api
from services.timebank.application import TimebankApplication
from tests.browser.conftest import log_in_as
from tests.support.auth import install_test_auth, token

pytestmark = pytest.mark.browser


@dataclass
class Site:
    base_url: str
    dispatch: DispatchApplication
    timebank: TimebankApplication
    visit_id: str
    elder_position: tuple[float, float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("volunteer")

    def env(name: str) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(folder / f"{name}.sqlite"), "SQLITE_LOCK_TIMEOUT": "10"}

    dispatch, timebank = DispatchApplication(env("dispatch")), TimebankApplication(env("tb"))
    SEEDERS["dispatch"](dispatch)
    SEEDERS["timebank"](timebank)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    _, visit = dispatch.place_order(PlaceOrder(elder_id="E-1003",
                                               service_type=ServiceType.WELFARE_CHECK,
                                               requested_date=today))
    assert visit is not None and visit.caregiver_id == "V-301"
    for elder_id in ("E-1002", "E-1001"):  # waiting for the daily plan: open to volunteers
        dispatch.place_order(PlaceOrder(elder_id=elder_id, service_type=ServiceType.SHOPPING,
                                        requested_date=today, await_plan=True))
    positions = itertools.count(1)
    for notification in dispatch.process_recorder.select_notifications(1, 10_000):
        for event in dispatch.translate(dispatch.mapper.to_domain_event(notification)):
            if event.type == "VisitScheduled":
                processing = ProcessingEvent(tracking=Tracking("dispatch", next(positions)))
                timebank.policy(event, processing)
                timebank._record(processing)
    elder = dispatch.get_elder("E-1003")

    http = FastAPI()
    http.include_router(with_pages("dispatch", dispatch, dispatch_api.build_router(dispatch)))
    http.include_router(with_pages("timebank", timebank, timebank_api.build_router(timebank)))
    install_error_handlers(http, not_found=(NotFound,), conflict=(DispatchError,))
    install_test_auth(http)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(http, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Site(f"http://127.0.0.1:{port}", dispatch, timebank, visit.visit_id,
               (elder.lat, elder.lon))
    server.should_exit = True
    thread.join(5)
    dispatch.close()
    timebank.close()


def as_volunteer(page) -> None:  # type: ignore[no-untyped-def]
    """The page logged in as V-301: her time-bank account and, in dispatch, her caregiver id."""
    log_in_as(page, token("volunteer", caregiver_id="V-301", volunteer_id="V-301"))


def test_volunteer_checks_in_and_out_from_the_page(page, site: Site, screenshot_dir):  # type: ignore[no-untyped-def]
    """签到 sends the phone's position to dispatch; 签退 with the elder's code is accepted by
    dispatch's verification; open tasks are read from dispatch when it is served here.

    Logged in as the volunteer: dispatch does not let her read the area's elders (their homes);
    the page sends the phone's position and dispatch answers how far each open task's elder
    lives (rounded, no address), so the open tasks come nearest first with the distance."""
    page.context.grant_permissions(["geolocation"], origin=site.base_url)
    lat, lon = site.elder_position
    page.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 10})
    as_volunteer(page)
    page.goto(f"{site.base_url}/timebank/app/")
    page.wait_for_selector("#tasks form")
    assert "老人 E-1003" in page.locator("#tasks li").first.inner_text()
    page.wait_for_function("document.querySelector('#open-note').textContent.length > 0")
    assert "未连接" not in page.locator("#open-note").inner_text()
    page.wait_for_function("document.querySelectorAll('#open-tasks li').length === 2")
    listed = page.locator("#open-tasks li").all_inner_texts()
    assert "近的在前" in page.locator("#open-note").inner_text()
    here = LatLon(lat, lon)
    nearest_first = sorted(("E-1001", "E-1002"), key=lambda e: haversine_km(
        here, LatLon(site.dispatch.get_elder(e).lat, site.dispatch.get_elder(e).lon)))
    assert [next(e for e in nearest_first if e in text) for text in listed] == nearest_first
    assert all("约 " in text for text in listed), listed
    addresses = [site.dispatch.get_elder(e).address for e in nearest_first]
    assert all(a and a not in " ".join(listed) for a in addresses)  # not on her page

    page.screenshot(path=str(screenshot_dir / "timebank-volunteer-tasks.png"), full_page=True)
    page.click("#tasks [data-act=in]")
    page.wait_for_function("document.querySelector('#message').textContent.includes('签到')")
    assert page.locator("#message").inner_text() == "已签到"
    visit = site.dispatch.get_visit(site.visit_id)
    assert visit.state == "checked_in" and visit.location_verified

    page.uncheck("#tasks [name=task][value=了解需求]")
    page.fill("#tasks [name=code]", "2290")
    page.click("#tasks button[type=submit]")
    page.wait_for_function("document.querySelector('#message').textContent.includes('签退')")
    assert "已签退" in page.locator("#message").inner_text()
    visit = site.dispatch.get_visit(site.visit_id)
    assert visit.state in ("verified", "checked_out") and visit.confirmation == "elder_code"
    assert visit.tasks_done == ["确认安全", "查看居住环境"]  # ticked from dispatch's catalogue


def test_volunteer_takes_an_open_task_from_the_page(page, site: Site):  # type: ignore[no-untyped-def]
    """接单 on an open task asks dispatch to schedule it to this volunteer; it leaves the open
    list and dispatch has the visit on the volunteer's route."""
    as_volunteer(page)
    page.goto(f"{site.base_url}/timebank/app/")
    page.wait_for_function("document.querySelectorAll('#open-tasks li').length === 2")
    order_id = page.locator("#open-tasks button.claim").first.get_attribute("data-order")
    page.locator("#open-tasks button.claim").first.click()
    page.wait_for_function("document.querySelector('#message').textContent.includes('接单')")
    assert "已接单" in page.locator("#message").inner_text()
    page.wait_for_function("document.querySelectorAll('#open-tasks li').length === 1")
    order = site.dispatch.get_order(order_id)
    visit = site.dispatch.get_visit(order.visit_ids[0])
    assert order.state == "scheduled" and visit.caregiver_id == "V-301"
