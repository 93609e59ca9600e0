"""From VisitScheduled on the real broker to a month's statement, on PostgreSQL, with duplicated
and reordered events; and the ledger's HTTP API with its 4xx answers."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from datetime import date

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from services.ledger.domain.entitlement import ElderFacts
from services.runtime.broker import LocalBroker
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.support.auth import bearer_for

from .conftest import AREA, cancelled, scheduled, verified

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger_service(tmp_path):
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    dbname = f"homecare_ledger_{uuid.uuid4().hex[:8]}"
    settings = SharedSettings(store="postgres", postgres_dbname=dbname, data_dir=tmp_path,
                              kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
                              consumer_group_prefix=f"lt-{uuid.uuid4().hex[:6]}")
    (unit,) = build_units(["ledger"], settings)
    unit.application.register_elder("E-1", AREA, ElderFacts(birth_date=date(1930, 1, 1)))
    host = Host([unit], settings, bootstrap_servers=broker.bootstrap_servers)
    app = create_http_app(host)
    await host.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                               headers=bearer_for(app))
    try:
        yield client, broker.bootstrap_servers
    finally:
        await client.aclose()
        await host.stop()
        broker.stop()
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def _produce(bootstrap: str, events) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(event.topic, event.to_bytes(), key=event.key())
    finally:
        await producer.stop()


async def _until(probe, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.2)
    return result


async def test_from_scheduled_visits_to_a_closed_months_statement(ledger_service):
    """Schedules (one delivered twice), a cancellation that overtakes its schedule, and
    verifications end in one charge each and a statement with the right money."""
    client, bootstrap = ledger_service
    v1, v2 = scheduled("V1", 60), scheduled("V2", 60)
    await _produce(bootstrap, [v1, v1, cancelled("V3"), scheduled("V3", 60), v2,
                               verified("V1", 50), verified("V1", 50), verified("V2", 30)])

    async def both_charged():
        codes = [(await client.get(f"/ledger/visits/{v}/charge")).status_code
                 for v in ("V1", "V2")]
        return codes == [200, 200]
    await _until(both_charged)
    await asyncio.sleep(0.5)
    balance = (await client.get("/ledger/elders/E-1/balance?month=2026-11")).json()
    assert (balance["used_minutes"], balance["held_minutes"]) == (80, 0)
    assert (await client.get("/ledger/visits/V3/reservation")).status_code == 404

    closed = (await client.post(f"/ledger/areas/{AREA}/months/2026-11/close",
                                json={"reason": "month end", "by": "finance-1"})).json()
    (statement,) = closed["statements"]
    assert (statement["visits"], statement["minutes"], statement["amount_fen"]) == (2, 80, 4000)
    assert closed["lapsed_minutes"] == 240 - 80
    csv = await client.get(f"/ledger/areas/{AREA}/months/2026-11/statements.csv")
    assert csv.status_code == 200 and "V1" in csv.text and "4000" in csv.text
    xlsx = await client.get(f"/ledger/areas/{AREA}/months/2026-11/statements.xlsx")
    assert "xl/worksheets/sheet2.xml" in zipfile.ZipFile(io.BytesIO(xlsx.content)).namelist()
    again = await client.post(f"/ledger/areas/{AREA}/months/2026-11/close",
                              json={"reason": "again", "by": "finance-1"})
    assert again.status_code == 409 and "closed already" in again.json()["detail"]
    assert (await client.get("/ledger/trial-balance")).json()["sum_of_balances"] == 0


async def test_api_answers_bad_input_with_a_reason(ledger_service):
    """Unknown elders 404; malformed months, packages and a repeated rule version 422 with the
    reason; a new rule version changes the entitlement from its effective date."""
    client, _ = ledger_service
    assert (await client.get("/ledger/elders/E-404/balance")).status_code == 404
    r = await client.get("/ledger/elders/E-1/balance?month=2026-13")
    assert r.status_code == 422 and "2026-11" in r.json()["detail"]
    r = await client.post("/ledger/elders/E-1/packages", json={
        "package_id": "P1", "minutes": -5, "price_fen": 100, "expires_on": "2026-12-31",
        "bought_by": "son"})
    assert r.status_code == 422
    version = {"version": "2027", "effective_from": "2027-01-01", "low_minutes": 360,
               "added_by": "bureau"}
    assert (await client.post("/ledger/rules/versions", json=version)).status_code == 201
    assert (await client.post("/ledger/rules/versions", json=version)).status_code == 422
    jan = (await client.get("/ledger/elders/E-1/entitlement?month=2027-01")).json()
    assert (jan["minutes"], jan["rule_set"]) == (360, "yiwu/2027")
