"""The first real path through all three services, on a real tansu broker and real event stores.

POST an order to dispatch -> scheduled to a caregiver -> check-in and check-out over HTTP ->
VisitVerified on Kafka -> the ledger debits the elder's monthly entitlement and credits the
provider (or, for a volunteer, the time bank credits the volunteer) -> the balances show it.
The same tests run with SQLite and with PostgreSQL event stores.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.events.visits import VisitVerified
from services.demo import SEEDERS
from services.runtime.broker import LocalBroker
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.support.auth import bearer_for

pytestmark = pytest.mark.integration

AREA = "yiwu-choucheng"
# Visits happen in the recent past: check-in and check-out times in the future are refused.
CHECK_IN = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
LOCAL = CHECK_IN.astimezone(ZoneInfo("Asia/Shanghai"))
DAY = LOCAL.date().isoformat()
MONTH = LOCAL.strftime("%Y-%m")


@pytest.fixture
def broker(tmp_path) -> AsyncIterator[LocalBroker]:
    """A broker of each test's own, so no other test's messages reach its consumers."""
    local = LocalBroker(log_dir=tmp_path)
    local.start()
    yield local
    local.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def system(request, broker, tmp_path) -> AsyncIterator[dict[str, Any]]:
    dbname = f"homecare_it_{uuid.uuid4().hex[:10]}"
    settings = SharedSettings(
        store=request.param, data_dir=tmp_path, postgres_dbname=dbname,
        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
        consumer_group_prefix=f"it-{uuid.uuid4().hex[:8]}", consumer_retry_backoff_s=0.05,
    )
    units = build_units(["dispatch", "ledger", "timebank"], settings)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings, bootstrap_servers=broker.bootstrap_servers)
    app = create_http_app(host)
    await host.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                               headers=bearer_for(app, "admin"))
    try:
        yield {"client": client, "host": host, "bootstrap": broker.bootstrap_servers,
               "apps": {u.name: u.application for u in units}}
    finally:
        await client.aclose()
        await host.stop()
        if request.param == "postgres":
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                                 autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def eventually(probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until probe() returns something truthy (consumer groups take seconds to join)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def _serve(client: httpx.AsyncClient, elder_id: str, service: str, minutes: int,
                 code: str) -> dict[str, Any]:
    placed = await client.post("/dispatch/orders", json={
        "elder_id": elder_id, "service_type": service, "requested_date": DAY})
    assert placed.status_code == 201, placed.text
    visit = placed.json()["visit"]
    body = {"caregiver_id": visit["caregiver_id"], "lat": 0, "lon": 0}
    elder = (await client.get(f"/dispatch/elders/{elder_id}")).json()
    body.update(lat=elder["lat"], lon=elder["lon"])
    r = await client.post(f"/dispatch/visits/{visit['visit_id']}/check-in",
                          json={**body, "at": CHECK_IN.isoformat()})
    assert r.status_code == 200, r.text
    r = await client.post(f"/dispatch/visits/{visit['visit_id']}/check-out", json={
        **body, "at": (CHECK_IN + timedelta(minutes=minutes)).isoformat(),
        "confirmation_code": code, "tasks_done": []})
    assert r.status_code == 200 and r.json()["state"] == "verified", r.text
    return r.json()


async def test_verified_visit_debits_the_elders_entitlement_and_credits_the_provider(system):
    """An employee's verified 50-minute visit is charged to the elder's monthly entitlement."""
    client = system["client"]
    visit = await _serve(client, "E-1001", "cleaning", 50, "4821")

    async def charged():
        r = await client.get(f"/ledger/visits/{visit['visit_id']}/charge")
        return r.json() if r.status_code == 200 else None

    charge = await eventually(charged)
    assert charge["charged_minutes"] == 50
    assert charge["legs"] == [{"source": "entitlement", "minutes": 50,
                               "account_id": f"elder:E-1001:entitlement:{MONTH}"}]
    balance = (await client.get(f"/ledger/elders/E-1001/balance?month={MONTH}")).json()
    assert (balance["entitled_minutes"], balance["used_minutes"]) == (240, 50)
    assert balance["available_minutes"] == 190
    provider = (await client.get(
        f"/ledger/accounts/provider:{visit['provider_id']}:payable:{AREA}")).json()
    assert provider["balance"] == 50
    assert (await client.get("/ledger/trial-balance")).json()["sum_of_balances"] == 0


async def test_volunteer_visit_earns_time_credits_instead_of_a_charge(system):
    """A welfare check by a volunteer credits the volunteer's time-bank account; the ledger
    charges nothing for it."""
    client = system["client"]
    visit = await _serve(client, "E-1003", "welfare_check", 20, "2290")
    assert visit["caregiver_kind"] == "volunteer"

    async def earned():
        r = await client.get(f"/timebank/visits/{visit['visit_id']}/earning")
        return r.json() if r.status_code == 200 else None

    earning = await eventually(earned)
    assert earning["credited_minutes"] == 20
    account = (await client.get(f"/timebank/accounts/{visit['caregiver_id']}")).json()
    assert account["balance_minutes"] >= 20
    assert (await client.get(f"/ledger/visits/{visit['visit_id']}/charge")).status_code == 404


async def _produce(bootstrap: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait("homecare.visits", value, key=AREA.encode())
    finally:
        await producer.stop()


def _verified_event(visit_id: str, minutes: int) -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": "O-x", "elder_id": "E-1002", "caregiver_id": "C-201",
        "caregiver_kind": "employee", "provider_id": "P-yiwu-anle", "service_type": "bathing",
        "started_at": CHECK_IN, "ended_at": CHECK_IN + timedelta(minutes=minutes),
        "actual_minutes": minutes, "planned_minutes": 60, "confirmation": "elder_code",
        "location_verified": True})


async def test_same_visit_verified_delivered_twice_leaves_one_posting(system):
    """The same VisitVerified published twice on the real topic is charged exactly once."""
    client, ledger = system["client"], system["apps"]["ledger"]
    event = _verified_event(f"V-dup-{uuid.uuid4().hex[:6]}", 45)
    await _produce(system["bootstrap"], event.to_bytes(), event.to_bytes())
    consumer = system["host"].consumers["ledger"]

    async def both_seen():
        inbox_done = event.payload.visit_id and (
            (await client.get(f"/ledger/visits/{event.payload.visit_id}/charge")).status_code
            == 200)
        tracked = ledger.process_recorder.max_tracking_id
        positions = [tracked(f"{consumer.name}:homecare.visits:{p}") or 0 for p in range(6)]
        return inbox_done and sum(positions) >= 2
    await eventually(both_seen)
    await asyncio.sleep(1.0)  # give a wrongful second posting the time to appear
    postings = (await client.get(
        f"/ledger/accounts/elder:E-1002:entitlement:{MONTH}/postings")).json()
    charges = [p for p in postings if p["visit_id"] == event.payload.visit_id]
    assert len(charges) == 1 and charges[0]["amount"] == 45


async def test_malformed_message_lands_in_the_dead_letter_topic_and_the_next_is_processed(system):
    """Garbage on homecare.visits ends in homecare.visits.dlq with its error; the valid event
    right behind it on the same partition is still charged."""
    client = system["client"]
    good = _verified_event(f"V-after-{uuid.uuid4().hex[:6]}", 30)
    poison = b'{"type": "VisitVerified", "schema_version": 1, "payload": "oops"}'
    await _produce(system["bootstrap"], poison, good.to_bytes())

    async def charged():
        return (await client.get(f"/ledger/visits/{good.payload.visit_id}/charge")
                ).status_code == 200
    await eventually(charged)

    dlq = AIOKafkaConsumer("homecare.visits.dlq", bootstrap_servers=system["bootstrap"],
                           auto_offset_reset="earliest", enable_auto_commit=False,
                           group_id=None)
    await dlq.start()
    try:
        found = None
        deadline = asyncio.get_running_loop().time() + 20
        while found is None and asyncio.get_running_loop().time() < deadline:
            batch = await dlq.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value == poison:
                        found = dict(record.headers)
        assert found is not None, "poison message not found in the dead-letter topic"
        assert b"payload" in found["x-error"]
        assert found["x-source-topic"] == b"homecare.visits"
        assert json.loads(poison)  # the original bytes are kept as they were
    finally:
        await dlq.stop()
