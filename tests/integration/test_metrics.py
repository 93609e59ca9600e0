"""Metrics of running services: /metrics of each service process after a small run, and the
consumer lag measured from the broker.

The whole-system test starts `homecare up --distributed` (three processes, one broker,
PostgreSQL with one database per service: the cluster's shape), serves one visit through to
the ledger's charge over HTTP, and reads each process's /metrics as Prometheus would.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from services.runtime.broker import port_is_free
from services.runtime.observability import CONSUMER_LAG, measure_consumer_lag
from services.runtime.topics import TopicSpec, ensure_topics
from tests.support.auth import bearer_for_data_dir

pytestmark = pytest.mark.integration

SERVICES = ("dispatch", "ledger", "timebank")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition -> name -> [(labels, value)]."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or not match:
            continue
        name, labels, value = match.groups()
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        samples.setdefault(name, []).append((pairs, float(value)))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels` (None when there is none)."""
    found = [v for ls, v in samples.get(name, []) if all(ls.get(k) == w for k, w in labels.items())]
    return sum(found) if found else None


def _three_free_ports() -> int:
    # A random start (two test runs on one machine must not race for the same ports), below
    # the kernel's ephemeral range (32768+), where outgoing connections take their ports.
    for _ in range(200):
        base = random.randrange(20000, 32000)
        if all(port_is_free(base + i) for i in range(3)):
            return base
    raise RuntimeError("no three consecutive free ports")


