"""Issue 6's end-to-end "Show" over a real broker (tansu) with dispatch, ledger and time bank:
a volunteer serves and earns, gives credits to a parent who belongs to another district's bank,
the parent redeems them for care, a paid caregiver serves, the reserve pays, clearing settles.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.demo import SEEDERS
from services.runtime.broker import LocalBroker
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.support.auth import bearer_for

pytestmark = pytest.mark.integration

AREA = "yiwu-choucheng"  # the volunteer's district and bank
OTHER_BANK = "yiwu-beiyuan"  # the parent is a member of this district's bank


@pytest.fixture
async def system(tmp_path) -> AsyncIterator[dict[str, Any]]:
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    settings = SharedSettings(
        store="sqlite", data_dir=tmp_path, kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500, consumer_group_prefix=f"tb-{uuid.uuid4().hex[:8]}",
        consumer_retry_backoff_s=0.05)
    units = build_units(["dispatch", "ledger", "timebank"], settings)
    apps = {u.name: u.application for u in units}
    SEEDERS["dispatch"](apps["dispatch"])
    SEEDERS["ledger"](apps["ledger"])
    host = Host(units, settings, bootstrap_servers=broker.bootstrap_servers)
    await host.start()
    app = create_http_app(host)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                               headers=bearer_for(app))
    try:
        yield {"client": client, "apps": apps}
    finally:
        await client.aclose()
        await host.stop()
        broker.stop()


async def eventually(probe: Callable[[], Any], timeout: float = 40.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def _check_in_and_out(client: httpx.AsyncClient, visit: dict[str, Any], minutes: int,
                            code: str, task: str) -> dict[str, Any]:
    elder = (await client.get(f"/dispatch/elders/{visit['elder_id']}")).json()
    body = {"caregiver_id": visit["caregiver_id"], "lat": elder["lat"], "lon": elder["lon"]}
    out_at = datetime.now(UTC) - timedelta(seconds=5)
    r = await client.post(f"/dispatch/visits/{visit['visit_id']}/check-in", json={
        **body, "at": (out_at - timedelta(minutes=minutes)).isoformat()})
    assert r.status_code == 200, r.text
    r = await client.post(f"/dispatch/visits/{visit['visit_id']}/check-out", json={
        **body, "at": out_at.isoformat(), "confirmation_code": code, "tasks_done": [task]})
    assert r.status_code == 200 and r.json()["state"] == "verified", r.text
    return r.json()


async def _json_when(client: httpx.AsyncClient, url: str,
                     ok: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    async def probe():
        r = await client.get(url)
        return r.json() if r.status_code == 200 and ok(r.json()) else None
    return await eventually(probe)


async def test_volunteer_earns_gives_parent_redeems_reserve_pays_clearing_settles(system):
    """The whole time-bank story, every step over Kafka between the three services."""
    client, timebank = system["client"], system["apps"]["timebank"]
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    timebank.join("V-301", AREA)
    timebank.join("E-1004", OTHER_BANK, birth_date=date(1956, 11, 1))  # 70: may redeem

    # 1. The volunteer keeps an elder company for 80 minutes, confirmed with the elder's code.
    placed = await client.post("/dispatch/orders", json={
        "elder_id": "E-1003", "service_type": "companionship", "requested_date": today})
    assert placed.status_code == 201, placed.text
    visit = placed.json()["visit"]
    assert visit["caregiver_id"] == "V-301"
    await _check_in_and_out(client, visit, 80, "2290", "聊天陪伴")
    earning = await _json_when(client, f"/timebank/visits/{visit['visit_id']}/earning")
    assert earning["credited_minutes"] == 80

    # 2. She gives 70 minutes to E-1004, a member of another district's bank.
    r = await client.post("/timebank/gifts", json={
        "from_person": "V-301", "to_person": "E-1004", "minutes": 70, "note": "给妈妈"})
    assert r.status_code == 201, r.text
    assert r.json()["to_account_id"] == f"member:{OTHER_BANK}:E-1004"

    # 3. The reserve is funded; the parent redeems 60 minutes of cleaning in her area.
    assert (await client.post(f"/timebank/banks/{AREA}/grants",
                              json={"minutes": 600, "reference": "city-2026"})).status_code == 201
    r = await client.post("/timebank/redemptions", json={
        "redeemer_id": "E-1004", "elder_id": "E-1004", "service_type": "cleaning",
        "minutes": 60, "requested_date": today, "service_area_id": AREA})
    assert r.status_code == 201, r.text
    order = await _json_when(client, f"/dispatch/orders/{r.json()['order_id']}",
                             lambda o: bool(o["visit_ids"]))
    paid_visit = (await client.get(f"/dispatch/visits/{order['visit_ids'][0]}")).json()
    assert paid_visit["caregiver_kind"] == "employee"

    # 4. The ledger asked for the credits (entitlement 0 h); the time bank held 60; the ledger
    #    completed the reservation and dispatch shows the visit funded.
    hold = await _json_when(client, f"/timebank/visits/{paid_visit['visit_id']}/hold")
    assert (hold["held_minutes"], hold["state"]) == (60, "held")
    assert (await client.get("/timebank/accounts/E-1004")).json()["available_minutes"] == 10
    funded = await _json_when(client, f"/dispatch/visits/{paid_visit['visit_id']}",
                              lambda v: v["funding"] == "funded")  # HoursReserved reached it
    assert {leg["source"]: leg["minutes"] for leg in funded["funding_legs"]} == {
        "time_credits": 60}

    # 5. A paid caregiver serves 50 minutes; the ledger charges the credits leg; the time bank
    #    redeems 50, releases 10; the reserve pays the provider.
    await _check_in_and_out(client, paid_visit, 50, "9043", "扫地拖地")
    hold = await _json_when(client, f"/timebank/visits/{paid_visit['visit_id']}/hold",
                            lambda h: h["state"] == "redeemed")
    assert (hold["redeemed_minutes"], hold["released_minutes"]) == (50, 10)
    charge = (await client.get(f"/ledger/visits/{paid_visit['visit_id']}/charge")).json()
    assert {leg["source"]: leg["minutes"] for leg in charge["legs"]}.get("time_credits") == 50
    parent = (await client.get("/timebank/accounts/E-1004")).json()
    assert (parent["balance_minutes"], parent["held_minutes"]) == (20, 0)
    liability = (await client.get(f"/timebank/banks/{AREA}/liability")).json()
    assert liability["reserve_minutes"] == 550 and liability["reserve_paid_last_30d"] == 50

    # 6. Clearing: choucheng owed beiyuan 70 (the gift), beiyuan owed choucheng 50 (the care):
    #    one settlement of 20, positions back to zero, no credit created or lost.
    settled = (await client.post("/timebank/federation/clearing",
                                 json={"period": today[:7]})).json()
    assert settled == [{"period": today[:7], "payer_bank_id": AREA,
                        "payee_bank_id": OTHER_BANK, "minutes": 20}]
    positions = (await client.get("/timebank/federation/positions")).json()
    assert positions and all(p["posted_minutes"] == 0 for p in positions)
    totals = (await client.get("/timebank/totals")).json()
    assert sum(totals["credits_by_bank"].values()) == 80 + 600  # earned + granted
    assert totals["sum_of_balances"] == 0
