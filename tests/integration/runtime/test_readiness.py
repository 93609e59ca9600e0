"""/readyz answers within a bound and says which check failed (issue: after the OpenAPI fuzz run
every event store read "unreachable", once after more than 10 s).

Real PostgreSQL event stores (the services' own configuration: pgstore, pool of 5 + 5).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.runtime.host import READINESS_CHECK_TIMEOUT_S, Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Every check runs at once, each bounded: the whole answer within this (with some slack for a
# loaded machine).
BOUND_S = READINESS_CHECK_TIMEOUT_S + 2.0


@pytest.fixture
def host(tmp_path: Path, postgres_server: Any) -> Iterator[Host]:
    """Dispatch and ledger on a database of their own; the host is not started (no broker):
    readiness reports the broker as not ready and the stores as they are."""
    dbname = f"homecare_rz_{uuid.uuid4().hex[:10]}"
    settings = SharedSettings(
        store="postgres", data_dir=tmp_path, postgres_dbname=dbname,
        postgres_host=postgres_server.host, postgres_port=postgres_server.port,
        postgres_user=postgres_server.user, postgres_password=postgres_server.password)
    units = build_units(["dispatch", "ledger"], settings)
    try:
        yield Host(units, settings, bootstrap_servers="127.0.0.1:1")
    finally:
        for unit in units:
            unit.application.close()
        with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                             user=postgres_server.user, password=postgres_server.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _pool(host: Host, service: str) -> Any:
    unit = next(u for u in host.units if u.name == service)
    return unit.application.process_recorder.datastore.pool  # type: ignore[attr-defined]


async def _timed_readiness(host: Host) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    report = await host.readiness()
    return report, time.monotonic() - started


async def test_reachable_stores_are_reported_ready(host: Host) -> None:
    """Both stores answer: both checks true, the broker (not started) false, so not ready."""
    report, _ = await _timed_readiness(host)
    assert report["checks"] == {"dispatch_event_store": True, "ledger_event_store": True,
                                "broker": False}
    assert report["ready"] is False


async def test_a_store_whose_pool_is_exhausted_is_not_ready_within_the_bound(
        host: Host, caplog: pytest.LogCaptureFixture) -> None:
    """Every pooled connection of dispatch's store is taken (pool 5 + overflow 5): the check
    gives up after its timeout instead of waiting 30 s per attempt through the recorder's ten
    retries; dispatch is reported not ready (and why, at WARNING), the ledger still ready; once
    the connections are back, dispatch is ready again."""
    pool = _pool(host, "dispatch")
    pool.open()
    held = [pool.getconn(timeout=10) for _ in range(pool.max_size)]
    try:
        with caplog.at_level(logging.WARNING):
            report, elapsed = await _timed_readiness(host)
        assert elapsed < BOUND_S, f"readiness took {elapsed:.1f} s"
        assert report["checks"]["dispatch_event_store"] is False
        assert report["checks"]["ledger_event_store"] is True
        assert "outbox-relay:dispatch" not in report["outbox_backlog"]  # no relays: not started
        assert any("dispatch" in r.getMessage().lower() and r.levelno == logging.WARNING
                   and r.exc_info for r in caplog.records), caplog.text
    finally:
        for conn in held:
            pool.putconn(conn)
    report, _ = await _timed_readiness(host)
    assert report["checks"]["dispatch_event_store"] is True


async def test_readiness_does_not_queue_behind_busy_default_threads(host: Host) -> None:
    """asyncio's default executor (shared with consumers, relays, periodic tasks and each
    request's token check; 6 threads on 2 cores) is fully busy: readiness still answers at once,
    on threads of its own, and finds both stores reachable."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    busy = [loop.run_in_executor(None, release.wait, 30) for _ in range(40)]
    try:
        report, elapsed = await _timed_readiness(host)
        assert elapsed < BOUND_S, f"readiness took {elapsed:.1f} s"
        assert report["checks"]["dispatch_event_store"] is True
        assert report["checks"]["ledger_event_store"] is True
    finally:
        release.set()
        await asyncio.gather(*busy)


async def test_a_store_that_never_answers_is_not_ready_within_the_bound(
        host: Host) -> None:
    """A database that takes the connection and then says nothing (hung, or a black-holed
    network): dispatch's pool points at a socket that accepts and never replies. Dispatch is
    reported not ready within the bound (not after the 30 s connect timeout), the ledger ready."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        unit = next(u for u in host.units if u.name == "dispatch")
        datastore = unit.application.process_recorder.datastore  # type: ignore[attr-defined]
        datastore.pool.close()
        from psycopg_pool import ConnectionPool

        datastore.pool = ConnectionPool(
            kwargs={"host": "127.0.0.1", "port": silent.getsockname()[1], "dbname": "x",
                    "user": "x", "connect_timeout": 30}, min_size=1, open=False)
        report, elapsed = await _timed_readiness(host)
        assert elapsed < BOUND_S, f"readiness took {elapsed:.1f} s"
        assert report["checks"]["dispatch_event_store"] is False
        assert report["checks"]["ledger_event_store"] is True
    finally:
        silent.close()


def test_readyz_documents_its_503(tmp_path: Path) -> None:
    """The OpenAPI schema of /readyz lists 503 (not ready) beside 200, both with the report's
    shape (what the fuzz test holds every status to)."""
    settings = SharedSettings(store="sqlite", data_dir=tmp_path)
    app = create_http_app(Host(build_units(["ledger"], settings), settings))
    responses = app.openapi()["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
    for status in ("200", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ReadinessReport"}