@pytest.fixture
def distributed(tmp_path: Path, postgres_server) -> Iterator[dict[str, str]]:
    """`homecare up --distributed` with demo data, each service in its own process."""
    base = _three_free_ports()
    dbname = f"homecare_metrics_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "HOMECARE_POSTGRES_DBNAME": dbname,
           "HOMECARE_POSTGRES_HOST": postgres_server.host,
           "HOMECARE_POSTGRES_PORT": str(postgres_server.port),
           "HOMECARE_POSTGRES_USER": postgres_server.user,
           "HOMECARE_POSTGRES_PASSWORD": postgres_server.password,
           "HOMECARE_KAFKA_SESSION_TIMEOUT_MS": "3000",
           "HOMECARE_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
           "HOMECARE_LOG_JSON": "false"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--distributed", "--port", str(base),
         "--data-dir", str(tmp_path)], env=env, stdout=log, stderr=subprocess.STDOUT)
    urls = {name: f"http://127.0.0.1:{base + i}" for i, name in enumerate(SERVICES)}
    try:
        deadline = time.monotonic() + 90
        for url in urls.values():
            while True:
                assert process.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
                time.sleep(0.3)
        first_line = (tmp_path / "up.log").read_text().splitlines()[0]
        bootstrap = re.search(r"broker (\S+?),", first_line)
        assert bootstrap, first_line
        yield {**urls, "bootstrap": bootstrap.group(1), "data_dir": str(tmp_path)}
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does: stops all three and the broker
        try:
            code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            code = None
        log.close()
        with postgres_server.connect() as conn:
            for name in SERVICES:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}_{name}" WITH (FORCE)')
        assert code == 0, (f"homecare up --distributed did not stop cleanly ({code}):\n"
                           + (tmp_path / "up.log").read_text()[-4000:])
        assert all(port_is_free(base + i) for i in range(3)), "a service outlived Ctrl-C"


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    answer = httpx.get(f"{url}/metrics/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse_metrics(answer.text)


def eventually(probe, timeout: float = 40.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.5)


def test_each_service_process_exposes_the_named_metrics_after_one_visit(distributed):
    """After one order is served to the end and one poison message sent, every process's
    /metrics shows its HTTP latency, messages consumed and published, outbox backlog 0,
    consumer lag 0 and dead-letter records measured from the broker, the dead-letter count,
    and its service gauges: dispatch's open alerts and unassigned visits, the ledger's posted
    entitlement minutes, the time bank's liability ratio."""
    dispatch, ledger, timebank = (distributed[n] for n in SERVICES)
    # Each actor with their own token (the processes share the data directory's signing key).
    dispatcher = bearer_for_data_dir(distributed["data_dir"], "dispatcher",
                                     service_areas=["yiwu-choucheng"])
    auditor = bearer_for_data_dir(distributed["data_dir"], "auditor")
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    placed = httpx.post(f"{dispatch}/dispatch/orders", timeout=30, headers=dispatcher, json={
        "elder_id": "E-1001", "service_type": "cleaning", "requested_date": today.isoformat()})
    assert placed.status_code == 201, placed.text
    visit = placed.json()["visit"]
    elder = httpx.get(f"{dispatch}/dispatch/elders/E-1001", headers=dispatcher).json()
    caregiver = bearer_for_data_dir(distributed["data_dir"], "caregiver",
                                    caregiver_id=visit["caregiver_id"])

    def funded():  # type: ignore[no-untyped-def]
        # the ledger's answer reaches dispatch first: no consumer write races the check-in
        state = httpx.get(f"{dispatch}/dispatch/visits/{visit['visit_id']}",
                          headers=dispatcher).json()
        return state["funding"] == "funded"

    eventually(funded)
    at = {"caregiver_id": visit["caregiver_id"], "lat": elder["lat"], "lon": elder["lon"]}
    # Now, not the planned time (the device's time may not lie in the future): the visit is
    # short against its plan, so it needs a reviewer's approval before it is verified.
    check_in = now - timedelta(minutes=25)
    r = httpx.post(f"{dispatch}/dispatch/visits/{visit['visit_id']}/check-in",
                   headers=caregiver, json={**at, "at": check_in.isoformat()})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{dispatch}/dispatch/visits/{visit['visit_id']}/check-out", headers=caregiver,
                   json={
        **at, "at": (check_in + timedelta(minutes=20)).isoformat(),
        "confirmation_code": "4821", "tasks_done": ["扫地拖地"]})
    assert r.status_code == 200, r.text
    if r.json()["state"] != "verified":
        r = httpx.post(f"{dispatch}/dispatch/visits/{visit['visit_id']}/review",
                       headers=dispatcher, json={
            "decision": "approve", "by": "supervisor", "reason": "confirmed by phone"})
    assert r.status_code == 200 and r.json()["state"] == "verified", r.text

    def charged():  # type: ignore[no-untyped-def]
        answer = httpx.get(f"{ledger}/ledger/visits/{visit['visit_id']}/charge",
                           headers=auditor)
        return answer.json() if answer.status_code == 200 else None

    assert eventually(charged)["charged_minutes"] == 20
    # and one message that is no contract at all: dispatch dead-letters it
    producer = KafkaProducer(bootstrap_servers=distributed["bootstrap"])
    producer.send("homecare.orders", b"not an integration event", key=b"yiwu-choucheng")
    producer.flush()
    producer.close()

    # Dispatch: HTTP latency by route template, events out through the outbox and FastStream.
    def dispatch_settled():  # type: ignore[no-untyped-def]
        s = scrape(dispatch)
        lag = value(s, "homecare_consumer_lag", group="homecare-dispatch")
        dead = value(s, "homecare_dead_letter_records", topic="homecare.orders.dlq")
        return s if value(s, "homecare_consumer_lag_up") == 1 and lag == 0 and dead else None

    s = eventually(dispatch_settled)
    assert value(s, "homecare_http_request_seconds_count", route="/dispatch/orders",
                 status="201") == 1
    assert value(s, "homecare_http_request_seconds_bucket", route="/dispatch/orders",
                 le="+Inf") == 1
    assert value(s, "homecare_outbox_published_total", service="dispatch",
                 type="VisitVerified") == 1
    assert value(s, "homecare_outbox_backlog", service="dispatch") == 0
    assert value(s, "faststream_published_messages_total", destination="homecare.visits",
                 status="success") >= 3  # scheduled, checked in, verified at least
    # its own order, placed over HTTP, read back from the topic: nothing left to change
    assert value(s, "homecare_messages_consumed_total", consumer="homecare-dispatch",
                 type="OrderPlaced", outcome="unchanged") == 1
    assert value(s, "homecare_unassigned_visits", area="yiwu-choucheng") == 0
    assert value(s, "homecare_alerts_open", area="yiwu-choucheng", kind="missed") == 0
    assert value(s, "homecare_dead_letters_total", topic="homecare.orders") == 1
    assert value(s, "homecare_dead_letter_records", topic="homecare.orders.dlq") == 1
    assert value(s, "homecare_messages_consumed_total", type="invalid",
                 outcome="dead_lettered") == 1
    # one consumer-lag series per partition of each topic dispatch consumes (6 each)
    assert len([1 for ls, _ in s["homecare_consumer_lag"]
                if ls["group"] == "homecare-dispatch"]) == 12

    # Ledger: the verified visit consumed once; its minutes posted, none left held.
    def ledger_settled():  # type: ignore[no-untyped-def]
        s = scrape(ledger)
        posted = value(s, "homecare_entitlement_minutes", state="posted")
        return s if posted == 20 and value(s, "homecare_consumer_lag",
                                            group="homecare-ledger") == 0 else None

    s = eventually(ledger_settled)
    # the dead-letter topic's records, from the broker, in every process that watches it
    assert value(s, "homecare_dead_letter_records", topic="homecare.orders.dlq") is None
    assert value(s, "homecare_dead_letter_records", topic="homecare.visits.dlq") == 0
    assert value(s, "homecare_entitlement_minutes", state="held") == 0
    assert value(s, "homecare_messages_consumed_total", consumer="homecare-ledger",
                 type="VisitVerified", outcome="processed") == 1
    assert value(s, "faststream_received_messages_total", handler="homecare.visits") >= 1
    assert value(s, "homecare_metrics_refresh_seconds") < 5

    # Time bank: its own ledger's gauges, from its public liability query.
    s = eventually(lambda: (lambda m: m if value(m, "homecare_consumer_lag",
                                                 group="homecare-timebank") == 0 else None)(
        scrape(timebank)))
    ratio = value(s, "homecare_timebank_liability_ratio", bank="yiwu-choucheng")
    assert ratio is not None and 0 <= ratio < 1
    assert value(s, "homecare_timebank_reserve_minutes", bank="yiwu-choucheng") > 0


