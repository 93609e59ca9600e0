"""Pipeline: visits checked out over HTTP -> verified -> charged in the ledger, end to end.

The three services run as separate processes, as in the cluster (`homecare up --services X
--store postgres`, a fresh PostgreSQL database with one schema each), around one tansu broker
started here (LocalBroker). Visits are prepared first over the public API (elders and
caregivers registered in dispatch, elders' entitlement facts in the ledger, orders placed in past
days and scheduled at once, the ledger's reservations answered, the visits checked in), then
checked out from this process with an async client:

1. latency: an open loop at a fixed offered rate (default 100/s): a slow answer never delays the
   next request. Latency of a visit = the ledger's posting time (`occurred_at` of its
   VisitCharged event: the timestamp of the ledger's Charge.Made domain event) minus the moment
   its check-out request was sent. Read by consuming homecare.funding from the start.
2. throughput: a closed loop of ``--concurrency`` clients checking out as fast as dispatch
   answers; sustained rate = visits charged / (last posting - first check-out sent).

Run: `python -m bench.perf.pipeline [--latency-rate 100 --latency-seconds 20]
[--throughput-visits 3000] [--out FILE.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench.perf.common import (
    NEVER_MIN,
    CpuMeter,
    LoadSampler,
    ServiceProcess,
    admin_headers,
    database_activity,
    drop_database,
    fresh_database,
    latency_summary,
    machine,
    markdown_table,
    open_loop_schedule,
    per_unit,
    positive,
    prepare_data_dir,
    rss_kb,
    start_service,
    wait_ready,
)
from bench.perf.rawhttp import RawClient

TZ = ZoneInfo("Asia/Shanghai")
HOME = (29.3069, 120.0760)


def elder_home(n: int) -> tuple[float, float]:
    """Elders on a grid of about 200 m around the centre (up to about 2 km out)."""
    return (round(HOME[0] + (n % 20 - 10) * 0.0018, 6),
            round(HOME[1] + (n // 20 % 20 - 10) * 0.002, 6))
CODE = "2468"
SERVICES = ("dispatch", "ledger", "timebank")


@dataclass(frozen=True)
class PreparedVisit:
    visit_id: str
    caregiver_id: str
    elder_id: str
    planned_start: str
    planned_end: str


@dataclass
class Plan:
    """How many areas, caregivers and visits to prepare (pure: unit-tested)."""

    areas: int
    caregivers_per_area: int
    visits_per_caregiver_day: int
    visits: int
    elders_per_area: int = 0

    @property
    def visits_per_area_day(self) -> int:
        return self.caregivers_per_area * self.visits_per_caregiver_day

    @property
    def days(self) -> int:
        """Past days needed to hold ``visits`` at the given density (at least 1)."""
        per_day = self.areas * self.visits_per_area_day
        return max(1, -(-self.visits // per_day))

    def orders(self, today: date) -> list[tuple[str, date, int]]:
        """(area, day, n) of each order: area-days filled one after the other, days going back
        from yesterday, so every visit lies in the past (check-outs are not in the future)."""
        out: list[tuple[str, date, int]] = []
        for d in range(self.days):
            day = today - timedelta(days=d + 1)
            for a in range(self.areas):
                for n in range(self.visits_per_area_day):
                    if len(out) == self.visits:
                        return out
                    out.append((area_name(a), day, n))
        return out


def area_name(i: int) -> str:
    return f"bench-{i:02d}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-rate", type=positive, default=100.0,
                        help="offered check-outs per second in the latency phase")
    parser.add_argument("--latency-seconds", type=positive, default=20.0)
    parser.add_argument("--throughput-visits", type=int, default=3000,
                        help="visits checked out as fast as possible (0: skip the phase)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="clients in the throughput phase")
    parser.add_argument("--areas", type=int, default=6)
    parser.add_argument("--caregivers-per-area", type=int, default=20)
    parser.add_argument("--visits-per-caregiver-day", type=int, default=8)
    parser.add_argument("--elders-per-area", type=int, default=100)
    parser.add_argument("--profile-dir", default=None,
                        help="record each service with py-spy (collapsed stacks) during the "
                             "throughput phase into this directory (py-spy must be installed)")
    parser.add_argument("--profile-rate", type=int, default=50,
                        help="py-spy samples per second with --profile-dir")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database and data directory (for profiling)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.throughput_visits < 0 or args.concurrency < 1:
        parser.error("--throughput-visits must be >= 0 and --concurrency >= 1")
    return args


# Preparation over the public API ----------------------------------------------------------------
async def call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    """One API call; a write that raced a consumer of the same visit (409 ConcurrentChange)
    is sent again; any other failure raises with the answer."""
    for attempt in range(20):
        r = await client.request(method, url, **kwargs)
        if r.status_code == 409 and "ConcurrentChange" in r.text:
            await asyncio.sleep(0.02 * (attempt + 1))
            continue
        break
    if r.status_code >= 300:
        raise RuntimeError(f"{method} {url} -> {r.status_code}: {r.text[:400]}")
    return r.json()


async def each(items: list[Any], work: Callable[[Any], Awaitable[Any]],
               concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


def local_iso(day: date, hhmm: str) -> str:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, dtime(h, m), TZ).isoformat()


async def prepare(urls: dict[str, str], headers: dict[str, str], plan: Plan,
                  progress: Callable[[str], None]) -> list[PreparedVisit]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with (httpx.AsyncClient(base_url=urls["dispatch"], headers=headers, timeout=60,
                                  limits=limits) as dispatch,
                httpx.AsyncClient(base_url=urls["ledger"], headers=headers, timeout=60,
                                  limits=limits) as ledger):
        elders = [(area_name(a), f"E-{a:02d}-{e:04d}") for a in range(plan.areas)
                  for e in range(plan.elders_per_area)]

        async def elder(item: tuple[str, str]) -> None:
            area, elder_id = item
            await call(dispatch, "POST", "/dispatch/elders", json={
                "elder_id": elder_id, "name": "压测老人", "service_area_id": area,
                "lat": elder_home(int(elder_id[-4:]))[0],
                "lon": elder_home(int(elder_id[-4:]))[1], "confirmation_code": CODE})
            # Born 1924: past the age of the high entitlement; the rest out of pocket.
            await call(ledger, "PUT", f"/ledger/elders/{elder_id}", json={
                "service_area_id": area, "birth_date": "1924-03-01"})

        # The bench checks visits in and out hours after their planned times (they lie in past
        # days): the periodic sweep would otherwise call them late, missed and overrunning and
        # propose replans, which is not what a check-out costs. Alerts are off by their graces.
        for a in range(plan.areas):
            await call(dispatch, "PATCH", f"/dispatch/areas/{area_name(a)}/settings", json={
                "late_grace_minutes": [NEVER_MIN], "missed_after_minutes": NEVER_MIN,
                "overrun_grace_minutes": NEVER_MIN, "changed_by": "bench"})
        await each(elders, elder, 8)
        caregivers = [(area_name(a), f"C-{a:02d}-{c:03d}") for a in range(plan.areas)
                      for c in range(plan.caregivers_per_area)]

        async def caregiver(item: tuple[str, str]) -> None:
            area, caregiver_id = item
            await call(dispatch, "POST", "/dispatch/caregivers", json={
                "caregiver_id": caregiver_id, "name": "护理员", "kind": "employee",
                "service_area_id": area, "skills": ["cleaning"], "station_lat": HOME[0],
                "station_lon": HOME[1], "provider_id": f"P-{area}",
                "certificate_expires": "2035-12-31", "shift_start": "07:00",
                "shift_end": "21:00"})

        await each(caregivers, caregiver, 8)
        progress(f"registered {len(elders)} elders, {len(caregivers)} caregivers")
        orders = plan.orders(datetime.now(UTC).date())
        started = time.monotonic()

        async def order(item: tuple[str, date, int]) -> PreparedVisit | None:
            area, day, n = item
            elder_id = f"E-{int(area[-2:]):02d}-{n % plan.elders_per_area:04d}"
            answer = await call(dispatch, "POST", "/dispatch/orders", json={
                "elder_id": elder_id, "service_type": "cleaning",
                "requested_date": day.isoformat(), "order_id": f"O-{area}-{day}-{n}",
                "duration_minutes": 30, "out_of_pocket_agreed": True,
                "window_start": local_iso(day, "07:00"), "window_end": local_iso(day, "21:00")})
            v = answer.get("visit")
            if not v:
                return None
            return PreparedVisit(v["visit_id"], v["caregiver_id"], elder_id,
                                 v["planned_start"], v["planned_end"])

        # One area-day at a time per worker: orders of one area-day insert into one plan.
        visits = [v for v in await each(orders, order, 6) if v is not None]
        progress(f"placed {len(orders)} orders, {len(visits)} visits scheduled "
                 f"({len(orders) / (time.monotonic() - started):.0f}/s)")
        return visits


async def check_in_all(base: str, headers: dict[str, str],
                       visits: list[PreparedVisit]) -> None:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=limits) as client:
        async def one(v: PreparedVisit) -> None:
            await call(client, "POST", f"/dispatch/visits/{v.visit_id}/check-in", json={
                "caregiver_id": v.caregiver_id, "at": v.planned_start,
                "lat": elder_home(int(v.elder_id[-4:]))[0],
                "lon": elder_home(int(v.elder_id[-4:]))[1], "accuracy_m": 10,
                "idempotency_key": f"in-{v.visit_id}"})

        await each(visits, one, 8)


# Watching the ledger's postings -----------------------------------------------------------------
@dataclass
class FundingWatch:
    """Consumes homecare.funding from the start: reservations answered and visits charged."""

    bootstrap: str
    reserved: set[str] = field(default_factory=set)
    charged: dict[str, float] = field(default_factory=dict)  # visit id -> posting time (epoch)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from contracts.topics import FUNDING

        self._consumer = AIOKafkaConsumer(FUNDING, bootstrap_servers=self.bootstrap,
                                          group_id=None, auto_offset_reset="earliest",
                                          enable_auto_commit=False)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        # Only the type, the visit and the time are read: validating every contract here cost
        # the load generator's core about as much as a service spends on the same message.
        async for record in self._consumer:
            event = json.loads(record.value)
            if event["type"] in ("HoursReserved", "ReservationRejected"):
                self.reserved.add(event["payload"]["visit_id"])
            elif event["type"] == "VisitCharged":
                self.charged.setdefault(event["payload"]["visit_id"],
                                        datetime.fromisoformat(event["occurred_at"]).timestamp())
            self.changed.set()

    async def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"pipeline: gave up waiting for {what}", file=sys.stderr)
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 1.0))
        return True

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()


# The measured phases ---------------------------------------------------------------------------
@dataclass
class CheckOuts:
    sent: dict[str, float] = field(default_factory=dict)  # visit id -> send time (epoch)
    http_s: list[float] = field(default_factory=list)
    failures: int = 0
    first_failure: str | None = None


def check_out_body(v: PreparedVisit) -> dict[str, Any]:
    lat, lon = elder_home(int(v.elder_id[-4:]))
    return {"caregiver_id": v.caregiver_id, "at": v.planned_end, "lat": lat,
            "lon": lon, "accuracy_m": 10, "tasks_done": [], "confirmation_code": CODE,
            "idempotency_key": f"out-{v.visit_id}"}


async def check_out(client: RawClient, v: PreparedVisit, out: CheckOuts) -> None:
    out.sent[v.visit_id] = time.time()
    started = time.perf_counter()
    try:
        r = await client.post_json(f"/dispatch/visits/{v.visit_id}/check-out",
                                   check_out_body(v))
        ok = r.status_code == 200 and r.json().get("state") == "verified"
        detail = (f"{r.status_code} {r.json().get('verification_problems')}"
                  if r.status_code == 200 else f"{r.status_code} {r.text[:300]}")
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
        ok, detail = False, repr(error)
    out.http_s.append(time.perf_counter() - started)
    if not ok:
        out.failures += 1
        out.first_failure = out.first_failure or detail
        out.sent.pop(v.visit_id, None)


async def open_loop(base: str, headers: dict[str, str], visits: list[PreparedVisit],
                    rate: float) -> CheckOuts:
    out = CheckOuts()
    client = RawClient(base, connections=500, timeout=60, headers=headers)
    try:
        tasks = []
        begin = time.perf_counter()
        for offset, v in zip(open_loop_schedule(len(visits), rate), visits, strict=True):
            delay = begin + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(check_out(client, v, out)))
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return out


async def closed_loop(base: str, headers: dict[str, str], visits: list[PreparedVisit],
                      concurrency: int) -> CheckOuts:
    out = CheckOuts()
    queue = list(reversed(visits))
    client = RawClient(base, connections=concurrency, timeout=60, headers=headers)
    try:
        async def worker() -> None:
            while queue:
                await check_out(client, queue.pop(), out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return out


def cpu_groups(services: list[ServiceProcess], broker_pid: int | None) -> dict[str, Any]:
    """Whose CPU time a phase spends: each service, PostgreSQL's processes, the broker, and
    this process (the load generator and the funding watch)."""
    groups: dict[str, Any] = {s.name: [s.pid] for s in services}
    groups["postgresql"] = "postgres"
    groups["broker"] = [broker_pid] if broker_pid else []
    groups["bench"] = [os.getpid()]
    return groups


def phase_result(name: str, out: CheckOuts, charged: dict[str, float], offered: float | None,
                 load: dict[str, float], cpu: CpuMeter | None = None) -> dict[str, Any]:
    """Latency from check-out sent to posting, per visit, the sustained rate, and the CPU
    ms each visit cost by process (what the machine's cores allow at that cost)."""
    latencies = [charged[v] - sent for v, sent in out.sent.items() if v in charged]
    posted = [charged[v] for v in out.sent if v in charged]
    first = min(out.sent.values()) if out.sent else 0.0
    wall = (max(posted) - first) if posted else 0.0
    http = latency_summary(out.http_s)
    return {"phase": name, "offered_per_s": offered, "checked_out": len(out.sent),
            "charged": len(posted), "failures": out.failures,
            "first_failure": out.first_failure,
            "sustained_per_s": round(len(posted) / wall, 1) if wall > 0 else None,
            "http_check_out_ms": http, "check_out_to_posting_ms": latency_summary(latencies),
            "loadavg_1min": load,
            "cpu_ms_per_visit": cpu.ms_per(len(posted)) if cpu is not None else None}


async def run(args: argparse.Namespace, workdir: Path, dbname: str) -> dict[str, Any]:
    from services.runtime.broker import LocalBroker

    latency_visits = int(args.latency_rate * args.latency_seconds)
    plan = Plan(args.areas, args.caregivers_per_area, args.visits_per_caregiver_day,
                latency_visits + args.throughput_visits, args.elders_per_area)
    prepare_data_dir(workdir)
    headers = admin_headers(workdir)
    broker = LocalBroker(log_dir=workdir).start()
    services: list[ServiceProcess] = []
    watch = FundingWatch(broker.bootstrap_servers)
    try:
        services = [start_service(name, workdir, dbname, broker.bootstrap_servers)
                    for name in SERVICES]
        await asyncio.to_thread(wait_ready, services)
        urls = {s.name: s.base_url for s in services}
        await watch.start()

        def say(text: str) -> None:
            print(f"pipeline: {text}", flush=True)

        visits = await prepare(urls, headers, plan, say)
        await watch.wait(lambda: all(v.visit_id in watch.reserved for v in visits), 600,
                         "reservations")
        await check_in_all(urls["dispatch"], headers, visits)
        say(f"{len(visits)} visits checked in; reservations answered: {len(watch.reserved)}")
        await asyncio.sleep(2)  # let dispatch record the last funding answers
        results = []
        batch = visits[:latency_visits]
        load = LoadSampler.start()
        cpu = CpuMeter.start(cpu_groups(services, broker.pid))
        out = await open_loop(urls["dispatch"], headers, batch, args.latency_rate)
        await watch.wait(lambda: all(v in watch.charged for v in out.sent), 300, "postings")
        results.append(phase_result(f"open loop {args.latency_rate:g}/s", out, watch.charged,
                                    args.latency_rate, load.summary(), cpu))
        say(json.dumps(results[-1]))
        batch = visits[latency_visits:]
        if batch:
            load = LoadSampler.start()
            await asyncio.sleep(2)  # the statistics of what came before are reported
            activity = await asyncio.to_thread(database_activity, dbname)
            cpu = CpuMeter.start(cpu_groups(services, broker.pid))
            spies = start_profilers(services, args.profile_dir, args.profile_rate)
            out = await closed_loop(urls["dispatch"], headers, batch, args.concurrency)
            await watch.wait(lambda: all(v in watch.charged for v in out.sent), 600, "postings")
            stop_profilers(spies)
            results.append(phase_result(f"closed loop, {args.concurrency} clients", out,
                                        watch.charged, None, load.summary(), cpu))
            await asyncio.sleep(2)
            results[-1]["database_per_visit"] = per_unit(
                activity, await asyncio.to_thread(database_activity, dbname), len(batch))
            say(json.dumps(results[-1]))
        # Resident size at the end (aggregate caches as full as this many visits make them).
        resident = {s.name: {k: round(v / 1024) for k, v in rss_kb(s.pid).items()}
                    for s in services}
        say(f"resident MB at the end: {json.dumps(resident)}")
        return {"plan": {"areas": plan.areas, "caregivers_per_area": plan.caregivers_per_area,
                         "visits_per_area_day": plan.visits_per_area_day, "days": plan.days,
                         "visits": len(visits)}, "phases": results, "resident_mb": resident}
    finally:
        with contextlib.suppress(Exception):
            await watch.stop()
        for service in services:
            service.stop()
        broker.stop()


def start_profilers(services: list[ServiceProcess], folder: str | None,
                    rate: int = 50) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each service until stopped: the thread holding the GIL (Python
    doing work, not threads waiting for PostgreSQL in C), native frames off."""
    if not folder:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [subprocess.Popen([spy, "record", "--format", "raw", "--rate", str(rate),
                              "--nonblocking", "--gil", "-o", str(Path(folder) / f"{s.name}.txt"),
                              "-p", str(s.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for s in services]


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


def table(result: dict[str, Any]) -> str:
    rows = []
    for p in result["phases"]:
        e2e, http = p["check_out_to_posting_ms"], p["http_check_out_ms"]
        load = p["loadavg_1min"]
        rows.append([p["phase"], p["charged"], p["sustained_per_s"], e2e.get("p50_ms"),
                     e2e.get("p95_ms"), e2e.get("p99_ms"), http.get("p99_ms"), p["failures"],
                     f"{load['min']:g}-{load['max']:g}"])
    lines = [markdown_table(["phase", "visits charged", "sustained visits/s",
                             "p50 ms", "p95 ms", "p99 ms", "HTTP check-out p99 ms",
                             "failures", "load avg"], rows)]
    cpu = [p for p in result["phases"] if p.get("cpu_ms_per_visit")]
    if cpu:
        names = [k for k in cpu[0]["cpu_ms_per_visit"] if k != "cores_allow_per_s"]
        lines.append("")
        lines.append(markdown_table(
            ["phase", *[f"{n} CPU ms/visit" for n in names], "cores allow visits/s"],
            [[p["phase"], *[p["cpu_ms_per_visit"][n] for n in names],
              p["cpu_ms_per_visit"]["cores_allow_per_s"]] for p in cpu]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    dbname = fresh_database("homecare_pipeline")
    folder = tempfile.mkdtemp(prefix="homecare-pipeline-")
    failed = True
    try:
        result = asyncio.run(run(args, Path(folder), dbname))
        failed = False
    finally:
        if not (args.keep or failed):
            drop_database(dbname)
            shutil.rmtree(folder, ignore_errors=True)
        else:  # a failed run keeps the services' logs, to see why
            print(f"pipeline: kept database {dbname} and {folder} (services' logs: *.log)")
    result["machine"] = machine()
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
