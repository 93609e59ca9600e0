"""A consumer killed between its database commit and its broker commit, then restarted,
leaves exactly one posting (effectively-once across a real crash).

The ledger runs as its own process (`homecare up --services ledger`) against PostgreSQL and a
tansu broker started by the test. With the fault switch on, the process exits hard right after
the database commit of the first message, before the offset is committed to the broker. The
restarted process gets the same message again and must not post it twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from contracts.events.visits import VisitVerified
from services.runtime.broker import LocalBroker, free_port
from services.runtime.topics import TopicSpec, ensure_topics
from tests.support.auth import bearer_for_data_dir

pytestmark = pytest.mark.integration

AREA = "yiwu-choucheng"
STARTED = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _start_ledger(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--services", "ledger",
         "--port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ledger exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"ledger not ready:\n{log.read_text()[-3000:]}")


def test_killed_after_database_commit_and_restarted_posts_once(tmp_path, postgres_server):
    """Exit right after the DB commit, restart, get the message again: one posting."""
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    dbname = f"homecare_fault_{uuid.uuid4().hex[:8]}"
    log = tmp_path / "ledger.log"
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HOMECARE_STORE": "postgres",
        "HOMECARE_POSTGRES_HOST": postgres_server.host,
        "HOMECARE_POSTGRES_PORT": str(postgres_server.port),
        "HOMECARE_POSTGRES_USER": postgres_server.user,
        "HOMECARE_POSTGRES_PASSWORD": postgres_server.password,
        "HOMECARE_POSTGRES_DBNAME": dbname,
        "HOMECARE_DATA_DIR": str(tmp_path),
        "HOMECARE_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "HOMECARE_LOG_JSON": "false",
    }
    try:
        ensure_topics(broker.bootstrap_servers,
                      [TopicSpec("homecare.visits", 6, dlq=True)], 30.0)
        event = VisitVerified(service_area_id=AREA, payload={
            "visit_id": "V-crash-1", "order_id": "O-1", "elder_id": "E-1002",
            "caregiver_id": "C-201", "caregiver_kind": "employee", "provider_id": "P-yiwu-anle",
            "service_type": "bathing", "started_at": STARTED,
            "ended_at": STARTED + timedelta(minutes=40), "actual_minutes": 40,
            "planned_minutes": 60, "confirmation": "elder_code", "location_verified": True})
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        producer.send("homecare.visits", event.to_bytes(), key=AREA.encode()).get(timeout=10)
        producer.close()

        crashing = _start_ledger(port, {**env, "HOMECARE_FAULT_EXIT_AFTER_COMMIT": "true"}, log)
        assert crashing.wait(timeout=90) == 86, log.read_text()[-3000:]
        assert "fault injection" in log.read_text()

        restarted = _start_ledger(port, env, log)
        try:
            _wait_ready(port, restarted, log)
            base = f"http://127.0.0.1:{port}/ledger"
            deadline = time.monotonic() + 30
            # Wait until the restarted consumer has been given the message again and skipped it.
            while time.monotonic() < deadline and "redelivered" not in _metrics(port):
                time.sleep(0.3)
            assert 'outcome="redelivered"' in _metrics(port), _metrics(port)
            admin = bearer_for_data_dir(tmp_path)  # the process's own local keys
            postings = httpx.get(f"{base}/accounts/elder:E-1002:entitlement:2026-11/postings",
                                 headers=admin).json()
            charges = [p for p in postings if p["visit_id"] == "V-crash-1"]
            assert len(charges) == 1 and charges[0]["amount"] == 40
            assert httpx.get(f"{base}/trial-balance",
                             headers=admin).json()["sum_of_balances"] == 0
        finally:
            restarted.terminate()
            restarted.wait(timeout=30)
    finally:
        broker.stop()
        with postgres_server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _metrics(port: int) -> str:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics/", timeout=5).text
    return "\n".join(line for line in text.splitlines()
                     if line.startswith("homecare_messages_consumed_total"))