def test_consumer_lag_is_end_offset_minus_committed_offset(kafka_bootstrap):
    """Lag per partition from the broker: records past the group's committed offset; a
    partition the group never committed counts from its first record."""
    topic = f"lag-test-{uuid.uuid4().hex[:8]}"
    group = f"lag-group-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    # One record per batch: tansu 0.6 reports a partition's end offset as the last batch's
    # base offset + 1, so several records in one batch would count as one (Kafka counts each).
    for i in range(5):
        producer.send(topic, f"a{i}".encode(), partition=0)
        producer.flush()
    for i in range(3):
        producer.send(topic, f"b{i}".encode(), partition=1)
        producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, None, -1)})
    consumer.close()

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        lags = measure_consumer_lag(admin, {group: [topic]})
    finally:
        admin.close()
    assert lags == {(group, topic, 0): 3, (group, topic, 1): 3}
    assert CONSUMER_LAG.labels(group, topic, "0")._value.get() == 3


def test_record_plan_observes_solve_time_and_objective_terms():
    """What dispatch reports after a solve: the solve time in the histogram, and the plan's
    travel minutes, unassigned and placed visits as the objective terms of its area."""
    from services.dispatch.planning import DayPlan
    from services.runtime.observability import ROUTER_OBJECTIVE, record_plan

    area = f"area-{uuid.uuid4().hex[:6]}"
    plan = DayPlan(placements={"V-1": object(), "V-2": object()},  # type: ignore[dict-item]
                   unassigned={"V-3": "no caregiver with the skill"}, travel_minutes=41,
                   solve_seconds=1.5)
    record_plan(area, plan)
    record_plan(area, {"solve_seconds": 0.2, "travel_minutes": 7, "unassigned": {},
                       "scheduled": ["V-4"]}, kind="daily")
    labels = {"area": area, "kind": "daily"}
    assert REGISTRY.get_sample_value("homecare_router_solve_seconds_count", labels) == 2
    assert REGISTRY.get_sample_value("homecare_router_solve_seconds_sum", labels) == 1.7
    assert REGISTRY.get_sample_value("homecare_router_solve_seconds_bucket",
                                     {**labels, "le": "1.0"}) == 1
    terms = {t: ROUTER_OBJECTIVE.labels(area, t)._value.get()
             for t in ("travel_minutes", "unassigned", "placed")}
    assert terms == {"travel_minutes": 7, "unassigned": 0, "placed": 1}  # the last plan


