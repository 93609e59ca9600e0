"""Memory: resident size of each service process holding a city and a month of its events.

1. Build: a fresh PostgreSQL database, the three services' applications in this process (the
   same event-store settings the services use), elders, caregivers (one provider per service
   area) and volunteers registered, then day by day for ``--days`` days each caregiver's visits
   ordered (scheduled at once by dispatch's insertion), checked in and checked out (verified).
   What dispatch publishes is handed to the ledger's and the time bank's effectively-once
   consumers in this process (their own code path: inbox, tracking, policies), and their answers
   back to dispatch, until nothing is left; the outbox relays' positions are recorded, so the
   services do not publish the month again. This is the fastest honest way: the same events
   the services would have written, without HTTP and the broker in the way.
2. Measure: each service started alone as in production (`homecare up --services X --store
   postgres`), its read models caught up and typical queries exercised over HTTP, then its
   VmRSS (resident now) and VmHWM (peak) from /proc/<pid>/status.

Run: `python -m bench.perf.memory [--elders 10000 --caregivers 500 --days 30
--visits-per-caregiver-day 6] [--out FILE.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.perf.common import (
    LoadSampler,
    admin_headers,
    drop_database,
    fresh_database,
    machine,
    markdown_table,
    prepare_data_dir,
    rss_kb,
    start_service,
    wait_ready,
)

TZ = ZoneInfo("Asia/Shanghai")
CENTRE = (29.3069, 120.0760)
CODE = "1357"
SERVICES = ("dispatch", "ledger", "timebank")


@dataclass(frozen=True)
class City:
    """Who lives where (pure: unit-tested)."""

    elders: int
    caregivers: int
    areas: int
    volunteers: int = 0

    def area_of(self, i: int, count: int) -> str:
        """Person ``i`` of ``count`` belongs to area floor(i * areas / count): contiguous,
        as even as the numbers allow."""
        return f"area-{i * self.areas // count:02d}"

    def elder_ids(self, area: str) -> list[str]:
        return [f"E{i:05d}" for i in range(self.elders)
                if self.area_of(i, self.elders) == area]

    def position(self, i: int) -> tuple[float, float]:
        """Homes on a grid of about 150 m, areas side by side (about 3 km each)."""
        a = i * self.areas // self.elders
        k = i % 400
        return (round(CENTRE[0] + (k % 20) * 0.0014, 6),
                round(CENTRE[1] + a * 0.03 + (k // 20) * 0.0015, 6))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elders", type=int, default=10_000)
    parser.add_argument("--caregivers", type=int, default=500)
    parser.add_argument("--volunteers", type=int, default=50)
    parser.add_argument("--areas", type=int, default=25)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--visits-per-caregiver-day", type=int, default=6)
    parser.add_argument("--build-only", action="store_true",
                        help="build the city and stop (how long the consumers take)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if min(args.elders, args.caregivers, args.areas, args.days) < 1:
        parser.error("elders, caregivers, areas and days must be at least 1")
    if args.areas > min(args.elders, args.caregivers):
        parser.error("every area needs at least one elder and one caregiver")
    return args


# Build ------------------------------------------------------------------------------------------
class Pump:
    """Hands each application's integration events to the consumers subscribed to them, in
    this process, through their IdempotentConsumer (inbox, tracking and policy as in the
    services), until every log is relayed."""

    def __init__(self, units: dict[str, Any]) -> None:
        from services.runtime.consumer import IdempotentConsumer

        self.units = units
        self.positions = {name: 0 for name in units}
        self.offsets: dict[tuple[str, str], int] = {}
        self.consumers: dict[str, tuple[IdempotentConsumer, set[str]]] = {}
        self.seconds: dict[str, float] = {}  # time in each consumer (where the build goes)
        self.messages: dict[str, int] = {}
        for name, unit in units.items():
            spec = unit.messaging.consumer
            if spec is None:
                continue
            handlers = {t: h for by_type in spec.handlers_by_topic.values()
                        for t, h in by_type.items()}
            consumer = IdempotentConsumer(unit.application, f"memory-build-{name}", handlers,
                                          _NoDeadLetters())
            self.consumers[name] = (consumer, set(spec.handlers_by_topic))

    def run(self) -> int:
        from services.runtime.consumer import ConsumedMessage

        delivered = 0
        while True:
            moved = 0
            for name, unit in self.units.items():
                app = unit.application
                notifications = app.process_recorder.select_notifications(
                    self.positions[name] + 1, 500)
                for n in notifications:
                    for event in app.translate(app.mapper.to_domain_event(n)):
                        for target, (consumer, topics) in self.consumers.items():
                            if event.topic not in topics or target == name:
                                continue
                            key = (target, event.topic)
                            offset = self.offsets.get(key, 0)
                            self.offsets[key] = offset + 1
                            message = ConsumedMessage(event.topic, 0, offset, event.key(),
                                                      event.to_bytes())
                            started = time.perf_counter()
                            consumer._process(message, event)
                            self.seconds[target] = (self.seconds.get(target, 0.0)
                                                    + time.perf_counter() - started)
                            self.messages[target] = self.messages.get(target, 0) + 1
                            delivered += 1
                    self.positions[name] = n.id
                moved += len(notifications)
            if not moved:
                return delivered

    def record_relay_positions(self) -> None:
        """The services' outbox relays start after what was handed over here."""
        from eventsourcing.persistence import Tracking

        for name, unit in self.units.items():
            if self.positions[name]:
                unit.application.process_recorder.insert_tracking(
                    Tracking(f"outbox-relay:{name}", self.positions[name]))


