"""Over the real broker: a visit scheduled by dispatch is answered by the ledger, and dispatch
shows the answer on the visit (funded, or not funded with an alert)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.demo import SEEDERS
from services.runtime.broker import LocalBroker
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.support.auth import bearer
from tests.support.auth import test_auth as signing_auth

pytestmark = pytest.mark.integration

DAY = "2026-11-16"


@pytest.fixture
async def system(tmp_path) -> AsyncIterator[dict[str, Any]]:
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    settings = SharedSettings(
        store="sqlite", data_dir=tmp_path, kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500, consumer_group_prefix=f"it-{uuid.uuid4().hex[:8]}",
        consumer_retry_backoff_s=0.05)
    units = build_units(["dispatch", "ledger", "timebank"], settings)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings, bootstrap_servers=broker.bootstrap_servers)
    app = create_http_app(host, auth=signing_auth())
    await host.start()
    # The area's dispatcher places the orders and reads the answers.
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                               headers=bearer("dispatcher", service_areas=["yiwu-choucheng"]))
    try:
        yield {"client": client}
    finally:
        await client.aclose()
        await host.stop()
        broker.stop()


async def _funding(client: httpx.AsyncClient, visit_id: str, timeout: float = 40.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        visit = (await client.get(f"/dispatch/visits/{visit_id}")).json()
        if visit["funding"] != "pending":
            return visit
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no funding answer for {visit_id}: {visit}")
        await asyncio.sleep(0.2)


async def test_the_ledgers_answers_show_on_the_visits(system):
    """E-1001 (95, entitled) gets her cleaning funded from the entitlement; E-1004 (70, no
    category, no package, out of pocket not agreed) is not funded and the dispatcher is
    alerted."""
    client = system["client"]
    placed = {}
    for elder in ("E-1001", "E-1004"):
        r = await client.post("/dispatch/orders", json={
            "elder_id": elder, "service_type": "cleaning", "requested_date": DAY})
        assert r.status_code == 201, r.text
        placed[elder] = r.json()["visit"]["visit_id"]
    funded = await _funding(client, placed["E-1001"])
    assert funded["funding"] == "funded"
    assert [leg["source"] for leg in funded["funding_legs"]] == ["entitlement"]
    refused = await _funding(client, placed["E-1004"])
    assert refused["funding"] == "not_funded" and refused["funding_detail"]
    alerts = (await client.get("/dispatch/areas/yiwu-choucheng/alerts?open=true")).json()
    assert [(a["kind"], a["visit_id"]) for a in alerts] == [("not_funded", placed["E-1004"])]
