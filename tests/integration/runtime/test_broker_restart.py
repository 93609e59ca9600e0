"""A running host whose memory-only broker is killed -9 and started again EMPTY under it.

The host follows the broker's log by its cluster id (services/runtime/host.py): it notices the
new log, creates the topics again, moves its consumers' and relays' positions to the new log's
name, so the outboxes are published again and the consumers read from offset 0, their inboxes
dropping what they had processed. Nothing written while the broker was down is lost.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from contracts.events.visits import VisitVerified
from services.demo import SEEDERS
from services.dispatch.application import PlaceOrder
from services.runtime.broker import cluster_id_of, log_id_from_cluster_id
from services.runtime.host import Host
from services.runtime.settings import SharedSettings
from services.system import build_units
from tests.faults.test_broker_log_loss import _caught_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AREA = "yiwu-choucheng"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _verified(visit_id: str) -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": "E-1002",
        "caregiver_id": "C-201", "caregiver_kind": "employee", "provider_id": "P-yiwu-anle",
        "service_type": "bathing", "started_at": STARTED,
        "ended_at": STARTED + timedelta(minutes=30), "actual_minutes": 30,
        "planned_minutes": 30, "confirmation": "elder_code", "location_verified": True})


async def _eventually(check: Callable[[], bool], timeout: float = 40) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.1)


def _charged(host: Host, visit_id: str) -> bool:
    from services.ledger.domain.books import Charge

    return host.units[1].application.get_or_none(Charge.create_id(visit_id)) is not None


async def test_a_running_host_follows_its_broker_restarted_empty_under_it(tmp_path):
    """Dispatch and ledger run on their own local broker; an order's VisitScheduled puts a hold
    on the ledger. The broker is killed -9 and started again on the same port with an empty log;
    while it is down dispatch accepts another order (its event waits in the outbox). Afterwards:
    the host tracks the new log (the id the broker reports), the order from the outage reaches
    the ledger (a second hold), a visit verified and produced after the restart is charged, and
    the first order, published and read again in the new log, is not held twice."""
    settings = SharedSettings(store="sqlite", data_dir=tmp_path, kafka_bootstrap_servers=None,
                              kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
                              consumer_retry_backoff_s=0.05, broker_log_check_s=1.0)
    units = build_units(["dispatch", "ledger"], settings)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings)
    await host.start()
    try:
        dispatch, ledger = units[0].application, units[1].application

        def held() -> int:
            return int(ledger.balance("E-1002", "2026-11").held_minutes)

        def order(order_id: str) -> None:
            dispatch.place_order(PlaceOrder(elder_id="E-1002", service_type="bathing",
                                            requested_date=date(2026, 11, 24),
                                            order_id=order_id))

        await asyncio.to_thread(order, "O-before-restart")
        await _eventually(lambda: held() > 0)
        await _eventually(lambda: _caught_up(host))
        one_hold, old_log = held(), host.log_id
        broker = host.local_broker
        old_port = broker.port

        restarted = threading.Event()

        def restart() -> None:
            broker.restart(down_s=2.0)
            restarted.set()

        restarting = asyncio.create_task(asyncio.to_thread(restart))
        await asyncio.sleep(0.5)
        assert not broker.running  # down: the order below goes to the outbox only
        await asyncio.to_thread(order, "O-during-outage")
        await restarting
        assert broker.port == old_port and broker.incarnation != old_log
        back = asyncio.get_running_loop().time()
        await _eventually(lambda: host.log_switches == 1, timeout=15)  # checked every 1 s
        print(f"new broker log noticed {asyncio.get_running_loop().time() - back:.1f} s "
              "after the broker was back")

        producer = AIOKafkaProducer(bootstrap_servers=host.bootstrap_servers,
                                    enable_idempotence=False)
        await producer.start()
        try:
            visit_id = f"V-after-restart-{uuid.uuid4().hex[:6]}"
            await producer.send_and_wait("homecare.visits", _verified(visit_id).to_bytes(),
                                         key=AREA.encode())
        finally:
            await producer.stop()

        await _eventually(lambda: _charged(host, visit_id))
        await _eventually(lambda: held() > one_hold)
        await _eventually(lambda: _caught_up(host))
        new_log = log_id_from_cluster_id(cluster_id_of(host.bootstrap_servers) or "")
        assert host.log_id == new_log == broker.incarnation != old_log
        assert host.log_switches == 1
        assert {c.log_id for c in host.consumers.values()} == {new_log}
        assert {r.tracking_name for r in host.relays} == {
            f"outbox-relay:{n}@{new_log}" for n in ("dispatch", "ledger")}
        assert held() == 2 * one_hold  # two orders: two holds, the first not held again
        report = await host.readiness()
        assert report["checks"]["broker_log"] and report["ready"], report
    finally:
        await host.stop()


def test_a_restarted_local_broker_is_a_new_empty_log_on_the_same_port(tmp_path):
    """LocalBroker.restart() kills -9 tansu and starts it on the same port: a new incarnation,
    which the broker reports as its cluster id, and none of the old log's topics."""
    from kafka import KafkaAdminClient

    from services.runtime.broker import LocalBroker
    from services.runtime.topics import TopicSpec, ensure_topics

    with LocalBroker(tmp_path) as broker:
        ensure_topics(broker.bootstrap_servers, [TopicSpec("restart-probe", partitions=2)], 20)
        port, first = broker.port, broker.incarnation
        assert log_id_from_cluster_id(cluster_id_of(broker.bootstrap_servers) or "") == first
        broker.restart()
        assert broker.running and broker.port == port and broker.incarnation != first
        assert cluster_id_of(broker.bootstrap_servers) == f"homecare-local-{broker.incarnation}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            assert "restart-probe" not in admin.list_topics()
        finally:
            admin.close()


