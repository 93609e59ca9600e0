"""Graceful shutdown drains in-flight work: SIGTERM to `homecare up` while requests are in
flight.

`homecare up` reports not ready at once and keeps reading requests for a second (requests
already sent are not reset); uvicorn then stops accepting and finishes the requests it has
(timeout_graceful_shutdown); then the lifespan stops the host: consumers finish the message in
hand and commit, periodic tasks and relays stop, each relay publishes what is still stored, the
broker group is left. So every request sent before the signal gets a real answer, the process
exits as documented (uvicorn re-raises SIGTERM after a clean shutdown: -15), and nothing is left
in an outbox: every event the requests (and the consumers they set off) stored was published
before the process ended.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.runtime.broker import free_port
from tests.support.auth import bearer_for_data_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

AREA = "yiwu-choucheng"
ELDERS = ("E-1001", "E-1002", "E-1003")


def _start(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMECARE_", "KAFKA_"))}
    env["HOMECARE_LOG_JSON"] = "false"
    env["HOMECARE_DATA_DIR"] = str(workdir / "var")
    log = (workdir / "homecare.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port)],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            pytest.fail(f"homecare up exited:\n{_log(workdir)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"homecare up not ready in 90 s:\n{_log(workdir)}")
        time.sleep(0.3)


def _log(workdir: Path) -> str:
    return (workdir / "homecare.log").read_text(errors="replace")[-4000:]


def _outbox_backlogs(data_dir: Path) -> dict[str, int]:
    """Per service: events stored but not published by its relay (the store read directly: the
    relay records how far it published as a tracking record, outbox-relay:<service>@<log>)."""
    backlogs = {}
    for service in ("dispatch", "ledger", "timebank"):
        with sqlite3.connect(f"file:{data_dir / f'{service}.sqlite'}?mode=ro", uri=True) as db:
            (latest,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
            (relayed,) = db.execute(
                "SELECT max(notification_id) FROM tracking WHERE application_name LIKE ?",
                (f"outbox-relay:{service}@%",)).fetchone()
        backlogs[service] = (latest or 0) - (relayed or 0)
    return backlogs


async def _in_flight(base: str, headers: dict[str, str], day: date) -> list[Any]:
    """20 concurrent requests that write: 10 day plans and 10 orders (each order's events go
    through dispatch's outbox to the ledger's consumer, whose hold goes through its own)."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        calls = [client.post(f"/dispatch/areas/{AREA}/plans",
                             params={"date": (day + timedelta(days=i)).isoformat()})
                 for i in range(10)]
        calls += [client.post("/dispatch/orders", json={
            "elder_id": ELDERS[i % len(ELDERS)], "service_type": "bathing",
            "requested_date": (day + timedelta(days=i % 5)).isoformat(),
            "order_id": f"O-drain-{i}"}) for i in range(10)]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_sigterm_with_requests_in_flight_answers_them_and_leaves_no_backlog(tmp_path: Path
                                                                              ) -> None:
    """SIGTERM half a second into 20 concurrent writing requests: /readyz says 503 (serving:
    false) at once, every request gets an HTTP answer
    (no reset, no 5xx), the process exits with the documented status within the graceful
    timeout, every event stored was published (outbox backlog 0 in the stores), and a restart
    on the same data is ready with backlog 0."""
    port = free_port()
    process = _start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    headers = bearer_for_data_dir(tmp_path / "var", "admin")
    day = date.today() + timedelta(days=1)
    try:
        async def scenario() -> tuple[list[Any], float]:
            requests = asyncio.create_task(_in_flight(base, headers, day))
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                await asyncio.sleep(0.1)
                draining = await client.get("/readyz")
            assert draining.status_code == 503, draining.text
            assert draining.json()["checks"]["serving"] is False
            answers = await requests
            await asyncio.to_thread(process.wait, 60)
            return answers, time.monotonic() - signalled

        answers, took = asyncio.run(scenario())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Plans and orders for demo elders on coming days: each is done (201), none refused.
    failed = [a if isinstance(a, Exception) else f"{a.status_code} {a.text[:200]}"
              for a in answers if isinstance(a, Exception) or a.status_code != 201]
    assert not failed, f"requests in flight not answered: {failed}\n{_log(tmp_path)}"
    assert process.returncode in (0, -signal.SIGTERM), _log(tmp_path)
    assert "stopped" in _log(tmp_path), "the local broker was not stopped on shutdown"
    assert took < 30, f"shutdown took {took:.1f} s"
    assert _outbox_backlogs(tmp_path / "var") == {"dispatch": 0, "ledger": 0, "timebank": 0}

    process = _start(tmp_path, port)  # the same data: ready, nothing left to relay
    try:
        report = httpx.get(f"{base}/readyz", timeout=10).json()
        assert report["ready"], report
        deadline = time.monotonic() + 30
        while sum(report["outbox_backlog"].values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            report = httpx.get(f"{base}/readyz", timeout=10).json()
        assert sum(report["outbox_backlog"].values()) == 0, report
    finally:
        process.terminate()
        process.wait(timeout=30)