class _FakeDispatch:
    """Dispatch's public queries, as the scrape-time gauges use them."""

    def __init__(self, area: str) -> None:
        from zoneinfo import ZoneInfo

        self.tz = ZoneInfo("Asia/Shanghai")
        self.area = area
        self.open: list[str] = []
        self.orders: dict[Any, list[str]] = {}

    def areas(self) -> list[str]:
        return [self.area]

    def list_alerts(self, area: str, open_only: bool = False) -> list[Any]:
        from types import SimpleNamespace

        assert open_only
        return [SimpleNamespace(kind=k) for k in self.open] if area == self.area else []

    def list_orders(self, area: str, day: Any) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(state=s) for s in self.orders.get(day, [])]


def test_scrape_time_gauges_follow_the_services_queries_and_survive_a_failing_one(caplog):
    """Alerts open are counted by area and kind and drop back to 0 when acknowledged;
    unassigned orders are counted for today and tomorrow only; a service whose query fails
    is logged and the others are still measured."""
    from datetime import date
    from types import SimpleNamespace

    from services.runtime.observability import (
        ALERTS_OPEN,
        UNASSIGNED_VISITS,
        refresh_service_gauges,
    )

    area = f"area-{uuid.uuid4().hex[:6]}"
    dispatch = _FakeDispatch(area)
    today = date(2026, 11, 24)
    dispatch.open = ["overrun", "overrun", "missed"]
    dispatch.orders = {today: ["unassigned", "scheduled"], date(2026, 11, 25): ["unassigned"],
                       date(2026, 11, 27): ["unassigned"]}
    broken = SimpleNamespace(name="ledger", application=SimpleNamespace())  # no queries at all
    units = [broken, SimpleNamespace(name="dispatch", application=dispatch)]
    refresh_service_gauges(units, today=today)
    assert ALERTS_OPEN.labels(area, "overrun")._value.get() == 2
    assert ALERTS_OPEN.labels(area, "missed")._value.get() == 1
    assert ALERTS_OPEN.labels(area, "late_start")._value.get() == 0
    assert UNASSIGNED_VISITS.labels(area)._value.get() == 2
    assert "metrics refresh failed for ledger" in caplog.text

    dispatch.open = []
    refresh_service_gauges(units, today=today)
    assert ALERTS_OPEN.labels(area, "overrun")._value.get() == 0
    assert ALERTS_OPEN.labels(area, "missed")._value.get() == 0


def test_a_scrape_answers_while_the_broker_is_away():
    """With no broker at the address, the lag measurement gives up within seconds and says so
    (homecare_consumer_lag_up 0) instead of hanging the scrape."""
    from services.runtime.broker import free_port
    from services.runtime.observability import CONSUMER_LAG_UP, MetricsRefresher

    refresher = MetricsRefresher([])
    refresher.watch_consumers(f"127.0.0.1:{free_port()}", {"g": ["homecare.orders"]})
    started = time.monotonic()
    refresher.refresh()
    assert time.monotonic() - started < 8
    assert CONSUMER_LAG_UP._value.get() == 0
    refresher.close()


def test_distributed_stops_every_service_when_one_cannot_run(tmp_path: Path, postgres_server):
    """If one service process dies (here: its port is taken), `homecare up --distributed`
    stops the others and the broker and exits with an error, leaving nothing behind."""
    import socket

    base = _three_free_ports()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base + 1))  # the ledger's port
    blocker.listen()
    env = {**os.environ, "HOMECARE_POSTGRES_DBNAME": f"homecare_dead_{uuid.uuid4().hex[:8]}",
           "HOMECARE_LOG_JSON": "false"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "up", "--distributed", "--port", str(base),
             "--data-dir", str(tmp_path), "--no-demo-data"],
            env=env, capture_output=True, text=True, timeout=90)
    finally:
        blocker.close()
        with postgres_server.connect() as conn:
            for name in SERVICES:
                conn.execute(f'DROP DATABASE IF EXISTS "{env["HOMECARE_POSTGRES_DBNAME"]}_{name}"'
                             " WITH (FORCE)")
    assert result.returncode != 0
    assert "ledger exited" in result.stdout and "stopping the others" in result.stdout
    assert port_is_free(base) and port_is_free(base + 2)
    broker = re.search(r"broker 127\.0\.0\.1:(\d+),", result.stdout)
    assert broker and port_is_free(int(broker.group(1))), "the broker outlived the run"
