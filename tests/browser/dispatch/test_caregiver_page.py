"""The caregiver page in headless Chromium: route, check-in online, offline queue, sync, tamper.

The page is logged in as the caregiver (a token naming them, as after the log-in form): it takes
the caregiver id from the token; `sign_in(..., by_form=True)` uses the id form instead, with a
token that names no caregiver (an administrator on the caregiver's phone)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

import httpx
import pytest

from services.dispatch.domain.sync_chain import GENESIS, link, record_hash
from tests.browser.conftest import log_in_as
from tests.browser.dispatch.conftest import TZ, Day, Site, seed_day
from tests.support.auth import bearer, token

pytestmark = pytest.mark.browser

UNCAUGHT: list[str] = []  # script errors of the page: there must be none


@pytest.fixture(autouse=True)
def no_script_errors() -> Iterator[None]:
    UNCAUGHT.clear()
    yield
    assert UNCAUGHT == []


READ_QUEUE = """async () => {
  const db = await new Promise((ok, no) => { const r = indexedDB.open("homecare-caregiver");
    r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  return await new Promise((ok) => { const r = db.transaction("queue").objectStore("queue")
    .getAll(); r.onsuccess = () => ok(r.result); });
}"""


ROUTE_SAVED_BY_WORKER = """async (id) => {
  for (const name of await caches.keys()) {
    const keys = await (await caches.open(name)).keys();
    if (keys.some((k) => k.url.includes(`/caregivers/${id}/route`))) return true;
  }
  return false;
}"""


def sign_in(page, site: Site, day: Day, by_form: bool = False) -> None:  # type: ignore[no-untyped-def]
    page.on("pageerror", lambda error: UNCAUGHT.append(str(error)))
    if by_form:
        log_in_as(page, token("admin"))
        page.goto(f"{site.base_url}/dispatch/app/")
        page.fill("#signin-id", day.caregiver_id)
        page.click("#signin-go")
    else:
        log_in_as(page, token("caregiver", caregiver_id=day.caregiver_id))
        page.goto(f"{site.base_url}/dispatch/app/")
    page.wait_for_selector(f".visit[data-visit-id='{day.visit_ids[-1]}']")


def stand_at(page, home: tuple[str, str, float, float, str]) -> None:  # type: ignore[no-untyped-def]
    page.context.set_geolocation({"latitude": home[2], "longitude": home[3], "accuracy": 15})


def near(at: datetime | None, expected: datetime) -> bool:
    """The device's clock runs on from the time the test sets (seconds on a busy machine), and
    stays an hour or more behind the server's: far from the time of the sync."""
    return at is not None and timedelta(0) <= at - expected < timedelta(seconds=60)


def card(visit_id: str) -> str:
    return f".visit[data-visit-id='{visit_id}']"


def test_route_check_in_offline_queue_reload_and_sync(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """Today's route renders in order (zh-CN, English on demand) and shows the dispatcher's
    changes (立即同步 reads it again; the caregiver's own event stream brings them live, see
    test_caregiver_live); a departure and a check-in online reach the server at
    once; offline, check-out and check-in are queued with the pending indicator showing,
    survive a reload with no network (service worker + IndexedDB), and are applied with their
    original times when the phone is back online; the visit is verified on the server; sending
    them again is harmless."""
    # The phone's clock: an hour ago, so that every step below happened well before the sync;
    # "today" on the page is the area's date by that clock.
    device_start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=60)
    if (device_start + timedelta(minutes=60)).astimezone(TZ).date() != \
            device_start.astimezone(TZ).date():
        # That hour crosses midnight in the area (the page's "today" would change under the
        # test, after 00:00 Asia/Shanghai): play it on the evening before, all in the past.
        evening = datetime.combine(device_start.astimezone(TZ).date(), dt_time(21, 0), TZ)
        device_start = evening.astimezone(UTC)
    day = seed_day(site.app, "route", device_start.astimezone(TZ).date())
    page.context.grant_permissions(["geolocation"], origin=site.base_url)
    stand_at(page, day.homes[0])
    page.clock.set_system_time(device_start)
    sign_in(page, site, day)

    cards = page.locator(".visit")
    assert [cards.nth(i).get_attribute("data-visit-id") for i in range(3)] == day.visit_ids
    assert [cards.nth(i).locator(".elder").inner_text() for i in range(3)] == [
        h[0] for h in day.homes]
    planned = [site.app.get_visit(v).planned_start for v in day.visit_ids]
    assert planned == sorted(planned)
    shown = cards.nth(0).locator(".time").inner_text()  # in the area's local time
    assert shown.startswith(planned[0].astimezone(TZ).strftime("%H:%M")), shown
    assert cards.nth(0).locator("a.geo").get_attribute("href").startswith(
        f"geo:{day.homes[0][2]},{day.homes[0][3]}")
    assert page.locator("#map .map-stop").count() == 3
    page.screenshot(path=str(screenshot_dir / "caregiver-route.png"), full_page=True)
    page.click("#lang")  # English on demand, Chinese first
    assert page.inner_text(f"{card(day.visit_ids[0])} .check-in") == "Check in"
    page.screenshot(path=str(screenshot_dir / "caregiver-route-en.png"))
    page.click("#lang")
    assert page.inner_text(f"{card(day.visit_ids[0])} .check-in") == "签到"

    # The dispatcher cancels the last visit: the route read again shows it cancelled or drops
    # it.
    site.app.cancel_visit(day.visit_ids[2], reason="老人住院", cancelled_by="dispatcher")
    page.click("#sync-now")
    page.wait_for_function("id => !document.querySelector("
                           "`.visit[data-visit-id='${id}']:not([data-state='cancelled'])`)",
                           arg=day.visit_ids[2])

    # Online, on the way and then at the door: straight to the server, nothing left pending.
    first = card(day.visit_ids[0])
    assert page.locator(".visit .depart").count() == 1  # the next visit only
    page.click(f"{first} .depart")
    page.wait_for_selector(f"{first}[data-state='en_route']:not(.is-pending)")
    page.click(f"{first} .check-in")
    page.wait_for_selector(f"{first}[data-state='checked_in']:not(.is-pending)")
    page.wait_for_selector("#pending[data-count='0']")
    v1 = site.app.get_visit(day.visit_ids[0])
    assert v1.state == "checked_in" and v1.location_verified
    assert near(v1.checked_in_at, device_start)
    page.wait_for_function("navigator.serviceWorker.controller !== null")

    # Offline: check out the first visit, check in the second; both wait on the phone.
    page.context.set_offline(True)
    seen = len(site.requests)
    page.clock.set_system_time(device_start + timedelta(minutes=35))
    form = f"{card(day.visit_ids[0])} form.checkout"
    page.fill(f"{form} .code", day.homes[0][4])
    page.fill(f"{form} .notes", "老人精神很好")
    page.click(f"{form} .check-out")
    page.wait_for_selector("#pending[data-count='1']")
    stand_at(page, day.homes[1])
    page.clock.set_system_time(device_start + timedelta(minutes=50))
    page.click(f"{card(day.visit_ids[1])} .check-in")
    page.wait_for_selector("#pending[data-count='2']")
    assert "待同步 2" in page.inner_text("#pending")
    assert page.locator(".visit.is-pending").count() == 2
    assert site.app.get_visit(day.visit_ids[0]).state == "checked_in"
    assert site.app.get_visit(day.visit_ids[1]).state == "scheduled"
    page.screenshot(path=str(screenshot_dir / "caregiver-offline-queued.png"), full_page=True)

    # Reload with no network: the service worker serves the page, IndexedDB the queue and route.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(f"{card(day.visit_ids[0])}[data-state='checked_out'].is-pending")
    assert page.get_attribute("#pending", "data-count") == "2"
    assert page.locator(f"{card(day.visit_ids[1])}[data-state='checked_in']").count() == 1
    # (The live stream's connection may have been opened just before the phone went offline
    # and reach the server a moment later; nothing else may.)
    after = [r for r in site.requests[seen:] if not r.endswith("/stream")]
    assert after == [], "offline page reached the server"
    # The log-in script came from the worker's cache too: the page still sends its token.
    assert page.evaluate("typeof window.homecareAuth?.fetch") == "function"
    assert page.is_visible("#saved")  # "offline: route saved at ..."
    queued = page.evaluate(READ_QUEUE)
    page.screenshot(path=str(screenshot_dir / "caregiver-offline-reloaded.png"), full_page=True)

    # Back online: the queue is sent in order with the original device times.
    page.context.set_offline(False)
    page.wait_for_selector("#pending[data-count='0']")
    v1, v2 = (site.app.get_visit(v) for v in day.visit_ids[:2])
    assert v1.state == "verified", (page.inner_text("#notice"), v1.verification_problems)
    assert near(v1.checked_out_at, device_start + timedelta(minutes=35))
    assert v2.state == "checked_in" and v2.location_verified
    assert near(v2.checked_in_at, device_start + timedelta(minutes=50))
    page.wait_for_selector(f"{card(day.visit_ids[0])}[data-state='verified']")
    page.screenshot(path=str(screenshot_dir / "caregiver-synced.png"), full_page=True)

    # The second elder has no code at hand and signs on the screen instead.
    page.clock.set_system_time(device_start + timedelta(minutes=58))
    second = card(day.visit_ids[1])
    page.fill(f"{second} .code", "12")  # typed, then the page re-renders: the draft stays
    page.evaluate("for (const _ of [1, 2]) document.querySelector('#lang').click()")
    assert page.input_value(f"{second} .code") == "12"
    page.fill(f"{second} .code", "")
    pad = page.locator(f"{second} canvas.signature")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None, "no signature pad"
    page.mouse.move(box["x"] + 20, box["y"] + 60)
    page.mouse.down()
    for x in range(30, 200, 20):
        page.mouse.move(box["x"] + x, box["y"] + 40 + (x % 40))
    page.mouse.up()
    page.click(f"{second} .check-out")
    page.wait_for_selector(f"{second}:not([data-state='checked_in']):not(.is-pending)")
    v2 = site.app.get_visit(day.visit_ids[1])
    assert v2.confirmation == "signature" and v2.signature.startswith("<svg")

    # The same records again (a retry after a lost answer): duplicates, nothing changes.
    batch = {"device_id": "D-retry", "caregiver_id": day.caregiver_id,
             "records": [{k: r[k] for k in ("prev", "payload", "hash")} for r in queued]}
    again = page.evaluate("""async (batch) => (await fetch("/dispatch/sync", {method: "POST",
        headers: {"Content-Type": "application/json",
                  "Authorization": "Bearer " + homecareAuth.token()},
        body: JSON.stringify(batch)})).json()""", batch)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert site.app.get_visit(day.visit_ids[0]).version == v1.version


def test_tampered_queue_record_is_refused(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """A queued check-in edited on the phone (an earlier time) breaks the chain: the server
    refuses the batch with 409 at that record, applies nothing, and the page says so."""
    day = seed_day(site.app, "tamper")
    page.context.grant_permissions(["geolocation"], origin=site.base_url)
    stand_at(page, day.homes[0])
    sign_in(page, site, day, by_form=True)  # the fallback: the caregiver id typed in
    page.context.set_offline(True)
    page.click(f"{card(day.visit_ids[0])} .check-in")
    page.click(f"{card(day.visit_ids[1])} .check-in")
    page.wait_for_selector("#pending[data-count='2']")

    # Someone moves the second check-in an hour earlier, directly in IndexedDB.
    page.evaluate("""async () => {
      const db = await new Promise((ok) => { const r = indexedDB.open("homecare-caregiver");
        r.onsuccess = () => ok(r.result); });
      const store = () => db.transaction("queue", "readwrite").objectStore("queue");
      const all = await new Promise((ok) => {
        const r = store().getAll(); r.onsuccess = () => ok(r.result); });
      const record = all[1];
      const step = JSON.parse(record.payload);
      step.at = new Date(Date.parse(step.at) - 3600e3).toISOString();
      record.payload = JSON.stringify(step);
      await new Promise((ok) => { const r = store().put(record); r.onsuccess = () => ok(); });
    }""")
    # The phone's WebCrypto hash and the server's rule agree, non-ASCII text included.
    payload = '{"note":"王秀英 ✓"}'
    in_page = page.evaluate("""async (payload) => {
      const { GENESIS, sha256hex } = await import("/dispatch/app/queue.js");
      return sha256hex(`${GENESIS}\n${payload}`); }""", payload)
    assert in_page == record_hash(GENESIS, payload)

    page.context.set_offline(False)
    page.click("#sync-now")
    page.wait_for_selector("#blocked:not([hidden])")
    assert "第 2 条" in page.inner_text("#blocked")
    assert page.get_attribute("#pending", "data-count") == "2"
    assert [site.app.get_visit(v).state for v in day.visit_ids[:2]] == ["scheduled", "scheduled"]
    page.screenshot(path=str(screenshot_dir / "caregiver-tampered.png"), full_page=True)


def test_fast_phone_clock_is_flagged_and_its_refused_check_in_kept(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """A phone clock ten minutes ahead: the page warns; the server refuses the check-in as in
    the future; the page keeps the refused record with the reason on the phone (not silently
    dropped) and the visit stays scheduled."""
    day = seed_day(site.app, "skew")
    page.clock.set_system_time(datetime.now(UTC) + timedelta(minutes=10))
    sign_in(page, site, day)
    page.wait_for_selector("#skew:not([hidden])")
    assert "10" in page.inner_text("#skew")
    page.click(f"{card(day.visit_ids[0])} .check-in")
    page.wait_for_selector("#rejected:not([hidden])")
    page.click("#rejected summary")
    assert "future" in page.inner_text("#rejected .rejected-record")
    assert page.get_attribute("#pending", "data-count") == "0"
    assert site.app.get_visit(day.visit_ids[0]).state == "scheduled"
    page.reload()  # kept on the phone
    page.wait_for_selector("#rejected:not([hidden])")


def test_weak_signal_falls_back_to_the_saved_route(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """With a signal too weak to answer (the route takes longer than the service worker waits),
    the page shows the saved route within a few seconds instead of hanging."""
    day = seed_day(site.app, "weak")
    sign_in(page, site, day)
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    deadline = time.monotonic() + 5
    while not page.evaluate(ROUTE_SAVED_BY_WORKER, day.caregiver_id):
        assert time.monotonic() < deadline, "the service worker never saved the route"
        page.wait_for_timeout(100)
    site.route_delay_s = 30  # the network would answer only after this
    try:
        started = time.monotonic()
        page.reload()
        page.wait_for_selector("#saved:not([hidden])", timeout=20_000)
        assert time.monotonic() - started < 20  # the worker waits 4 s; slack for a busy machine
        assert page.locator(".visit").count() == 3
    finally:
        site.route_delay_s = 0


def test_sync_answers_each_record_and_refuses_a_broken_chain(site: Site) -> None:
    """Over HTTP, as a phone would send them: an intact batch is applied in order and each record
    answered (applied, rejected with its reason: another caregiver's visit, a time in the
    future, an unreadable record; a check-out with a long signature applied); a batch with a
    broken link is refused whole with 409 and the index where it broke, nothing of it applied."""
    day = seed_day(site.app, "answers")
    other = seed_day(site.app, "answers-other")
    now = datetime.now(UTC)
    home = day.homes[0]

    def step(visit_id: str, at: datetime, caregiver_id: str = day.caregiver_id) -> str:
        return json.dumps({"kind": "check_in", "visit_id": visit_id, "caregiver_id": caregiver_id,
                           "idempotency_key": f"k-{visit_id}-{at.timestamp()}",
                           "at": at.isoformat(), "lat": home[2], "lon": home[3],
                           "accuracy_m": 12}, ensure_ascii=False)

    signed = json.dumps({
        "kind": "check_out", "visit_id": day.visit_ids[0], "caregiver_id": day.caregiver_id,
        "idempotency_key": "k-signed", "at": (now - timedelta(minutes=1)).isoformat(),
        "lat": home[2], "lon": home[3], "tasks_done": [],
        "signature": "<svg>" + "L1 2" * 8000 + "</svg>"})  # a long signature fits
    payloads = [step(day.visit_ids[0], now - timedelta(minutes=5)),
                step(other.visit_ids[0], now - timedelta(minutes=4)),
                step(day.visit_ids[1], now + timedelta(hours=1)),
                "{not json", signed]
    records, prev = [], GENESIS
    for payload in payloads:
        records.append(link(prev, payload))
        prev = records[-1].hash
    batch = {"device_id": "D-answers", "caregiver_id": day.caregiver_id,
             "records": [vars(r) for r in records]}

    broken = {**batch, "records": [vars(records[0]), vars(records[2])]}
    mine = bearer("caregiver", caregiver_id=day.caregiver_id)
    refused = httpx.post(f"{site.base_url}/dispatch/sync", json=broken, headers=mine)
    assert refused.status_code == 409 and refused.json()["broken_at"] == 1
    assert site.app.get_visit(day.visit_ids[0]).state == "scheduled"

    answers = httpx.post(f"{site.base_url}/dispatch/sync", json=batch,
                         headers=mine).json()["results"]
    assert [a["status"] for a in answers] == [
        "applied", "rejected", "rejected", "rejected", "applied"]
    assert "not assigned" in answers[1]["reason"]
    assert "future" in answers[2]["reason"]
    assert "unreadable" in answers[3]["reason"]
    assert site.app.get_visit(day.visit_ids[0]).confirmation == "signature"
    assert [site.app.get_visit(v).state for v in (other.visit_ids[0], day.visit_ids[1])] == [
        "scheduled", "scheduled"]


def test_the_same_batch_sent_concurrently_is_applied_once(site: Site) -> None:
    """Two tabs or a retry racing the first attempt: every copy is answered 200, and each record
    is applied by exactly one of them; the others see a duplicate."""
    day = seed_day(site.app, "race")
    at = datetime.now(UTC) - timedelta(minutes=10)
    records, prev = [], GENESIS
    for i, visit_id in enumerate(day.visit_ids):
        home = day.homes[i]
        records.append(link(prev, json.dumps({
            "kind": "check_in", "visit_id": visit_id, "caregiver_id": day.caregiver_id,
            "idempotency_key": f"race-{visit_id}", "at": (at + timedelta(minutes=i)).isoformat(),
            "lat": home[2], "lon": home[3]})))
        prev = records[-1].hash
    batch = {"device_id": "D-race", "caregiver_id": day.caregiver_id,
             "records": [vars(r) for r in records]}
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(
            lambda _: httpx.post(f"{site.base_url}/dispatch/sync", json=batch, timeout=30,
                                 headers=bearer("caregiver", caregiver_id=day.caregiver_id)),
            range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    for index in range(3):
        statuses = sorted(r.json()["results"][index]["status"] for r in responses)
        assert statuses == ["applied"] + ["duplicate"] * 7
    assert [site.app.get_visit(v).state for v in day.visit_ids] == ["checked_in"] * 3
