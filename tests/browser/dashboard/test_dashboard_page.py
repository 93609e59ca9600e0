"""The dispatcher dashboard in headless Chromium: the seeded day drawn (map, timeline,
unassigned lane), a live check-in, drag-and-drop moves applied and refused, an alert
acknowledged, an emergency order from the hotline form, a replanning proposal as a diff."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts.values import ServiceType
from services.dispatch.application import PlaceOrder
from tests.browser.dashboard.conftest import HOMES, TZ, Site, open_dashboard, seed_day

pytestmark = pytest.mark.browser


def test_load_draws_map_timeline_and_unassigned_lane(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """The seeded day loads in zh-CN: one lane per caregiver with a bar per planned visit in
    its own colour and in planned order, each caregiver's route on the projected map, every
    elder's home and the station drawn, the order nobody can serve marked on the map and listed
    with the router's reason; the legend focuses the map on one route; English on the toggle;
    ledger and time-bank KPIs say unavailable when those services do not run in the process."""
    seeded = seed_day(site, "load")
    open_dashboard(page, site, seeded)
    app = site.app
    visits = [v for v in app.list_visits(seeded.area, seeded.day)]
    assert len(visits) == 5

    lanes = page.locator("#gantt .lane[data-caregiver-id]")
    assert sorted(lanes.nth(i).get_attribute("data-caregiver-id") for i in range(3)) == sorted(
        [seeded.carer, seeded.nurse, seeded.volunteer])
    for v in visits:
        bar = page.locator(f".lane[data-caregiver-id='{v.caregiver_id}'] "
                           f".bar.planned[data-visit-id='{v.visit_id}']")
        assert bar.count() == 1, v.visit_id
    # Bars of one lane run left to right in planned order.
    for caregiver_id in {v.caregiver_id for v in visits}:
        mine = [v.visit_id for v in visits if v.caregiver_id == caregiver_id]
        xs = [page.locator(f".bar.planned[data-visit-id='{vid}']").bounding_box()["x"]
              for vid in mine]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)

    routes = page.locator("#map .map-route")
    drawn = {routes.nth(i).get_attribute("data-caregiver-id"): routes.nth(i).get_attribute(
        "stroke") for i in range(routes.count())}
    assert set(drawn) == {v.caregiver_id for v in visits}
    assert len(set(drawn.values())) == len(drawn)  # each route its own colour
    for caregiver_id, colour in drawn.items():  # ... the same as its lane's swatch
        swatch = page.locator(f".lane[data-caregiver-id='{caregiver_id}'] .swatch")
        assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == page.evaluate(
            "c => { const d = document.createElement('div'); d.style.color = c;"
            " document.body.append(d); const r = getComputedStyle(d).color; d.remove();"
            " return r; }", colour)
        stops = len([v for v in visits if v.caregiver_id == caregiver_id])
        points = routes.locator(f"xpath=self::*[@data-caregiver-id='{caregiver_id}']")
        assert len(points.get_attribute("points").split()) == stops + 2  # station .. station
    assert page.locator("#map .map-home").count() == len(HOMES)
    assert page.locator("#map .map-station").count() == 1
    assert page.locator(f"#map .map-unassigned[data-order-id='{seeded.unplaceable_order}']"
                        ).count() == 1
    item = page.locator(f"#unassigned li[data-order-id='{seeded.unplaceable_order}']")
    reason = app.get_order(seeded.unplaceable_order).unassigned_reason
    assert reason and reason in item.inner_text()

    # The legend focuses the map on one caregiver's route.
    page.click(f"#legend [data-caregiver-id='{seeded.carer}']")
    for caregiver_id in drawn:
        route = page.locator(f"#map .map-route[data-caregiver-id='{caregiver_id}']")
        assert ("dim" in route.get_attribute("class")) == (caregiver_id != seeded.carer)
    page.click(f"#legend [data-caregiver-id='{seeded.carer}']")
    assert page.locator("#map .dim").count() == 0

    assert page.inner_text("h1") == "调度台"
    page.wait_for_function("document.querySelector('#kpi-sources').textContent.includes('不可用')")
    assert page.locator("#kpis tr[data-period='today'] .done").inner_text() == "0 / 5"
    page.screenshot(path=str(screenshot_dir / "dashboard-day.png"), full_page=True)
    page.click("#lang")
    assert page.inner_text("h1") == "Dispatch desk"
    # The KPIs are drawn again in the new language and fetched anew ("…" meanwhile).
    page.wait_for_function(
        "document.querySelector('#kpi-credits').textContent.includes('unavailable')")
    page.click("#lang")
    assert page.inner_text("h1") == "调度台"


def test_live_check_in_appears_without_reload(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """A caregiver checks in (on their phone; here straight on the application): the open
    dashboard shows the actual bar and the caregiver's live position at the elder's home over
    server-sent events, without reloading the page."""
    seeded = seed_day(site, "live")
    open_dashboard(page, site, seeded)
    page.evaluate("window.__sameDocument = true")
    first = site.app.list_visits(seeded.area, seeded.day, seeded.carer)[0]
    elder = site.app.get_elder(first.elder_id)
    assert page.locator(f".bar.actual[data-visit-id='{first.visit_id}']").count() == 0
    assert page.locator(f".live-pos[data-caregiver-id='{seeded.carer}']").count() == 0

    site.app.check_in(first.visit_id, at=site.now, lat=elder.lat, lon=elder.lon,
                      caregiver_id=seeded.carer, accuracy_m=10)
    page.wait_for_selector(f".bar.actual[data-visit-id='{first.visit_id}']")
    live = page.locator(f".live-pos[data-caregiver-id='{seeded.carer}'] circle")
    live.wait_for()
    home = page.locator(f".map-home[data-elder-id='{elder.elder_id}']")
    assert (live.get_attribute("cx"), live.get_attribute("cy")) == (
        home.get_attribute("cx"), home.get_attribute("cy"))
    assert page.locator(f".bar.planned[data-visit-id='{first.visit_id}']").get_attribute(
        "data-state") == "checked_in"
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    page.screenshot(path=str(screenshot_dir / "dashboard-live-check-in.png"), full_page=True)


def _drop_x(page, minute: int) -> float:  # type: ignore[no-untyped-def]
    """The x offset inside a lane's track where ``minute`` (since local midnight) lies."""
    gantt = page.locator("#gantt")
    start, end = int(gantt.get_attribute("data-start")), int(gantt.get_attribute("data-end"))
    width = page.locator("#gantt .lane[data-caregiver-id] .track").first.bounding_box()["width"]
    return (minute - start) / (end - start) * width


