"""The audit trail along the visit path, on SQLite and PostgreSQL event stores.

A dispatcher's token places an order, the caregiver's token checks in and out (the elder's code
verifies the visit), the ledger's real consumer charges it from the integration events dispatch
publishes (taken from dispatch's own notification log, as its outbox relay would); then the
elder's trail in dispatch and in the ledger names each of them, the ledger's entries with the
integration event that caused them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from psycopg import sql

from services.demo import AREA, SEEDERS
from services.dispatch import api as dispatch_api
from services.dispatch.application import DispatchApplication
from services.ledger import api as ledger_api
from services.ledger.application import LedgerApplication
from services.runtime.audit_api import audit_router
from services.runtime.cipher import cipher_env
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome
from services.runtime.observability import http_metrics_middleware
from services.runtime.settings import SharedSettings
from tests.support.auth import bearer, install_test_auth

pytestmark = pytest.mark.integration

CHECK_IN = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
DAY = CHECK_IN.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
ELDER, CODE = "E-1001", "4821"


def env_for(persistence: dict[str, str], tmp_path: Path, service: str) -> dict[str, str]:
    env = {**persistence, **cipher_env(SharedSettings(data_dir=tmp_path))}
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":  # one file per service
        env["SQLITE_DBNAME"] = str(tmp_path / f"{service}.sqlite")
    else:
        # One schema per service, as deployed (the insert functions are named per schema, so
        # two applications in one schema would write through each other's function).
        env["POSTGRES_SCHEMA"] = schema = f"{persistence['POSTGRES_SCHEMA']}_{service}"
        with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]),
                             user=env["POSTGRES_USER"], dbname=env["POSTGRES_DBNAME"],
                             password=env["POSTGRES_PASSWORD"] or None,
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return env


def http_app(service: str, router: APIRouter, app: Any) -> FastAPI:
    """The service's routes and its audit trail, with the host's request middleware (it gives
    each request its correlation id) and the test key's token check."""
    web = FastAPI()
    web.middleware("http")(http_metrics_middleware())
    web.include_router(router)
    web.include_router(audit_router(service, app))
    return install_test_auth(web)


class Recording:
    async def publish(self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
                      ) -> None:
        raise AssertionError(f"dead-lettered: {headers.get('x-error')}")


