"""Erasure reaches every service (issue #8): dispatch erases an elder, ElderErased goes over a
real tansu broker, the ledger and the time bank shred their own key of the elder.

The whole system (three services, one host, demo data) on SQLite and on PostgreSQL. The elder
王秀英 (E-1001) has a charged visit in the ledger, entitlement facts there, and a time-bank
membership with her name and birth date. After the erasure no store shows her name or facts,
neither through the applications nor in the stored events opened with the store key (what an
operator holding that key could read) nor in the raw files and tables; the ledger's totals are
what they were and sum to zero.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from services.demo import SEEDERS
from services.ledger.domain.books import ERASED_FACTS
from services.runtime.broker import LocalBroker
from services.runtime.eventstore import ServiceApplication
from services.runtime.host import Host, create_http_app
from services.runtime.personal import ERASED
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.integration.test_visit_path import AREA, DAY, MONTH, _serve, eventually
from tests.support.auth import bearer_for

pytestmark = pytest.mark.integration

ELDER, NAME, CODE = "E-1001", "王秀英", "4821"
# What must not be readable anywhere once she is erased: her name, address, birth date.
SECRETS = [NAME, "绣湖社区 12幢 201", "1931-03-02"]
OTHER = "陈国强"  # another elder, who stays readable


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    local = LocalBroker(log_dir=tmp_path / "broker")
    local.start()
    yield local
    local.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def system(request: pytest.FixtureRequest, broker: LocalBroker,
                 tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
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
        yield {"client": client, "store": request.param, "dbname": dbname, "dir": tmp_path,
               "apps": {u.name: u.application for u in units}}
    finally:
        await client.aclose()
        await host.stop()
        if request.param == "postgres":
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                                 autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def opened_with_store_key(app: ServiceApplication) -> str:
    """Every stored event of the service, decrypted and decompressed with the event-store key
    only (not the per-person keys): the text someone holding that key could read."""
    mapper = app.mapper
    texts = []
    for n in app.recorder.select_notifications(start=1, limit=1_000_000):
        state = n.state
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        texts.append(state.decode("utf-8"))
    return "\n".join(json.dumps(json.loads(t), ensure_ascii=False) for t in texts)


def raw_store(system: dict[str, Any]) -> bytes:
    """The bytes on disk (SQLite files and logs) or every row of every table (PostgreSQL)."""
    if system["store"] == "sqlite":
        return b"".join(p.read_bytes() for p in Path(system["dir"]).glob("*.sqlite*"))
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={system['dbname']}") as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_schema IN ('dispatch', 'ledger', 'timebank')").fetchall()
        assert len(tables) >= 6, tables
        return "\n".join(str(row[0]) for schema, table in tables for row in conn.execute(
            f'SELECT t::text FROM "{schema}"."{table}" AS t')).encode("utf-8")


async def test_erasing_an_elder_in_dispatch_shreds_her_in_the_ledger_and_time_bank(system):
    """E-1001 has a charged visit and a time-bank membership. POST /dispatch/elders/E-1001/
    erasure -> ElderErased over the broker -> ledger and time bank record Erased and delete their
    key of her. Then: dispatch, ledger and time bank read her as "[erased]" (API and apps); no
    stored event of any service, opened with the store key, nor any raw file or table holds her
    name, address or birth date, while before the erasure the apps read them and another elder
    stays readable; balance, statement, trial balance (zero) unchanged; the month still closes;
    a new order for her is refused with 409."""
    client, apps = system["client"], system["apps"]
    dispatch, ledger, timebank = apps["dispatch"], apps["ledger"], apps["timebank"]
    visit = await _serve(client, ELDER, "cleaning", 50, CODE)

    async def charged() -> Any:
        r = await client.get(f"/ledger/visits/{visit['visit_id']}/charge")
        return r.status_code == 200

    await eventually(charged)
    assert timebank.member(ELDER).display_name == NAME
    assert ledger.get_profile(ELDER).elder_facts().birth_date.isoformat() == "1931-03-02"
    for app in (dispatch, ledger, timebank):  # sealed per person, even under the store key
        text = opened_with_store_key(app)
        assert ELDER in text and all(secret not in text for secret in SECRETS), app.name
    balance = (await client.get(f"/ledger/elders/{ELDER}/balance?month={MONTH}")).json()
    assert balance["used_minutes"] == 50
    trial = (await client.get("/ledger/trial-balance")).json()
    statements = (await client.get(f"/ledger/areas/{AREA}/months/{MONTH}/statements")).json()

    r = await client.post(f"/dispatch/elders/{ELDER}/erasure", json={})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == ERASED

    async def shredded_everywhere() -> bool:
        return (ledger.get_profile(ELDER).erased_at is not None
                and timebank.member(ELDER).erased)

    await eventually(shredded_everywhere)
    assert f"elder:{ELDER}" not in dispatch.subject_keys.subjects()
    assert f"elder:{ELDER}" not in ledger.subject_keys.subjects()
    assert f"person:{ELDER}" not in timebank.subject_keys.subjects()

    # Through the services: nothing but ids and "[erased]".
    elder = (await client.get(f"/dispatch/elders/{ELDER}")).json()
    assert elder["name"] == ERASED and elder["erased"] is True
    assert ledger.get_profile(ELDER).facts == ERASED_FACTS
    member = timebank.member(ELDER)
    assert (member.display_name, member.birth_date, member.hardship) == (ERASED, None, False)
    after = (await client.get(f"/ledger/elders/{ELDER}/balance?month={MONTH}")).json()
    assert {k: after[k] for k in ("entitled_minutes", "used_minutes", "available_minutes")} == {
        k: balance[k] for k in ("entitled_minutes", "used_minutes", "available_minutes")}
    assert after["entitlement_reason"] == ERASED
    assert (await client.get(f"/ledger/areas/{AREA}/months/{MONTH}/statements")).json() \
        == statements
    assert (await client.get("/ledger/trial-balance")).json() == trial
    assert trial["sum_of_balances"] == 0

    # In the stores: not in any event opened with the store key, not in the raw bytes.
    for app in (dispatch, ledger, timebank):
        text = opened_with_store_key(app)
        assert all(secret not in text for secret in SECRETS), app.name
    raw = raw_store(system)
    for secret in SECRETS:
        assert secret.encode("utf-8") not in raw and secret.encode("utf-8").hex() not in \
            raw.decode("utf-8", "replace"), secret
    assert dispatch.get_elder("E-1002").name == OTHER  # the others are untouched
    assert timebank.member("E-1002").display_name == OTHER

    # She asked to be forgotten: no new orders; the month still closes with her charge in it.
    refused = await client.post("/dispatch/orders", json={
        "elder_id": ELDER, "service_type": "cleaning", "requested_date": DAY})
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]
    closed = await client.post(f"/ledger/areas/{AREA}/months/{MONTH}/close",
                               json={"reason": "month end"})
    assert closed.status_code == 200, closed.text
    assert (await client.get("/ledger/trial-balance")).json()["sum_of_balances"] == 0
