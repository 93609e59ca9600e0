"""Event-store appends per second on PostgreSQL next to a plain insert loop in the same run.

An append is one new event of one aggregate in its own transaction (what a command does). The
plain loop is one INSERT and one COMMIT per row through psycopg: the physical limit here.
Configurations: eventsourcing as it comes (no database functions), and the store the services
run on (services/runtime/pgstore.py: database functions, tracking kept). Run:
`python -m bench.perf.appends [--appends 3000] [--writers 4] [--out FILE.json]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import ServiceApplication

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
CONFIGS = {
    "eventsourcing (untuned)": {"PERSISTENCE_MODULE": "eventsourcing.postgres",
                                "POSTGRES_ENABLE_DB_FUNCTIONS": "n"},
    "services' store (pgstore)": {
        "PERSISTENCE_MODULE": "services.runtime.pgstore:TrackedPostgresFactory",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y"},
}


class Counter(Aggregate):
    @event("Started")
    def __init__(self) -> None:
        self.n = 0

    @event("Counted")
    def count(self) -> None:
        self.n += 1


class Store(ServiceApplication):
    name = "AppendBench"


def appends_per_second(dbname: str, config: dict[str, str], appends: int, writers: int) -> float:
    env = {**config, "POSTGRES_DBNAME": dbname, "POSTGRES_HOST": PG["host"],
           "POSTGRES_PORT": str(PG["port"]), "POSTGRES_USER": PG["user"],
           "POSTGRES_PASSWORD": "", "POSTGRES_POOL_SIZE": str(max(2, writers)),
           "POSTGRES_SCHEMA": "s" + uuid.uuid4().hex[:8]}
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as conn:
        conn.execute(f"CREATE SCHEMA {env['POSTGRES_SCHEMA']}")
    store = Store(env=env)
    counters = [Counter() for _ in range(writers)]
    store.save(*counters)
    per_writer = appends // writers

    def run(i: int) -> None:
        counter = counters[i]
        for _ in range(per_writer):
            counter.count()
            store.save(counter)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(run, range(writers)))
    elapsed = time.perf_counter() - started
    store.close()
    return per_writer * writers / elapsed


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
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    dbname = f"homecare_appends_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    rows = []
    try:
        for writers in (1, args.writers):
            plain = plain_inserts_per_second(dbname, args.appends, writers)
            for name, config in CONFIGS.items():
                rate = appends_per_second(dbname, config, args.appends, writers)
                rows.append({"writers": writers, "store": name, "appends_per_s": round(rate),
                             "plain_inserts_per_s": round(plain),
                             "ratio": round(rate / plain, 2)})
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, PostgreSQL on 127.0.0.1")
    print("| writers | store | appends/s | plain inserts/s | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['writers']} | {r['store']} | {r['appends_per_s']} | "
              f"{r['plain_inserts_per_s']} | {r['ratio']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