class _NoDeadLetters:
    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: dict[str, str]) -> None:
        raise RuntimeError(f"a message was dead-lettered while building: {headers}")


def local(day: date, hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, dtime(h, m), TZ)


def build(args: argparse.Namespace, data_dir: Path, dbname: str,
          say: Any) -> dict[str, int]:
    from services.dispatch.api import CaregiverIn, ElderIn
    from services.dispatch.application import PlaceOrder
    from services.dispatch.domain.people import Elder
    from services.ledger.domain.books import ElderProfile
    from services.ledger.domain.entitlement import ElderFacts
    from services.runtime.aggregate_cache import unit_of_work
    from services.runtime.settings import SharedSettings
    from services.system import build_units

    settings = SharedSettings(data_dir=data_dir, store="postgres", postgres_dbname=dbname)
    units = {u.name: u for u in build_units(list(SERVICES), settings)}
    dispatch, ledger, timebank = (units[n].application for n in SERVICES)
    city = City(args.elders, args.caregivers, args.areas, args.volunteers)
    started = time.monotonic()
    # Registered a hundred at a time (one transaction each): the same events as one by one.
    batch: list[Any] = []
    profiles: list[Any] = []
    for i in range(args.elders):
        area = city.area_of(i, args.elders)
        lat, lon = city.position(i)
        elder_id = f"E{i:05d}"
        batch.append(Elder(**ElderIn(
            elder_id=elder_id, name=f"老人{i}", service_area_id=area, lat=lat, lon=lon,
            confirmation_code=CODE, address=f"{area} 村 {i} 号", phone="13800000000",
            gender="female" if i % 3 else "male", capability_level=i % 4).model_dump()))
        facts = ElderFacts(birth_date=date(1924 + i % 30, 1 + i % 12, 1), dibao=i % 25 == 0,
                           disability_qualifies=i % 10 == 0)
        profiles.append(ElderProfile(elder_id=elder_id, service_area_id=area,
                                     facts=facts.to_json()))
        if len(batch) == 100 or i == args.elders - 1:
            dispatch.save(*batch)
            ledger.save(*profiles)
            batch, profiles = [], []
    say(f"{args.elders} elders in {time.monotonic() - started:.0f} s")
    caregivers: dict[str, list[str]] = {}
    for i in range(args.caregivers):
        area = city.area_of(i, args.caregivers)
        caregiver_id = f"C{i:04d}"
        dispatch.register_caregiver(**CaregiverIn(
            caregiver_id=caregiver_id, name=f"护理员{i}", kind="employee",
            service_area_id=area, skills=["cleaning", "bathing", "companionship"],
            station_lat=CENTRE[0], station_lon=CENTRE[1] + int(area[-2:]) * 0.03,
            provider_id=f"P-{area}", certificate_expires=date(2035, 1, 1),
            shift_start="07:00", shift_end="19:00").model_dump())
        caregivers.setdefault(area, []).append(caregiver_id)
    for i in range(args.volunteers):
        area = city.area_of(i, args.volunteers) if args.volunteers >= args.areas else "area-00"
        dispatch.register_caregiver(**CaregiverIn(
            caregiver_id=f"VOL{i:03d}", name=f"志愿者{i}", kind="volunteer",
            service_area_id=area, skills=["companionship", "welfare_check"],
            station_lat=CENTRE[0], station_lon=CENTRE[1],
            shift_start="09:00", shift_end="12:00").model_dump())
        timebank.join(f"VOL{i:03d}", area, birth_date=date(1960, 1, 1))
    say(f"{args.caregivers} caregivers, {args.volunteers} volunteers; pumping")
    pump = Pump(units)
    pump.run()
    today = datetime.now(UTC).astimezone(TZ).date()
    visits = 0
    for d in range(args.days, 0, -1):
        day = today - timedelta(days=d)
        day_visits = []
        for area, ids in sorted(caregivers.items()):
            elders = city.elder_ids(area)
            wanted = len(ids) * args.visits_per_caregiver_day
            for n in range(wanted):
                elder_id = elders[(d * 7 + n) % len(elders)]
                with unit_of_work():  # as one request would be
                    _, visit = dispatch.place_order(PlaceOrder(
                        elder_id=elder_id, service_type="cleaning", requested_date=day,
                        order_id=f"O-{day}-{area}-{n}", duration_minutes=60,
                        window_start=local(day, "07:30"), window_end=local(day, "18:30"),
                        out_of_pocket_agreed=True, placed_by="memory bench"))
                if visit is not None:
                    day_visits.append((visit, elder_id))
        pump.run()
        for visit, elder_id in day_visits:
            lat, lon = city.position(int(elder_id[1:]))
            now = datetime.now(UTC)
            with unit_of_work():
                dispatch.check_in(visit.visit_id, at=visit.planned_start, lat=lat, lon=lon,
                                  caregiver_id=visit.caregiver_id, accuracy_m=10, now=now)
            with unit_of_work():
                dispatch.check_out(visit.visit_id, at=visit.planned_end, lat=lat, lon=lon,
                                   tasks_done=[], confirmation_code=CODE,
                                   caregiver_id=visit.caregiver_id, accuracy_m=10, now=now)
        pump.run()
        visits += len(day_visits)
        say(f"{day}: {len(day_visits)} visits ({visits} so far, "
            f"{time.monotonic() - started:.0f} s); ms per consumed message: "
            + ", ".join(f"{k} {1000 * v / pump.messages[k]:.1f}"
                        for k, v in sorted(pump.seconds.items())))
    pump.record_relay_positions()
    events = {name: unit.application.process_recorder.max_notification_id() or 0
              for name, unit in units.items()}
    for unit in units.values():
        unit.application.close()
    return {"visits": visits, **{f"{name}_events": n for name, n in events.items()},
            "build_seconds": round(time.monotonic() - started),
            "consumer_ms_per_message": {
                name: round(1000 * pump.seconds[name] / pump.messages[name], 2)
                for name in pump.seconds}}


