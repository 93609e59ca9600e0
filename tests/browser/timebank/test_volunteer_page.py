"""The volunteer page in headless Chromium (390 px wide, zh-CN), served with the time bank's
API and no dispatch: balance, my tasks, history, a gift, a redemption for a parent, a refusal
in words, and no request leaving the site."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
import uvicorn
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Tracking
from fastapi import FastAPI, Request
from playwright.sync_api import expect

from contracts.events.visits import VisitScheduled, VisitVerified
from services.system import with_pages
from services.timebank import api
from services.timebank.application import TimebankApplication
from services.timebank.domain.credits import Redemption
from tests.browser.conftest import log_in_as
from tests.support.auth import install_test_auth, token

pytestmark = pytest.mark.browser

AREA = "yiwu-choucheng"


@dataclass
class Site:
    base_url: str
    app: TimebankApplication
    requests: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(app: TimebankApplication) -> None:
    """V-301 served 90 confirmed minutes and has one welfare check ahead; her mother E-1003
    (born 1950) is a member of the same bank."""
    app.join("V-301", AREA, display_name="周丽")
    app.join("E-1003", AREA, birth_date=date(1950, 1, 20))
    start = datetime.now(UTC) - timedelta(hours=3)
    positions = itertools.count(1)

    def feed(event) -> None:  # type: ignore[no-untyped-def]
        processing = ProcessingEvent(tracking=Tracking("seed", next(positions)))
        app.policy(event, processing)
        app._record(processing)

    feed(VisitVerified(service_area_id=AREA, payload={
        "visit_id": "V-earned", "order_id": "O-1", "elder_id": "E-1001", "caregiver_id": "V-301",
        "caregiver_kind": "volunteer", "service_type": "welfare_check", "started_at": start,
        "ended_at": start + timedelta(minutes=90), "actual_minutes": 90,
        "planned_minutes": 90, "confirmation": "elder_code", "location_verified": True}))
    ahead = datetime.now(UTC) + timedelta(hours=2)
    feed(VisitScheduled(service_area_id=AREA, payload={
        "visit_id": "V-next", "order_id": "O-2", "elder_id": "E-1002", "caregiver_id": "V-301",
        "caregiver_kind": "volunteer", "service_type": "welfare_check", "planned_start": ahead,
        "planned_end": ahead + timedelta(minutes=30), "planned_minutes": 30}))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = tmp_path_factory.mktemp("timebank") / "timebank.sqlite"
    app = TimebankApplication({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                               "SQLITE_DBNAME": str(db), "SQLITE_LOCK_TIMEOUT": "10"})
    _seed(app)
    http = FastAPI()
    http.include_router(with_pages("timebank", app, api.build_router(app)))
    install_test_auth(http)
    port = _free_port()
    served = Site(f"http://127.0.0.1:{port}", app)

    @http.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        served.requests.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    server = uvicorn.Server(uvicorn.Config(http, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield served
    server.should_exit = True
    thread.join(5)
    app.close()


def test_volunteer_sees_balance_tasks_gives_and_redeems(page, site: Site, screenshot_dir):  # type: ignore[no-untyped-def]
    """The whole page on a phone: every number comes from the time bank's books."""
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(site.base_url) else outside.append(r.url))
    log_in_as(page, token("volunteer", caregiver_id="V-301", volunteer_id="V-301"))
    page.goto(f"{site.base_url}/timebank/app/")
    assert page.locator("#who").is_hidden()  # whose page: the log-in says
    assert page.inner_text("#logout") == "退出登录 (test-volunteer)"  # who is logged in
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.wait_for_selector("#main:not([hidden])")
    assert page.locator("#available").inner_text() == "可用 1 小时 30 分钟"
    # The page is shown once the balance is in; tasks and history fill in after it.
    tasks = page.locator("#tasks li")
    expect(tasks).to_have_count(1)
    expect(tasks.first).to_contain_text("探访关爱")
    expect(tasks.first).to_contain_text("待服务")
    expect(page.locator("#open-note")).to_contain_text("未连接")  # no dispatch here: said plainly
    expect(page.locator("#history")).to_contain_text("+1 小时 30 分钟 · 志愿服务获得")

    page.fill("#gift [name=to_person]", "E-1003")
    page.fill("#gift [name=minutes]", "30")
    page.fill("#gift [name=note]", "给妈妈")
    page.click("#gift button")
    page.wait_for_function("document.querySelector('#available').textContent.includes('1 小时 0')")
    assert "已赠送" in page.locator("#message").inner_text()
    assert site.app.balance("E-1003").balance_minutes == 30

    page.fill("#gift [name=minutes]", "500")
    page.click("#gift button")
    page.wait_for_selector("#message.error")
    assert "available" in page.locator("#message").inner_text()  # the rule's own words
    assert site.app.balance("V-301").balance_minutes == 60

    page.fill("#redeem [name=elder_id]", "E-1003")
    page.fill("#redeem [name=minutes]", "45")
    page.click("#redeem button")
    page.wait_for_function("document.querySelector('#message').textContent.includes('已下单')")
    order_id = re.search(r"（(tb-[^）]+)）", page.locator("#message").inner_text()).group(1)
    redemption = site.app.repository.get(Redemption.create_id(order_id.removeprefix("tb-")))
    assert (redemption.elder_id, redemption.minutes, redemption.redeemer_id) == (
        "E-1003", 45, "V-301")
    page.screenshot(path=str(screenshot_dir / "timebank-volunteer.png"), full_page=True)
    assert outside == []
    assert "GET /timebank/app/app.js" in site.requests


def test_unknown_person_is_told_so(page, site: Site):  # type: ignore[no-untyped-def]
    """A mistyped number (staff helping a volunteer: a token naming no account) shows a
    message in Chinese, not a blank page."""
    log_in_as(page, token("admin"))
    page.goto(f"{site.base_url}/timebank/app/")
    page.fill("#person", "nobody")
    page.click("#who button")
    page.wait_for_selector("#message.error")
    assert "没有找到" in page.locator("#message").inner_text()
    assert page.locator("#main").is_hidden()