def _at(day, minute: int) -> datetime:  # type: ignore[no-untyped-def]
    return datetime.combine(day, datetime.min.time(), TZ) + timedelta(minutes=minute)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _free_slot(site: Site, area: str, caregiver_id: str, minutes: int) -> int:
    """A start (minutes since local midnight) in the caregiver's day with room around it
    (travel, and a later nudge of 15 min), wherever the router put their visits."""
    day = site.now.date()
    busy = [(v.planned_start, v.planned_end)
            for v in site.app.list_visits(area, day, caregiver_id) if v.state != "cancelled"]
    for minute in range(9 * 60, 15 * 60 + 1, 15):
        lo, hi = _at(day, minute - 30), _at(day, minute + minutes + 45)
        if hi <= _at(day, 17 * 60) and all(end <= lo or start >= hi for start, end in busy):
            return minute
    raise AssertionError(f"no free slot for {caregiver_id}: {busy}")


# Grab a bar 2 px inside its padding box: 4 px from its outer edge (2 px border); dropping at
# a minute's x + GRAB_FROM_EDGE puts the bar's start on that minute.
GRAB = {"x": 2, "y": 8}
GRAB_FROM_EDGE = 4


def test_drag_and_drop_move_applied_and_one_refused(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Dragging the nursing visit onto the carer (no nursing skill) is refused with the
    checker's reason and changes nothing; dragging a cleaning visit to the other employee at a
    free time is applied as a reschedule and redrawn in that lane; its details panel
    then moves it 15 min later by keyboard."""
    seeded = seed_day(site, "drag")
    open_dashboard(page, site, seeded)
    app = site.app
    nursing = app.get_visit(seeded.visits["O-drag-3"])
    assert nursing.caregiver_id == seeded.nurse
    before = (nursing.caregiver_id, nursing.planned_start)
    bar = page.locator(f".bar.planned[data-visit-id='{nursing.visit_id}']")
    carer_track = page.locator(f".lane[data-caregiver-id='{seeded.carer}'] .track")
    loads = page.evaluate("Number(document.body.dataset.loaded)")
    bar.drag_to(carer_track, source_position=GRAB,
                target_position={"x": _drop_x(page, 14 * 60) + GRAB_FROM_EDGE, "y": 14})
    page.wait_for_selector("#toast.error")
    page.wait_for_function(f"Number(document.body.dataset.loaded) > {loads}")  # redrawn
    assert "skill" in page.inner_text("#toast")
    after = app.get_visit(nursing.visit_id)
    assert (after.caregiver_id, after.planned_start) == before

    cleaning = next(app.get_visit(seeded.visits[o]) for o in ("O-drag-1", "O-drag-4"))
    other = seeded.nurse if cleaning.caregiver_id == seeded.carer else seeded.carer
    slot = _free_slot(site, seeded.area, other, cleaning.planned_minutes)
    bar = page.locator(f".bar.planned[data-visit-id='{cleaning.visit_id}']")
    track = page.locator(f".lane[data-caregiver-id='{other}'] .track")
    bar.drag_to(track, source_position=GRAB,
                target_position={"x": _drop_x(page, slot) + GRAB_FROM_EDGE, "y": 14})
    page.wait_for_selector("#toast.ok, #toast.error")
    assert page.locator("#toast.ok").count() == 1, page.inner_text("#toast")
    page.wait_for_selector(f".lane[data-caregiver-id='{other}'] "
                           f".bar.planned[data-visit-id='{cleaning.visit_id}']")
    moved = app.get_visit(cleaning.visit_id)
    assert moved.caregiver_id == other
    assert moved.planned_start == _at(seeded.day, slot)
    assert moved.planned_minutes == cleaning.planned_minutes

    # Without dragging: the visit's details panel moves it to an exact time.
    page.click(f".bar.planned[data-visit-id='{cleaning.visit_id}']")
    panel = page.locator(f"#visit-panel[data-visit-id='{cleaning.visit_id}']")
    panel.wait_for()
    elder = app.get_elder(cleaning.elder_id)
    assert elder.name in panel.locator("dd[data-field='elder']").inner_text()
    assert panel.locator("dd[data-field='plannedTime']").inner_text().startswith(_hhmm(slot))
    page.fill("#move-time", _hhmm(slot + 15))
    page.click("#move-go")
    # A redraw from an earlier event may land first: wait for the one showing the move.
    page.wait_for_function("t => document.querySelector(\"#visit-panel dd[data-field="
                           "'plannedTime']\").textContent.startsWith(t)", arg=_hhmm(slot + 15))
    again = app.get_visit(cleaning.visit_id)
    assert (again.caregiver_id, again.planned_start) == (other, _at(seeded.day, slot + 15))


def test_alert_acknowledged(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """A check-in far from the elder's home raises "location not verified": it appears in the
    alerts panel live; acknowledging it records the logged-in dispatcher (the token's caller)
    and moves it to the handled list."""
    seeded = seed_day(site, "alert")
    open_dashboard(page, site, seeded)
    visit = site.app.list_visits(seeded.area, seeded.day, seeded.nurse)[0]
    elder = site.app.get_elder(visit.elder_id)
    site.app.check_in(visit.visit_id, at=site.now, lat=elder.lat + 0.02, lon=elder.lon,
                      caregiver_id=seeded.nurse, accuracy_m=10)
    alert_id = f"location_not_verified:{visit.visit_id}/in"
    item = page.locator(f"#alerts li[data-alert-id='{alert_id}']")
    item.wait_for()
    assert "位置未核验" in item.inner_text()
    page.screenshot(path=str(screenshot_dir / "dashboard-alerts.png"), full_page=True)
    item.locator(".ack").click()
    page.wait_for_selector(f"#alerts-done li[data-alert-id='{alert_id}']", state="attached")
    assert item.count() == 0
    assert site.app.get_alert(alert_id).acknowledged_by == "dispatcher:test-dispatcher"


def test_emergency_order_placed_and_inserted(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """The hotline form finds the elder by name, takes an emergency order and the router
    inserts it into an employee's route at once: the bar appears (marked as an emergency) and
    the emergency alert is announced in the panel."""
    seeded = seed_day(site, "sos")
    open_dashboard(page, site, seeded)
    page.fill("#elder-search", "吴翠")
    page.click(f"#elder-matches li[data-elder-id='{seeded.elders[4]}']")
    page.select_option("#service", "emergency")
    page.check("#emergency")
    page.click("#place-order")
    result = page.locator("#order-result[data-order-id]")
    result.wait_for()
    order = site.app.get_order(result.get_attribute("data-order-id"))
    assert order.emergency and order.elder_id == seeded.elders[4] and order.visit_ids
    visit = site.app.get_visit(order.visit_ids[-1])
    assert visit.caregiver_id in (seeded.carer, seeded.nurse)
    assert visit.planned_start - site.now < timedelta(hours=2)
    page.wait_for_selector(f".lane[data-caregiver-id='{visit.caregiver_id}'] "
                           f".bar.planned.emergency[data-visit-id='{visit.visit_id}']")
    page.wait_for_selector("#alerts li[data-kind='emergency']")
    assert visit.planned_start.astimezone(TZ).strftime("%H:%M") in result.inner_text()
    page.screenshot(path=str(screenshot_dir / "dashboard-emergency-order.png"), full_page=True)


def test_replan_proposal_shown_as_diff_then_accepted(page, site: Site, screenshot_dir) -> None:  # type: ignore[no-untyped-def]
    """The nurse reports sick: the replanning proposal appears as a diff (old caregiver and
    time struck through, new ones, visits that cannot be placed with the reason) and accepting
    it applies the moves."""
    seeded = seed_day(site, "sick")
    open_dashboard(page, site, seeded)
    proposal = site.app.report_sick(seeded.nurse, at=site.now, reason="发烧")
    assert proposal.state == "proposed"
    box = page.locator(f"#proposal[data-proposal-id='{proposal.proposal_id}']")
    box.wait_for()
    assert box.locator("tr.move").count() == len(proposal.moves)
    assert box.locator("tr.left").count() == len(proposal.unassigned)
    assert proposal.unassigned  # nobody else can do the nursing visit
    assert proposal.unassigned[0]["reason"] in box.inner_text()
    page.screenshot(path=str(screenshot_dir / "dashboard-replan-proposal.png"), full_page=True)
    page.click("#proposal-accept")
    page.wait_for_selector("#proposal-panel", state="hidden")
    assert site.app.get_proposal(proposal.proposal_id).state == "accepted"
    for move in proposal.moves:
        assert site.app.get_visit(move["visit_id"]).caregiver_id == move["caregiver_id"]


def test_plan_the_day_and_replan_from_now_buttons(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Orders waiting for the daily plan sit in the unassigned lane; "plan the day" runs the
    router (progress shown) and their visits appear in the lanes; "replan from now" produces a
    proposal shown for a decision, and rejecting it leaves the day as it was."""
    seeded = seed_day(site, "buttons")
    app = site.app
    for i, home in enumerate((1, 2)):
        app.place_order(PlaceOrder(elder_id=seeded.elders[home], service_type=ServiceType.CLEANING,
                                   requested_date=seeded.day, order_id=f"O-buttons-new-{i}",
                                   await_plan=True))
    open_dashboard(page, site, seeded)
    waiting = page.locator("#unassigned li[data-order-id^='O-buttons-new-']")
    assert waiting.count() == 2 and "待排班" in waiting.first.inner_text()
    # The progress indicator may show for a moment only: record it when it does.
    page.evaluate("""() => { window.__progressShown = false;
      const progress = document.getElementById('progress');
      new MutationObserver(() => { if (!progress.hidden) window.__progressShown = true; })
        .observe(progress, { attributes: true }); }""")
    page.click("#plan-day")
    page.wait_for_selector("#toast.ok")
    assert page.evaluate("window.__progressShown") is True
    for i in range(2):
        order = app.get_order(f"O-buttons-new-{i}")
        assert order.visit_ids, order.state
        page.wait_for_selector(f".lane[data-caregiver-id] .bar.planned"
                               f"[data-visit-id='{order.visit_ids[-1]}']")
    assert page.locator("#unassigned li[data-order-id^='O-buttons-new-']").count() == 0

    before = {v.visit_id: (v.caregiver_id, v.planned_start)
              for v in app.list_visits(seeded.area, seeded.day)}
    page.click("#replan")
    box = page.locator("#proposal[data-proposal-id]")
    box.wait_for()
    proposal = app.get_proposal(box.get_attribute("data-proposal-id"))
    assert proposal.state == "proposed" and proposal.service_area_id == seeded.area
    page.click("#proposal-reject")
    page.wait_for_selector("#proposal-panel", state="hidden")
    assert app.get_proposal(proposal.proposal_id).state == "rejected"
    assert {v.visit_id: (v.caregiver_id, v.planned_start)
            for v in app.list_visits(seeded.area, seeded.day)} == before


def test_tiles_drawn_under_the_map_when_a_tile_url_is_configured(page, site: Site,
                                                                 monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With HOMECARE_DASHBOARD_TILE_URL the map lays tiles of its zoom under the routes (the
    {z}/{x}/{y} of the configured URL filled in); without it, no tile is requested."""
    seeded = seed_day(site, "tiles")
    open_dashboard(page, site, seeded)
    assert page.locator("#map .map-tiles image").count() == 0
    monkeypatch.setenv("HOMECARE_DASHBOARD_TILE_URL", "/tiles/{z}/{x}/{y}.png")
    page.reload()
    page.wait_for_selector("#gantt .bar.planned")
    tiles = page.locator("#map .map-tiles image")
    assert tiles.count() >= 1
    zoom = page.locator("#map").get_attribute("data-zoom")
    href = tiles.first.get_attribute("href")
    assert href.startswith(f"/tiles/{zoom}/") and href.endswith(".png")
    assert page.locator("#map .map-route").count() >= 1