# Measure ----------------------------------------------------------------------------------------
def exercise(name: str, base: str, headers: dict[str, str], city: City, month: str) -> int:
    """Typical reads of the service (each first catches its read models up); returns how
    many answered 200."""
    import httpx

    today = datetime.now(UTC).astimezone(TZ).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    areas = [f"area-{a:02d}" for a in range(city.areas)]
    urls: list[str] = []
    if name == "dispatch":
        for area in areas:
            urls += [f"/dispatch/areas/{area}/visits?date={yesterday}",
                     f"/dispatch/areas/{area}/elders", f"/dispatch/areas/{area}/caregivers",
                     f"/dispatch/areas/{area}/alerts?open=true"]
        urls += [f"/dispatch/caregivers/C{i:04d}/route?date={yesterday}"
                 for i in range(0, city.caregivers, max(1, city.caregivers // 50))]
        urls += [f"/dispatch/elders/E{i:05d}" for i in range(0, city.elders, 97)]
    elif name == "ledger":
        urls += [f"/ledger/elders/E{i:05d}/balance?month={month}"
                 for i in range(0, city.elders, 97)]
        urls += [f"/ledger/areas/{area}/months/{month}/statements" for area in areas[:5]]
        urls += ["/ledger/trial-balance"]
    else:
        urls += [f"/timebank/accounts/VOL{i:03d}" for i in range(city.volunteers)]
    ok = 0
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        for url in urls:
            ok += client.get(url).status_code == 200
    return ok


def measure(args: argparse.Namespace, data_dir: Path, dbname: str,
            say: Any) -> list[dict[str, Any]]:
    from services.runtime.broker import LocalBroker

    city = City(args.elders, args.caregivers, args.areas, args.volunteers)
    headers = admin_headers(data_dir)
    month = (datetime.now(UTC).astimezone(TZ).date() - timedelta(days=1)).strftime("%Y-%m")
    rows = []
    with LocalBroker(log_dir=data_dir) as broker:
        for name in SERVICES:
            service = start_service(name, data_dir, dbname, broker.bootstrap_servers)
            try:
                started = time.monotonic()
                wait_ready([service], timeout_s=900)
                ready_s = time.monotonic() - started
                idle = rss_kb(service.pid)
                ok = exercise(name, service.base_url, headers, city, month)
                after = rss_kb(service.pid)
                rows.append({"service": name, "ready_s": round(ready_s, 1),
                             "rss_ready_mb": round(idle["VmRSS"] / 1024),
                             "rss_mb": round(after["VmRSS"] / 1024),
                             "peak_mb": round(after["VmHWM"] / 1024),
                             "queries_ok": ok, "exercise_s": round(
                                 time.monotonic() - started - ready_s, 1)})
                say(json.dumps(rows[-1]))
            finally:
                service.stop()
    return rows


def table(result: dict[str, Any]) -> str:
    b = result["build"]
    rows = [[r["service"], r["rss_ready_mb"], r["rss_mb"], r["peak_mb"],
             b.get(f"{r['service']}_events"), r["ready_s"], r["exercise_s"]]
            for r in result["services"]]
    return markdown_table(["service", "RSS ready MB", "RSS after queries MB", "peak MB",
                           "events in its store", "start s", "queries s"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    dbname = fresh_database("homecare_memory")
    data_dir = Path(tempfile.mkdtemp(prefix="homecare-memory-"))
    load = LoadSampler.start()

    def say(text: str) -> None:
        load.sample()
        print(f"memory: {text}", flush=True)

    try:
        prepare_data_dir(data_dir)
        os.environ.setdefault("HOMECARE_LOG_LEVEL", "WARNING")
        built = build(args, data_dir, dbname, say)
        rows = [] if args.build_only else measure(args, data_dir, dbname, say)
    finally:
        drop_database(dbname)
        shutil.rmtree(data_dir, ignore_errors=True)
    result = {"size": {"elders": args.elders, "caregivers": args.caregivers,
                       "volunteers": args.volunteers, "areas": args.areas, "days": args.days,
                       "visits_per_caregiver_day": args.visits_per_caregiver_day},
              "build": built, "services": rows, "loadavg_1min": load.summary(),
              "machine": machine()}
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
