"""Where a check-in request's time goes: the dispatch app in this process, no network, no broker.

Builds dispatch as `homecare up` does (SQLite or PostgreSQL store, encryption, local auth), makes
scheduled visits, then sends check-ins one at a time through the ASGI app as the visits'
caregivers (so the ownership check runs) and reports the CPU time and wall time per request.
CPU time per request is what bounds the rate one process can serve (1000 / ms per request), and,
unlike latency under load, it hardly moves when other work shares the machine.
`--profile FILE` also records the check-in phase with py-spy (every thread: the endpoints run in
the threadpool) as collapsed stacks, `--top` prints where the samples fell.
Run: `python -m bench.perf.checkin_profile [--requests 500] [--store sqlite] [--profile out.prof]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.perf.common import latency_summary
from services.runtime.auth import Principal, auth_from_settings
from services.runtime.settings import SharedSettings

AREA = "bench-area"
HOME = (29.3069, 120.0760)


def build(store: str, data_dir: Path) -> tuple[Any, Any, Any]:
    """(FastAPI app, dispatch application, local auth) as `homecare up --services dispatch`."""
    from services.runtime.host import Host, create_http_app
    from services.system import build_units

    dbname = f"homecare_profile_{uuid.uuid4().hex[:8]}"
    os.environ["HOMECARE_POSTGRES_DBNAME"] = dbname
    settings = SharedSettings(data_dir=data_dir, store=store, postgres_dbname=dbname)  # type: ignore[arg-type]
    units = build_units(["dispatch"], settings)
    auth = auth_from_settings(settings)
    app = create_http_app(Host(units, settings), auth=auth)
    return app, units[0].application, auth


async def make_visits(client: httpx.AsyncClient, count: int) -> list[tuple[str, str, str]]:
    caregivers = max(1, count // 80)
    await client.post("/dispatch/elders", json={
        "elder_id": "E-load", "name": "压测老人", "service_area_id": AREA, "lat": HOME[0],
        "lon": HOME[1], "confirmation_code": "1234"})
    for i in range(caregivers):
        r = await client.post("/dispatch/caregivers", json={
            "caregiver_id": f"C-{i}", "name": f"护理员{i}", "kind": "employee",
            "service_area_id": AREA, "skills": ["cleaning"], "station_lat": HOME[0],
            "station_lon": HOME[1], "provider_id": "P-load", "certificate_expires": "2030-12-31",
            "shift_start": "00:00", "shift_end": "23:59"})
        r.raise_for_status()
    visits: list[tuple[str, str, str]] = []
    today = datetime.now(UTC).date()
    day_offset = 1
    while len(visits) < count and day_offset < 60:
        day = today - timedelta(days=day_offset)
        for n in range(min(count, caregivers * 80)):
            r = await client.post("/dispatch/orders", json={
                "elder_id": "E-load", "service_type": "cleaning",
                "requested_date": day.isoformat(), "order_id": f"O-{day}-{n}",
                "duration_minutes": 15})
            visit = r.json().get("visit") if r.status_code == 201 else None
            if visit:
                visits.append((visit["visit_id"], visit["caregiver_id"], visit["planned_start"]))
        day_offset += 1
    return visits[:count]


def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` until sent SIGINT: the thread holding the GIL (what
    costs CPU in Python; time spent waiting for the disk or the GIL is left out)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    process = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "500",
                                "--format", "raw", "--output", out, "--nonblocking", "--gil"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached before the first request
    return process


def top_frames(collapsed: str, count: int = 40) -> list[tuple[str, int]]:
    """(frame, samples whose stack includes it) from py-spy's collapsed stacks, busiest
    first; a frame's line number is dropped so a function counts once."""
    import collections
    import re

    inclusive: collections.Counter[str] = collections.Counter()
    for line in Path(collapsed).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = {re.sub(r":\d+\)$", ")", f) for f in stack.split(";")}
        for frame in frames:
            inclusive[frame] += int(n)
    return inclusive.most_common(count)


async def run(store: str, requests: int, warmup: int, profile: str | None,
              data_dir: Path) -> dict[str, Any]:
    app, _, auth = build(store, data_dir)
    admin = {"authorization": "Bearer " + auth.issuer.issue(
        Principal(subject="bench", role="admin"), ttl_s=3600)}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatch",
                                 headers=admin, timeout=60) as client:
        visits = await make_visits(client, requests + warmup)
        tokens: dict[str, str] = {}

        def caregiver_headers(caregiver_id: str) -> dict[str, str]:
            if caregiver_id not in tokens:
                tokens[caregiver_id] = "Bearer " + auth.issuer.issue(Principal(
                    subject=f"u-{caregiver_id}", role="caregiver", caregiver_id=caregiver_id,
                    service_areas=frozenset({AREA})), ttl_s=3600)
            return {"authorization": tokens[caregiver_id]}

        async def check_in(visit_id: str, caregiver_id: str, at: str) -> None:
            r = await client.post(f"/dispatch/visits/{visit_id}/check-in", json={
                "caregiver_id": caregiver_id, "at": at, "lat": HOME[0], "lon": HOME[1],
                "accuracy_m": 10, "idempotency_key": f"k-{visit_id}"},
                headers=caregiver_headers(caregiver_id))
            if r.status_code != 200:
                raise RuntimeError(f"check-in answered {r.status_code}: {r.text[:300]}")

        for visit in visits[:warmup]:
            await check_in(*visit)
        profiler = start_py_spy(os.getpid(), profile) if profile else None
        walls: list[float] = []
        cpus: list[float] = []
        for visit in visits[warmup:]:
            wall, cpu = time.perf_counter(), time.process_time()
            await check_in(*visit)
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        if profiler:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
    return {"store": store, "requests": len(walls),
            "cpu_ms_per_request": round(1000 * statistics.fmean(cpus), 2),
            "cpu_ms_median": round(1000 * statistics.median(cpus), 2),
            "wall": latency_summary(walls),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--profile", default=None,
                        help="record the check-ins with py-spy into this file (collapsed)")
    parser.add_argument("--top", type=int, default=0, help="print the N busiest frames")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run(args.store, args.requests, args.warmup, args.profile,
                                 Path(folder)))
    print(json.dumps(result, indent=2))
    if args.profile and args.top:
        for frame, samples in top_frames(args.profile, args.top):
            print(f"{samples:7d}  {frame[:140]}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
