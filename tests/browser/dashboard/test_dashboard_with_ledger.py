"""The dashboard under `homecare up` (dispatch, ledger and time bank in one process, real
broker): the KPIs read from the ledger and the time bank over their HTTP APIs match what those
services answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from services.runtime.broker import free_port
from tests.browser.conftest import log_in_as
from tests.browser.dashboard.conftest import TZ
from tests.support.auth import bearer_for_data_dir

pytestmark = pytest.mark.browser

AREA = "yiwu-choucheng"  # the demo data's area
CODES = {"E-1001": "4821", "E-1002": "7315", "E-1003": "2290"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-up")


def headers(workdir: Path, role: str, **scopes: object) -> dict[str, str]:
    """A token that `homecare up` started in `workdir` accepts (its data directory: ./var)."""
    return bearer_for_data_dir(workdir / "var", role, **scopes)


@pytest.fixture(scope="module")
def system(workdir: Path) -> Iterator[str]:
    port = free_port()
    log = workdir / "homecare.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMECARE_", "KAFKA_"))}
    env["HOMECARE_LOG_JSON"] = "false"
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--port", str(port)],
                               cwd=workdir, env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"homecare up exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"homecare up not ready in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            process.kill()


def _serve_yesterday(client: httpx.Client) -> tuple[str, list[dict]]:
    """Yesterday's orders for three demo elders, planned by the router, all served and
    verified with the elders' codes at the planned times."""
    day = (datetime.now(TZ) - timedelta(days=1)).date()

    def at(hour: int) -> str:
        return datetime(day.year, day.month, day.day, hour, tzinfo=TZ).isoformat()

    # 李桂兰 asks not to be served by the two employees: her meal delivery is the volunteer's
    # whatever the router finds in its short time limit.
    assert client.put("/dispatch/elders/E-1003/preferences", json={
        "excluded_caregiver_ids": ["C-201", "C-202"]}).status_code == 200
    for i, (elder, service, hour) in enumerate([("E-1001", "meal_help", 9),
                                                ("E-1002", "cleaning", 10),
                                                ("E-1003", "meal_delivery", 11),
                                                ("E-1001", "mobility", 13)]):
        assert client.post("/dispatch/orders", json={
            "elder_id": elder, "service_type": service, "requested_date": str(day),
            "order_id": f"KPI-{i}", "window_start": at(hour), "window_end": at(hour + 2),
            "await_plan": True}).status_code == 201
    plan = client.post(f"/dispatch/areas/{AREA}/plans",
                       params={"date": str(day), "time_limit_s": 0.5})
    assert plan.status_code == 201 and not plan.json()["unassigned"], plan.text
    visits = client.get(f"/dispatch/areas/{AREA}/visits", params={"date": str(day)}).json()
    homes = {e["elder_id"]: e for e in client.get(f"/dispatch/areas/{AREA}/elders").json()}
    tasks = {c["service_type"]: c["tasks"]
             for c in client.get(f"/dispatch/areas/{AREA}/catalogue").json()}
    for v in visits:
        home = homes[v["elder_id"]]
        where = {"caregiver_id": v["caregiver_id"], "lat": home["lat"], "lon": home["lon"],
                 "accuracy_m": 10}
        assert client.post(f"/dispatch/visits/{v['visit_id']}/check-in",
                           json={**where, "at": v["planned_start"]}).status_code == 200
        out = client.post(f"/dispatch/visits/{v['visit_id']}/check-out", json={
            **where, "at": v["planned_end"], "tasks_done": tasks[v["service_type"]],
            "confirmation_code": CODES[v["elder_id"]]})
        assert out.status_code == 200 and out.json()["state"] == "verified", out.text
    return str(day), visits


def _settled(client: httpx.Client, visits: list[dict],
             month: str) -> tuple[dict[str, int], dict[str, int], int]:
    """Minutes by funding source from the ledger (the visits'; those of them on the month's
    statements: charged in the month of service) and credits from the time bank, once every
    verified visit has been charged (employees) or credited (volunteers)."""
    deadline = time.monotonic() + 60
    while True:
        by_source: dict[str, int] = defaultdict(int)
        on_statements: dict[str, int] = defaultdict(int)
        credits, missing = 0, 0
        for v in visits:
            if v["caregiver_kind"] == "volunteer":
                r = client.get(f"/timebank/visits/{v['visit_id']}/earning")
                credits += r.json()["credited_minutes"] if r.status_code == 200 else 0
            else:
                r = client.get(f"/ledger/visits/{v['visit_id']}/charge")
                charge = r.json() if r.status_code == 200 else {"legs": []}
                for leg in charge["legs"]:
                    by_source[leg["source"]] += leg["minutes"]
                    if charge["month"] == charge["charged_month"] == month:
                        on_statements[leg["source"]] += leg["minutes"]
            missing += r.status_code != 200
        if not missing:
            return dict(by_source), dict(on_statements), credits
        assert time.monotonic() < deadline, "charges/earnings did not arrive in 60 s"
        time.sleep(0.3)


def test_kpis_read_from_the_ledger_and_the_time_bank(page, system: str, workdir: Path,  # type: ignore[no-untyped-def]
                                                     screenshot_dir) -> None:
    """Served by `homecare up`, the dashboard of a dispatcher of the area shows the hours by
    funding source as the ledger charged them (the day's visits; the month's statements), the
    month's entitlement use and the credits the time bank gave the volunteer: not
    "unavailable" (the dispatcher may read all of them for their own area)."""
    client = httpx.Client(base_url=system, timeout=30, headers=headers(workdir, "admin"))
    day, visits = _serve_yesterday(client)
    assert [v["caregiver_kind"] for v in visits if v["elder_id"] == "E-1003"] == ["volunteer"]
    by_source, on_statements, credits = _settled(client, visits, day[:7])
    assert by_source.get("entitlement") and credits > 0

    page.set_viewport_size({"width": 1440, "height": 900})
    token = headers(workdir, "dispatcher", service_areas=[AREA])["authorization"]
    log_in_as(page, token.removeprefix("Bearer "))
    page.goto(f"{system}/dispatch/dashboard/?area={AREA}&date={day}")
    page.wait_for_function("['kpi-sources-day', 'kpi-sources-month', 'kpi-entitlement',"
                           " 'kpi-credits'].every(id => {"
                           " const e = document.getElementById(id);"
                           " return e && !e.textContent.includes('…'); })")
    def hours(minutes: dict[str, int]) -> str:
        return f"政府补贴 {minutes['entitlement'] / 60:.1f} h" if minutes else "暂无"

    # Auto-retrying: the page refreshes its KPIs now and then, showing "…" while it fetches
    # (read at such a moment under load, a plain read saw "…").
    expect(page.locator("#kpi-sources-day")).to_have_text(hours(by_source))
    expect(page.locator("#kpi-sources-month")).to_have_text(hours(on_statements))
    expect(page.locator("#kpi-credits")).to_have_text(f"{credits} 分钟")
    expect(page.locator("#kpi-entitlement")).not_to_contain_text("不可用")
    assert page.locator("#kpis tr[data-period='today'] .done").inner_text() == (
        f"{len(visits)} / {len(visits)}")
    assert page.locator("#kpis tr[data-period='today'] .on-time").inner_text() == "100%"
    page.screenshot(path=str(screenshot_dir / "dashboard-kpis.png"), full_page=True)