@pytest.fixture
def services(persistence: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    dispatch = DispatchApplication(env_for(persistence, tmp_path, "dispatch"))
    ledger = LedgerApplication(env_for(persistence, tmp_path, "ledger"))
    SEEDERS["dispatch"](dispatch)
    SEEDERS["ledger"](ledger)
    yield {"dispatch": dispatch, "ledger": ledger}
    dispatch.close()
    ledger.close()


def relay_to_ledger(dispatch: DispatchApplication, ledger: LedgerApplication) -> list[Any]:
    """Every integration event dispatch has published so far, through the ledger's consumer."""
    consumer = IdempotentConsumer(ledger, "homecare-ledger",
                                  {t: ledger.policy for ts in ledger.subscriptions.values()
                                   for t in ts}, Recording(), backoff_s=0.01)
    offsets = itertools.count()
    sent = []
    for n in dispatch.process_recorder.select_notifications(1, 100_000):
        for event in dispatch.translate(dispatch.mapper.to_domain_event(n)):
            message = ConsumedMessage(topic=event.topic, partition=0, offset=next(offsets),
                                      key=event.key(), value=event.to_bytes())
            outcome = asyncio.run(consumer.consume(message))
            assert outcome in (Outcome.PROCESSED, Outcome.IGNORED, Outcome.UNCHANGED), outcome
            sent.append(event)
    return sent


def test_elders_trail_names_dispatcher_caregiver_and_ledger_consumer_with_its_cause(services):
    """Order placed by dispatcher:wang, visit checked in and out (verified) by caregiver:li, the
    charge made by system:ledger-consumer caused by that VisitVerified; the elder's trail in
    each service says so, oldest first, as JSON and CSV, and the elder may read their own."""
    dispatch, ledger = services["dispatch"], services["ledger"]
    dispatcher = bearer("dispatcher", "wang", service_areas=[AREA])
    with TestClient(http_app("dispatch", dispatch_api.build_router(dispatch), dispatch)) as d:
        placed = d.post("/dispatch/orders", headers=dispatcher, json={
            "elder_id": ELDER, "service_type": "cleaning", "requested_date": DAY})
        assert placed.status_code == 201, placed.text
        visit = placed.json()["visit"]
        caregiver = bearer("caregiver", "li", caregiver_id=visit["caregiver_id"])
        elder = d.get(f"/dispatch/elders/{ELDER}", headers=dispatcher).json()
        where = {"caregiver_id": visit["caregiver_id"], "lat": elder["lat"], "lon": elder["lon"]}
        r = d.post(f"/dispatch/visits/{visit['visit_id']}/check-in", headers=caregiver,
                   json={**where, "at": CHECK_IN.isoformat()})
        assert r.status_code == 200, r.text
        r = d.post(f"/dispatch/visits/{visit['visit_id']}/check-out", headers=caregiver,
                   json={**where, "at": (CHECK_IN + timedelta(minutes=50)).isoformat(),
                         "confirmation_code": CODE, "tasks_done": []})
        assert r.status_code == 200 and r.json()["state"] == "verified", r.text

        trail = d.get(f"/dispatch/elders/{ELDER}/audit", headers=bearer("auditor")).json()
        assert trail["service"] == "dispatch" and trail["elder_id"] == ELDER
        events = trail["events"]
        assert [e["time"] for e in events] == sorted(e["time"] for e in events)
        by = {(e["aggregate_type"], e["event_type"]): e for e in events}
        assert by[("Elder", "Registered")]["actor"] == "system:dispatch"  # seeded at start
        assert "name=(personal)" in by[("Elder", "Registered")]["summary"]
        assert by[("ServiceOrder", "Placed")]["actor"] == "dispatcher:wang"
        assert by[("ServiceOrder", "Placed")]["record_id"] == visit["order_id"]
        assert by[("Visit", "CheckedIn")]["actor"] == "caregiver:li"
        assert by[("Visit", "Verified")]["actor"] == "caregiver:li"
        assert by[("Visit", "Verified")]["record_id"] == visit["visit_id"]
        assert all(e["correlation_id"] for e in events if e["actor"] != "system:dispatch")

        mine = d.get(f"/dispatch/elders/{ELDER}/audit?format=csv",
                     headers=bearer("elder", "e1001", elder_ids=[ELDER]))
        assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(mine.text)))
        assert len(rows) == len(events) and {"dispatcher:wang", "caregiver:li"} <= {
            r["actor"] for r in rows}
        assert "王秀英" not in mine.text
        # Whose trail is whose: another elder, a dispatcher of another area, a caregiver.
        for headers in (bearer("elder", "e1002", elder_ids=["E-1002"]),
                        bearer("dispatcher", "zhao", service_areas=["elsewhere"]),
                        caregiver):
            assert d.get(f"/dispatch/elders/{ELDER}/audit",
                         headers=headers).status_code == 403

    sent = relay_to_ledger(dispatch, ledger)
    (verified,) = [e for e in sent if e.type == "VisitVerified"]
    with TestClient(http_app("ledger", ledger_api.build_router(ledger), ledger)) as lg:
        r = lg.get(f"/ledger/elders/{ELDER}/audit", headers=dispatcher)
        assert r.status_code == 200, r.text
        events = r.json()["events"]
    charged = [e for e in events if e["actor"] == "system:ledger-consumer"
               and e["cause"] == f"VisitVerified:{verified.event_id}"]
    assert {e["aggregate_type"] for e in charged} >= {"Charge", "Reservation", "Transfer"}
    assert any(e["record_id"] == visit["visit_id"] for e in charged)
    scheduled = [e for e in events if (e["cause"] or "").startswith("VisitScheduled:")]
    assert scheduled and all(e["actor"] == "system:ledger-consumer" for e in scheduled)
