"""What a restart of `homecare up` costs when its memory-only local broker comes back empty
(issue 8).

Consumer and outbox-relay positions belong to one broker log (services/runtime/host.py): a host
that starts its own local broker tracks them under that broker's incarnation, so after a restart
every relay publishes its whole outbox again and every consumer reads it all again, dropping what
it had processed by event id (its inbox). This measures that on the event stores of a finished
run, e.g. `homecare demo --headless --data-dir D` (the stores are in D/stores; they are changed:
copy them first), and, for comparison, a restart where the broker's log survives (a broker kept
running between the two starts, as an external Kafka would).

    python -m bench.perf.restart_replay var/demo/district-1-2026-01-01/stores --restarts 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from services.runtime.settings import SERVICE_NAMES, SharedSettings


def group_prefix(stores: Path) -> str:
    """The consumer-group prefix the stores were written with (a demo run picks its own): the
    inbox is keyed by the consumer's name, so a restart must use the same one."""
    with sqlite3.connect(stores / "ledger.sqlite") as db:
        names = [name for (name,) in db.execute("SELECT application_name FROM tracking")]
    for name in names:
        if "-ledger@" in name or "-ledger:" in name:
            return name.split("-ledger")[0]
    raise SystemExit(f"no ledger consumer tracked in {stores}/ledger.sqlite")


def _outcomes() -> dict[str, float]:
    from services.runtime.observability import MESSAGES_CONSUMED

    totals: dict[str, float] = {}
    for metric in MESSAGES_CONSUMED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0) + sample.value
    return totals


def _end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from services.runtime.broker import end_offsets

    return end_offsets(bootstrap, topics)


def _caught_up(host: Any) -> bool:
    """Every relay has published its outbox and every consumer has tracked the end of every
    partition it reads, in this broker log."""
    if any(relay.backlog() for relay in host.relays):
        return False
    for unit in host.units:
        consumer = host.consumers.get(unit.name)
        if consumer is None:
            continue
        topics = sorted(unit.messaging.consumer.handlers_by_topic)
        for (topic, partition), end in _end_offsets(host.bootstrap_servers, topics).items():
            tracked = unit.application.process_recorder.max_tracking_id(
                consumer.tracking_name(f"{topic}:{partition}")) or 0
            if tracked < end:
                return False
    return True


async def restart(stores: Path, prefix: str, bootstrap: str | None,
                  timeout_s: float = 600) -> dict[str, Any]:
    """Start the three services on ``stores`` (their own local broker unless ``bootstrap``),
    wait until relays and consumers are caught up, stop; what it took."""
    from contracts.topics import ALL_TOPICS
    from services.runtime.host import Host
    from services.system import build_units

    settings = SharedSettings(store="sqlite", data_dir=stores, kafka_bootstrap_servers=bootstrap,
                              consumer_group_prefix=prefix, log_level="WARNING")
    units = build_units(list(SERVICE_NAMES), settings)
    notifications = {u.name: u.application.process_recorder.max_notification_id() or 0
                     for u in units}
    outcomes = _outcomes()
    began = time.perf_counter()
    host = Host(units, settings)
    await host.start()
    started = time.perf_counter()
    try:
        deadline = started + timeout_s
        while any([await asyncio.to_thread(r.backlog) for r in host.relays]):
            await asyncio.sleep(0.05)
        relayed = time.perf_counter()
        while not await asyncio.to_thread(_caught_up, host):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not caught up after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
        done = time.perf_counter()
        records = sum((await asyncio.to_thread(
            _end_offsets, host.bootstrap_servers, list(ALL_TOPICS))).values())
        written = {u.name: (u.application.process_recorder.max_notification_id() or 0)
                   - notifications[u.name] for u in units}
    finally:
        await host.stop()
    after = _outcomes()
    return {
        "broker": "fresh local" if bootstrap is None else "kept",
        "broker_log": host.log_id,
        "notifications": notifications,
        "records_in_log": records,
        "consumed": {k: int(after.get(k, 0) - outcomes.get(k, 0)) for k in sorted(after)
                     if after.get(k, 0) - outcomes.get(k, 0)},
        "events_written_by_replay": written,
        "start_s": round(started - began, 2),
        "relayed_after_start_s": round(relayed - started, 2),
        "caught_up_after_start_s": round(done - started, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }


async def main(stores: Path, restarts: int) -> list[dict[str, Any]]:
    from services.runtime.broker import LocalBroker

    prefix = group_prefix(stores)
    rows = [await restart(stores, prefix, None) for _ in range(restarts)]
    # For comparison: a log that survives the restart (the first start fills it).
    with LocalBroker(log_dir=stores) as broker:
        await restart(stores, prefix, broker.bootstrap_servers)
        rows.append(await restart(stores, prefix, broker.bootstrap_servers))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", type=Path, help="a finished run's event stores (SQLite)")
    parser.add_argument("--restarts", type=int, default=2)
    args = parser.parse_args()
    for row in asyncio.run(main(args.stores, args.restarts)):
        json.dump(row, sys.stdout, ensure_ascii=False)
        print(flush=True)
