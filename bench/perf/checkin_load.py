"""Check-in API under load from a separate process: requests per second and latency percentiles.

Starts dispatch alone (`homecare up --services dispatch`, SQLite or PostgreSQL, its own tansu
broker) in a subprocess, creates enough scheduled visits over HTTP, then this process sends
check-ins at a fixed rate with a minimal keep-alive client (bench/perf/rawhttp.py; httpx used a
whole core at 300/s here) to a different visit each, open loop (a slow
answer does not slow the sender), and reports p50 / p95 / p99, the achieved rate and the server's
CPU time per request (which, unlike latency, hardly moves when others share the machine).
Check-ins are sent as the visits' caregivers (each with its own token, so the ownership check
runs as on a phone); `--as admin` sends one administrator's token instead.
`--replicas N` (PostgreSQL) runs N dispatch processes on one database and one broker, the
check-ins sent to them in turn, as a deployment scaled out serves them.
Run: `python -m bench.perf.checkin_load [--rate 300] [--seconds 10] [--store sqlite]
[--replicas 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.perf.checkin_profile import start_py_spy
from bench.perf.common import (
    NEVER_MIN,
    admin_headers,
    cpu_seconds,
    database_activity,
    per_unit,
    prepare_data_dir,
)
from bench.perf.rawhttp import RawClient
from services.runtime.auth import Principal, auth_from_settings
from services.runtime.broker import LocalBroker, free_port
from services.runtime.settings import SharedSettings

AREA = "bench-area"
HOME = (29.3069, 120.0760)


def start_dispatch(store: str, workdir: Path, env_extra: dict[str, str] | None = None,
                   name: str = "dispatch") -> tuple[subprocess.Popen, str]:
    prepare_data_dir(workdir)  # keys made once, before the process starts
    port = free_port()
    env = {**os.environ, "HOMECARE_STORE": store, "HOMECARE_LOG_LEVEL": "WARNING",
           "HOMECARE_POSTGRES_DBNAME": f"homecare_load_{uuid.uuid4().hex[:8]}",
           **(env_extra or {})}
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--services", "dispatch", "--port",
         str(port), "--no-demo-data", "--data-dir", str(workdir)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.3)


def start_replicas(store: str, workdir: Path, replicas: int, dbname: str
                   ) -> tuple[list[subprocess.Popen], list[str], LocalBroker | None]:
    """One dispatch process with its own broker, or ``replicas`` of them on one PostgreSQL
    database (``dbname``) and one broker, as a deployment scaled out runs them (the first
    started alone, so that it creates the schema)."""
    if replicas == 1:
        process, base = start_dispatch(store, workdir, {"HOMECARE_POSTGRES_DBNAME": dbname})
        return [process], [base], None
    if store != "postgres":
        raise SystemExit("--replicas needs --store postgres (one database shared)")
    broker = LocalBroker(log_dir=str(workdir)).start()
    shared = {"HOMECARE_POSTGRES_DBNAME": dbname,
              "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
              "HOMECARE_BROKER_LOG_ID": broker.incarnation or "",
              "HOMECARE_BROKER_LOG_FROM_CLUSTER": "true"}
    processes: list[subprocess.Popen] = []
    bases: list[str] = []
    try:
        for i in range(replicas):
            process, base = start_dispatch(store, workdir, shared, name=f"dispatch-{i}")
            processes.append(process)
            bases.append(base)
    except BaseException:
        for process in processes:
            process.terminate()
        broker.stop()
        raise
    return processes, bases, broker


async def create_visits(base: str, count: int,
                        headers: dict[str, str]) -> list[tuple[str, str, str]]:
    """(visit id, caregiver id, planned start) of short visits spread over past days."""
    caregivers = max(1, count // 80)
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        await client.post("/dispatch/elders", json={
            "elder_id": "E-load", "name": "压测老人", "service_area_id": AREA, "lat": HOME[0],
            "lon": HOME[1], "confirmation_code": "1234"})
        # Otherwise, on some hours of the day, the once-a-minute sweep marked the local
        # yesterday's visits missed while they were being made, and their check-ins took the
        # heavier path of an offline check-in synced late (reinstate, close the alerts).
        (await client.patch(f"/dispatch/areas/{AREA}/settings", json={
            "late_grace_minutes": [NEVER_MIN], "missed_after_minutes": NEVER_MIN,
            "overrun_grace_minutes": NEVER_MIN, "changed_by": "bench"})).raise_for_status()
        for i in range(caregivers):
            r = await client.post("/dispatch/caregivers", json={
                "caregiver_id": f"C-{i}", "name": f"护理员{i}", "kind": "employee",
                "service_area_id": AREA, "skills": ["cleaning"], "station_lat": HOME[0],
                "station_lon": HOME[1], "provider_id": "P-load",
                "certificate_expires": "2030-12-31", "shift_start": "00:00",
                "shift_end": "23:59"})
            r.raise_for_status()
        visits: list[tuple[str, str, str]] = []
        today = datetime.now(UTC).date()
        day_offset = 1
        semaphore = asyncio.Semaphore(8)

        async def order(day: date, n: int) -> None:
            async with semaphore:
                r = await client.post("/dispatch/orders", json={
                    "elder_id": "E-load", "service_type": "cleaning",
                    "requested_date": day.isoformat(), "order_id": f"O-{day}-{n}",
                    "duration_minutes": 15})
                visit = r.json().get("visit") if r.status_code == 201 else None
                if visit:
                    visits.append((visit["visit_id"], visit["caregiver_id"],
                                   visit["planned_start"]))

        while len(visits) < count and day_offset < 60:
            day = today - timedelta(days=day_offset)
            await asyncio.gather(*(order(day, n) for n in range(min(count, caregivers * 80))))
            day_offset += 1
        return visits[:count]


def caregiver_tokens(data_dir: Path, caregiver_ids: set[str]) -> dict[str, str]:
    """A bearer token per caregiver (role caregiver, its own id and the bench area)."""
    auth = auth_from_settings(SharedSettings(data_dir=data_dir, auth_mode="local"))
    assert auth.issuer is not None
    return {c: "Bearer " + auth.issuer.issue(Principal(
        subject=f"bench-{c}", role="caregiver", caregiver_id=c,
        service_areas=frozenset({AREA})), ttl_s=6 * 3600) for c in caregiver_ids}


def settle(pid: int, busy_below: float = 0.15, limit_s: float = 120.0) -> tuple[float, float]:
    """Wait until the server has consumed and relayed what making the visits caused (its CPU
    use over a second falls below ``busy_below``), so the load measures check-ins alone;
    returns (seconds waited, the idle server's CPU seconds per second: relay polling, broker
    heartbeats)."""
    started = time.monotonic()
    idle = 0.0
    while time.monotonic() - started < limit_s:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        idle = cpu_seconds(pid) - before
        if idle < busy_below:
            before = cpu_seconds(pid)
            time.sleep(2.0)
            idle = (cpu_seconds(pid) - before) / 2
            break
    return round(time.monotonic() - started, 1), idle


async def load(bases: list[str], visits: list[tuple[str, str, str]],
               rate: float, headers: dict[str, str],
               tokens: dict[str, str] | None = None, server_pids: list[int] | None = None,
               idle_cpu_per_s: float = 0.0, client_kind: str = "raw") -> dict[str, float]:
    """Check-ins at ``rate`` per second, the i-th to ``bases[i % len(bases)]`` (a load balancer's
    round robin over replicas)."""
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []  # (sent, seconds after the start; latency)
    failures = 0
    if client_kind == "httpx":
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        clients: list[Any] = [httpx.AsyncClient(base_url=base, timeout=10, limits=limits,
                                                headers=headers) for base in bases]
    else:
        clients = [RawClient(base, connections=200 // len(bases), timeout=10, headers=headers)
                   for base in bases]
    try:
        async def check_in(visit_id: str, caregiver_id: str, at: str, client: Any) -> None:
            nonlocal failures
            started = time.perf_counter()
            auth = {"authorization": tokens[caregiver_id]} if tokens else None
            body = {"caregiver_id": caregiver_id, "at": at, "lat": HOME[0], "lon": HOME[1],
                    "accuracy_m": 10, "idempotency_key": f"k-{visit_id}"}
            path = f"/dispatch/visits/{visit_id}/check-in"
            try:
                if client_kind == "httpx":
                    r = await client.post(path, json=body, headers=auth)
                else:
                    r = await client.post_json(path, body, headers=auth)
                problem = None if r.status_code == 200 else f"{r.status_code} {r.text[:300]}"
            except (httpx.HTTPError, OSError, TimeoutError, ValueError,
                    asyncio.IncompleteReadError) as error:  # a failure, not a crash
                problem = f"{type(error).__name__}: {error}"
            latencies.append(time.perf_counter() - started)
            timeline.append((started - begin, latencies[-1]))
            if problem is not None:
                failures += 1
                if failures == 1:
                    print(f"first failure: {problem}", file=sys.stderr)

        tasks = []
        def server_cpu() -> float:
            return sum(cpu_seconds(pid) for pid in server_pids or [])

        cpu_before = server_cpu()
        own_cpu_before = time.process_time()
        load_before = os.getloadavg()[0]
        begin = time.perf_counter()
        for i, (visit_id, caregiver_id, at) in enumerate(visits):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(
                check_in(visit_id, caregiver_id, at, clients[i % len(clients)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
        cpu = server_cpu() - cpu_before if server_pids else None
        own_cpu = time.process_time() - own_cpu_before
    finally:
        for client in clients:
            await (client.aclose() if client_kind == "httpx" else client.close())
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)

    return {"requests": len(ordered), "target_rate": rate,
            "achieved_rate": round(len(ordered) / elapsed, 1), "failures": failures,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "mean_ms": round(1000 * statistics.fmean(ordered), 1),
            "server_cpu_ms_per_request": round(1000 * cpu / len(ordered), 2) if cpu else None,
            # less what the idle server spends anyway over the same time
            "server_cpu_ms_per_request_net": round(
                1000 * (cpu - idle_cpu_per_s * elapsed) / len(ordered), 2) if cpu else None,
            # near 1.0 the sender, not the server, set the pace
            "client_cpu_share": round(own_cpu / elapsed, 2),
            "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "slowest_moments": slowest_moments(timeline)}


def slowest_moments(timeline: list[tuple[float, float]], window_s: float = 0.1,
                    top: int = 5) -> list[dict[str, float]]:
    """The ``top`` windows of sending time with the slowest answers (start of the window, its
    worst latency, how many of its requests took over 50 ms): whether the tail is spread
    evenly (a busy server queueing) or bunched in a few moments (something holding it)."""
    windows: dict[int, list[float]] = {}
    for sent, latency in timeline:
        windows.setdefault(int(sent / window_s), []).append(latency)
    worst = sorted(windows.items(), key=lambda item: max(item[1]), reverse=True)[:top]
    return [{"at_s": round(k * window_s, 1), "worst_ms": round(1000 * max(v), 1),
             "over_50ms": sum(1 for x in v if x > 0.05), "requests": len(v)}
            for k, v in sorted(worst)]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--as", dest="caller", choices=["caregiver", "admin"],
                        default="caregiver", help="whose tokens the check-ins carry")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="the sender: a minimal keep-alive client (bench/perf/rawhttp.py) "
                             "or httpx, which cannot send 300/s here")
    parser.add_argument("--profile", default=None,
                        help="record the server during the load with py-spy (collapsed stacks)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="dispatch processes on one PostgreSQL database and one broker, the "
                             "check-ins spread over them in turn (as behind a load balancer)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        dbname = f"homecare_load_{uuid.uuid4().hex[:8]}"
        processes, bases, broker = start_replicas(args.store, Path(folder), args.replicas,
                                                  dbname)
        pids = [p.pid for p in processes]
        try:
            count = int(args.rate * args.seconds)
            headers = admin_headers(Path(folder))
            # made through one replica: order placement is serialised within a process
            visits = asyncio.run(create_visits(bases[0], count, headers))
            tokens = (caregiver_tokens(Path(folder), {c for _, c, _ in visits})
                      if args.caller == "caregiver" else None)
            for base in bases:
                # a replica that served nothing yet catches its read model up on everything
                # the first wrote (in service it would have followed all along)
                httpx.get(f"{base}/dispatch/areas/{AREA}/caregivers", headers=headers,
                          timeout=120).raise_for_status()
            settling = [settle(pid) for pid in pids]
            settled, idle_cpu = sum(s for s, _ in settling), sum(i for _, i in settling)
            activity = database_activity(dbname) if args.store == "postgres" else None
            spy = start_py_spy(pids[0], args.profile) if args.profile else None
            try:
                result = asyncio.run(load(bases, visits, args.rate, headers, tokens,
                                          pids, idle_cpu, args.client))
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
            if activity is not None:
                time.sleep(2)  # the backends report their statistics
                # per check-in: commits, and queries that read (table scans) of the store
                result["database_per_request"] = per_unit(
                    activity, database_activity(dbname), result["requests"])
        except Exception:
            # the server's side of a failure (its log goes with the temporary folder)
            for log in sorted(Path(folder).glob("dispatch*.log")):
                print(log.name, log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            if broker is not None:
                broker.stop()
    result["replicas"] = args.replicas
    result["store"] = args.store
    result["caller"] = args.caller
    result["settled_s"] = settled
    result["client"] = args.client
    result["idle_server_cpu_per_s"] = round(idle_cpu, 3)
    print("| store | requests | target rps | achieved rps | p50 ms | p95 ms | p99 ms | failures "
          "| server CPU ms/req (net of idle) | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {result['store']} | {result['requests']} | {result['target_rate']:.0f} | "
          f"{result['achieved_rate']} | {result['p50_ms']} | {result['p95_ms']} | "
          f"{result['p99_ms']} | {result['failures']} | {result['server_cpu_ms_per_request']} "
          f"({result['server_cpu_ms_per_request_net']}) | "
          f"{result['loadavg'][0]}-{result['loadavg'][1]} |")
    print("slowest moments (sent at s: worst ms, over 50 ms / requests): " + "; ".join(
        f"{m['at_s']}: {m['worst_ms']}, {m['over_50ms']}/{m['requests']}"
        for m in result["slowest_moments"]))
    if "database_per_request" in result:
        print("database per check-in: " + json.dumps(result["database_per_request"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
