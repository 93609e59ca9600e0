"""`homecare up` (what `make demo` runs) starts from nothing, serves /docs, and the whole path
works over HTTP against it: order -> scheduled -> check-in -> check-out -> verified -> charged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.runtime.broker import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = workdir / "homecare.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMECARE_", "KAFKA_"))}
    env["HOMECARE_LOG_JSON"] = "false"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port)],
        cwd=workdir, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
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
            # uvicorn shuts down gracefully, then re-raises SIGTERM so the status tells it.
            assert process.wait(timeout=30) in (0, -15), log.read_text()[-3000:]
        finally:
            process.kill()
        assert "stopped" in log.read_text(), "the local broker was not stopped on shutdown"
        # The embedded defaults: SQLite event stores under ./var/ of the working directory.
        assert {p.name for p in (Path(workdir) / "var").glob("*.sqlite")} == {
            "dispatch.sqlite", "ledger.sqlite", "timebank.sqlite"}


def logged_in(base: str, user: str) -> httpx.Client:
    """A client of one of the demo users of `homecare up`, logged in as a user would."""
    login = httpx.post(f"{base}/auth/token", data={"username": user, "password": "homecare-demo"})
    assert login.status_code == 200, login.text
    return httpx.Client(base_url=base, timeout=10, headers={
        "authorization": f"Bearer {login.json()['access_token']}"})


def test_docs_and_health_are_served(running_demo):
    """The OpenAPI docs page, the schema, health, readiness and metrics answer."""
    assert "swagger" in httpx.get(f"{running_demo}/docs").text.lower()
    paths = httpx.get(f"{running_demo}/openapi.json").json()["paths"]
    assert "/dispatch/orders" in paths and "/ledger/elders/{elder_id}/balance" in paths
    assert httpx.get(f"{running_demo}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{running_demo}/readyz").json()
    assert ready["ready"] and ready["checks"]["broker"]
    assert "homecare_http_request_seconds" in httpx.get(f"{running_demo}/metrics/").text


def test_whole_path_over_http(running_demo):
    """An order for a demo elder is scheduled (60 minutes held), served for 65 minutes, verified
    and charged to his entitlement: the 60 held minutes are posted, the 5 beyond the hold are
    recorded as unfunded for review, never posted without a second reservation."""
    client = logged_in(running_demo, "dispatcher")
    assert httpx.post(f"{running_demo}/dispatch/orders", json={}).status_code == 401
    elder = client.get("/dispatch/elders/E-1002").json()
    at = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    local = at.astimezone(ZoneInfo("Asia/Shanghai"))
    month = local.strftime("%Y-%m")
    before = client.get("/ledger/elders/E-1002/balance", params={"month": month}).json()
    placed = client.post("/dispatch/orders", json={
        "elder_id": "E-1002", "service_type": "bathing",
        "requested_date": local.date().isoformat()})
    assert placed.status_code == 201, placed.text
    visit = placed.json()["visit"]
    where = {"caregiver_id": visit["caregiver_id"], "lat": elder["lat"], "lon": elder["lon"]}
    assert client.post(f"/dispatch/visits/{visit['visit_id']}/check-in",
                       json={**where, "at": at.isoformat()}).status_code == 200
    out = client.post(f"/dispatch/visits/{visit['visit_id']}/check-out", json={
        **where, "at": (at + timedelta(minutes=65)).isoformat(), "confirmation_code": "7315"})
    assert out.json()["state"] == "verified"
    deadline = time.monotonic() + 30
    while client.get(f"/ledger/visits/{visit['visit_id']}/charge").status_code != 200:
        assert time.monotonic() < deadline, "the ledger never charged the visit"
        time.sleep(0.3)
    after = client.get("/ledger/elders/E-1002/balance", params={"month": month}).json()
    assert after["used_minutes"] - before["used_minutes"] == 60
    charge = client.get(f"/ledger/visits/{visit['visit_id']}/charge").json()
    assert (charge["charged_minutes"], charge["unfunded_minutes"]) == (60, 5)
    assert after["entitled_minutes"] == 480  # 低保 with a qualifying disability: 8 h


def test_bad_input_gets_a_clear_4xx(running_demo):
    """Unknown elders, malformed orders and illegal steps are refused with a reason."""
    client = logged_in(running_demo, "admin")
    r = client.post("/dispatch/orders", json={"elder_id": "E-nobody", "service_type": "cleaning",
                                               "requested_date": "2026-11-25"})
    assert r.status_code == 404 and "E-nobody" in r.json()["detail"]
    r = client.post("/dispatch/orders", json={"elder_id": "E-1001", "service_type": "juggling",
                                               "requested_date": "2026-11-25"})
    assert r.status_code == 422
    r = client.post("/dispatch/visits/V-none/check-in", json={"caregiver_id": "C-201"})
    assert r.status_code == 404
    r = client.get("/ledger/elders/E-1001/balance", params={"month": "2026-13"})
    assert r.status_code == 422 and "2026-11" in r.json()["detail"]
