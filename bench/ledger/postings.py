"""Ledger postings per second on PostgreSQL, next to a plain insert loop measured in the same run.

A posting is what the ledger writes for one charged visit leg: a Transfer and the two Accounts it
moves (three aggregates, one transaction, optimistic concurrency on both accounts). The plain
loop is one INSERT and one COMMIT per row with psycopg: the physical limit of this machine for a
durable write. Run: `python -m bench.ledger.postings [--postings 2000] [--writers 4]`.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from services.runtime.double_entry import Account, TransferFacts, open_transfer
from services.runtime.eventstore import ServiceApplication

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


class Books(ServiceApplication):
    name = "LedgerBench"


def _env(dbname: str, functions: bool) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": PG["host"], "POSTGRES_PORT": str(PG["port"]),
            "POSTGRES_USER": PG["user"], "POSTGRES_PASSWORD": "",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "y" if functions else "n",
            "POSTGRES_POOL_SIZE": "8"}


def postings_per_second(dbname: str, postings: int, writers: int, functions: bool) -> float:
    """Each writer posts to its own pair of accounts (no conflicts: the physical rate)."""
    apps = [Books(env=_env(dbname, functions)) for _ in range(writers)]
    pairs = []
    for i, app in enumerate(apps):
        fund = Account(code=f"funding:{i}:{uuid.uuid4().hex}")
        elder = Account(code=f"elder:{i}:{uuid.uuid4().hex}")
        app.save(fund, elder)
        pairs.append((fund, elder))
    per_writer = postings // writers

    def run(i: int) -> None:
        app, (fund, elder) = apps[i], pairs[i]
        for n in range(per_writer):
            transfer = open_transfer(f"bench:{i}:{n}:{uuid.uuid4().hex}", fund, elder, 1,
                                     pending=False, facts=TransferFacts("bench"))
            app.save(transfer, fund, elder)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(run, range(writers)))
    elapsed = time.perf_counter() - started
    for app in apps:
        app.close()
    return per_writer * writers / elapsed


def plain_inserts_per_second(dbname: str, rows: int, writers: int) -> float:
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS plain_bench (id uuid PRIMARY KEY, "
                     "version int, topic text, state bytea)")
    per_writer = rows // writers

    def run(_: int) -> None:
        with psycopg.connect(dbname=dbname, **PG) as conn:
            for _ in range(per_writer):
                conn.execute("INSERT INTO plain_bench VALUES (%s, 1, 'bench', %s)",
                             (uuid.uuid4(), b"x" * 200))
                conn.commit()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(run, range(writers)))
    return per_writer * writers / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    dbname = f"homecare_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        rows = []
        for writers in (1, args.writers):
            plain = plain_inserts_per_second(dbname, args.postings, writers)
            for functions in (False, True):
                rate = postings_per_second(dbname, args.postings, writers, functions)
                rows.append({"writers": writers, "db_functions": functions,
                             "postings_per_s": round(rate), "plain_inserts_per_s": round(plain),
                             "ratio": round(rate / plain, 2)})
        print("| writers | db functions | postings/s | plain inserts/s | ratio |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['writers']} | {'on' if r['db_functions'] else 'off'} | "
                  f"{r['postings_per_s']} | {r['plain_inserts_per_s']} | {r['ratio']} |")
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