async def test_an_offset_of_the_old_log_is_not_skipped_once_the_log_changed(tmp_path):
    """A consumer tracked offset 0 in log "a". The broker comes back with log "b" and its
    offset 0 is another event: before skipping it as a redelivery the consumer asks whether the
    log changed; the answer (yes, now "b") makes it process the event under the new log. A true
    redelivery in "b" is still skipped (the log did not change again)."""
    from eventsourcing.application import ProcessingEvent

    from services.ledger.application import LedgerApplication
    from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome

    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                 "SQLITE_DBNAME": str(tmp_path / "ledger.db")})
    seen: list[str] = []

    def handle(event: object, processing: ProcessingEvent) -> None:
        seen.append(str(getattr(event, "event_id", "")))

    class Published:
        async def publish(self, topic: str, key: bytes, value: bytes,
                          headers: dict[str, str]) -> None:
            raise AssertionError("nothing is dead-lettered here")

    broker_log = {"id": "a"}

    async def confirm_log() -> bool:
        if consumer.log_id == broker_log["id"]:
            return False
        consumer.log_id = broker_log["id"]
        return True

    consumer = IdempotentConsumer(app, "homecare-ledger", {"VisitVerified": handle}, Published(),
                                  backoff_s=0.01, log_id="a", confirm_log=confirm_log)

    def message(visit_id: str) -> ConsumedMessage:
        return ConsumedMessage(topic="homecare.visits", partition=0, offset=0,
                               key=AREA.encode(), value=_verified(visit_id).to_bytes())

    try:
        assert await consumer.consume(message("V-old-log")) is Outcome.UNCHANGED
        broker_log["id"] = "b"  # restarted empty: offset 0 is another event now
        assert await consumer.consume(message("V-new-log")) is Outcome.UNCHANGED
        assert consumer.tracking_name("homecare.visits:0") == "homecare-ledger@b:homecare.visits:0"
        assert await consumer.consume(message("V-new-log")) is Outcome.REDELIVERED
        assert len(seen) == 2
    finally:
        app.close()


async def test_a_commit_tried_again_after_the_restart_does_not_skip_the_new_log(tmp_path):
    """Processed offsets wait behind the commit interval (1 s here) when the broker is killed
    -9; their commit fails while it is down and is tried again once it is back, empty. The
    retry first asks which log the broker has, so the old log's offsets never reach the new
    one. (They did: dispatch's group was left at offset 17 of the old funding log, the 17
    funding events republished into the new log were never read, and the chaos test once
    found a group 5 past its log's end.) Afterwards no committed offset is past its
    partition's end, and every consumer reads all that is republished."""
    from kafka import KafkaAdminClient

    from services.runtime.broker import end_offsets

    settings = SharedSettings(store="sqlite", data_dir=tmp_path, kafka_bootstrap_servers=None,
                              kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
                              consumer_retry_backoff_s=0.05, broker_log_check_s=4.0,
                              kafka_commit_interval_s=1.0)
    units = build_units(["dispatch", "ledger"], settings)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings)
    await host.start()
    try:
        await _eventually(lambda: _caught_up(host))
        producer = AIOKafkaProducer(bootstrap_servers=host.bootstrap_servers,
                                    enable_idempotence=False)
        await producer.start()
        visits = [f"V-burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
        try:
            for visit_id in visits:
                await producer.send_and_wait("homecare.visits", _verified(visit_id).to_bytes(),
                                             key=AREA.encode())
        finally:
            await producer.stop()
        await _eventually(lambda: all(_charged(host, v) for v in visits))
        await asyncio.to_thread(host.local_broker.restart, 2.0)
        await _eventually(lambda: host.log_switches == 1, timeout=15)
        await asyncio.sleep(3.0)  # the failed commit has been tried again by now

        def beyond_the_end() -> dict[str, int]:
            admin = KafkaAdminClient(bootstrap_servers=host.bootstrap_servers)
            try:
                out = {}
                for listed in admin.list_groups():
                    group = listed["group_id"]
                    offsets = admin.list_group_offsets(group).get(group, {})
                    ends = end_offsets(host.bootstrap_servers,
                                       sorted({tp.topic for tp in offsets}))
                    for tp, meta in offsets.items():
                        if meta.offset > ends.get((tp.topic, tp.partition), 0):
                            out[f"{group}:{tp.topic}:{tp.partition}"] = meta.offset
                return out
            finally:
                admin.close()

        assert await asyncio.to_thread(beyond_the_end) == {}
        await _eventually(lambda: _caught_up(host))  # and what is republished is read
    finally:
        await host.stop()
