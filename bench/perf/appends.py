"""Event-store appends per second on PostgreSQL next to a plain insert loop in the same run.

An append is one new event of one aggregate in its own transaction (what a command does): an
elder of dispatch's domain is assessed again and saved, through the services' own application
base and mapper (audit stamp, personal fields, zlib, AES-GCM) configured exactly as the services
configure their store (``event_store_env``), acting as an HTTP caller would. The plain loop is one
INSERT and one COMMIT per row through psycopg: the physical limit here. Stores: eventsourcing's
PostgreSQL recorder as it comes (no database functions; same mapper), and the store the services
run on (services/runtime/pgstore.py). Run:
`python -m bench.perf.appends [--appends 3000] [--writers 4] [--rounds 5] [--out FILE.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from statistics import median

import psycopg

from services.dispatch.application import PERSONAL_DATA
from services.dispatch.domain.people import Elder
from services.runtime.audit import acting_as
from services.runtime.cipher import new_key
from services.runtime.eventstore import ServiceApplication, event_store_env
from services.runtime.settings import SharedSettings

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SERVICE = "appendbench"
# What differs from the services' configuration (None: exactly as the services run).
STORES: dict[str, dict[str, str] | None] = {
    "eventsourcing (untuned)": {"PERSISTENCE_MODULE": "eventsourcing.postgres",
                                "POSTGRES_ENABLE_DB_FUNCTIONS": "n"},
    "services' store (pgstore)": None,
}


class Store(ServiceApplication):
    """An application with dispatch's personal-data declarations (elders' fields sealed)."""

    name = "AppendBench"
    personal_data = PERSONAL_DATA


def store_env(dbname: str, changes: dict[str, str] | None, writers: int) -> dict[str, str]:
    """The services' event-store settings for this database (a schema of its own), with the
    store's changes applied, and a pool no smaller than the writers."""
    settings = SharedSettings(store="postgres", postgres_dbname=dbname,
                              postgres_host=PG["host"], postgres_port=PG["port"],
                              postgres_user=PG["user"], cipher_key=new_key())
    prefix = SERVICE.upper() + "_"
    env = {k.removeprefix(prefix): v for k, v in event_store_env(SERVICE, settings).items()}
    env.update(changes or {})
    env["POSTGRES_SCHEMA"] = "s" + uuid.uuid4().hex[:8]
    env["POSTGRES_POOL_SIZE"] = str(max(int(env.get("POSTGRES_POOL_SIZE", "1")), writers))
    return env


def new_elder(i: int) -> Elder:
    return Elder(elder_id=f"E-{uuid.uuid4().hex[:8]}-{i}", name="王秀英", service_area_id="A-1",
                 lat=31.2, lon=121.4, confirmation_code="4821", address="上海市静安区某路 1 号",
                 phone="13800000000", family_phone="13900000000", id_number="310101194001010000",
                 capability_level=2)


def appends_per_second(dbname: str, changes: dict[str, str] | None, appends: int,
                       writers: int) -> tuple[float, float]:
    """Appends per second, and this process's CPU time per append in microseconds (what the
    client spends: less disturbed than the rate by a busy machine)."""
    env = store_env(dbname, changes, writers)
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as conn:
        conn.execute(f"CREATE SCHEMA {env['POSTGRES_SCHEMA']}")
    store = Store(env=env)
    elders = [new_elder(i) for i in range(writers)]
    store.save(*elders)
    per_writer = appends // writers
    day = date(2025, 1, 1)

    def run(i: int) -> None:
        elder = elders[i]
        with acting_as("dispatcher:D-1"):
            for n in range(per_writer):
                elder.assess(capability_level=n % 4, assessed_on=day)
                store.save(elder)

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(run, range(writers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    done = per_writer * writers
    return done / elapsed, cpu / done * 1e6


def plain_inserts_per_second(dbname: str, rows: int, writers: int) -> float:
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS plain_bench (id uuid, version int, "
                     "topic text, state bytea, PRIMARY KEY (id, version))")
    per_writer = rows // writers

    def run(_: int) -> None:
        with psycopg.connect(dbname=dbname, **PG) as conn:
            originator = uuid.uuid4()
            for version in range(per_writer):
                conn.execute("INSERT INTO plain_bench VALUES (%s, %s, 'bench', %s)",
                             (originator, version, b"x" * 120))
                conn.commit()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(run, range(writers)))
    return per_writer * writers / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    dbname = f"homecare_appends_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    rows = []
    try:
        for writers in (1, args.writers):
            # The machine may be shared: each round runs the plain loop and then every store
            # (appends / rounds each), and the figures are medians over the rounds, the ratio
            # being the median of each round's ratio to that round's plain loop.
            size = max(writers, args.appends // args.rounds)
            plains: list[float] = []
            rates: dict[str, list[tuple[float, float]]] = {name: [] for name in STORES}
            loads: list[float] = []
            for _ in range(args.rounds):
                plains.append(plain_inserts_per_second(dbname, size, writers))
                for name, changes in STORES.items():
                    rates[name].append(appends_per_second(dbname, changes, size, writers))
                loads.append(os.getloadavg()[0])
            for name, runs in rates.items():
                rows.append({
                    "writers": writers, "store": name, "rounds": args.rounds,
                    "appends_per_s": round(median(r for r, _ in runs)),
                    "client_cpu_us_per_append": round(median(c for _, c in runs)),
                    "plain_inserts_per_s": round(median(plains)),
                    "ratio": round(median(r / p for (r, _), p in zip(runs, plains, strict=True)),
                                   2),
                    "per_round": [[round(r), round(p)] for (r, _), p in zip(runs, plains,
                                                                            strict=True)],
                    "loadavg_1min": round(median(loads), 2)})
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, PostgreSQL on 127.0.0.1")
    print("| writers | store | appends/s | plain inserts/s | ratio | client CPU us/append | "
          "load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['writers']} | {r['store']} | {r['appends_per_s']} | "
              f"{r['plain_inserts_per_s']} | {r['ratio']} | {r['client_cpu_us_per_append']} | "
              f"{r['loadavg_1min']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
