"""The fault-injection suite in its reduced size (the full size is `make faults`).

Three service processes on PostgreSQL and a tansu broker; visits driven over HTTP while each
service is killed -9 and started again, the broker is killed -9 and started again EMPTY on the same
port (tansu is memory-only; the running services notice its new log and move to it) and the
services' PostgreSQL backends are terminated. Afterwards every invariant of tests/faults/harness.py
must hold. HOMECARE_FAULTS_VISITS changes the size (default 300 here).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.faults.harness import SERVICES, FaultConfig, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_visits_under_kills_broker_restarts_and_dropped_connections_keep_every_invariant(
        tmp_path, postgres_server):
    """Every verified visit is charged (employee) or credited (volunteer) exactly once, the
    postings of each charge add up to it, both books sum to zero, every accepted order exists,
    no message is left unconsumed, and no request failed for good, although every kind of
    fault happened while the visits were driven."""
    visits = int(os.environ.get("HOMECARE_FAULTS_VISITS", "300"))
    config = FaultConfig(
        visits=visits, kills_per_service=1, broker_restarts=1, connection_drops=1,
        seed=int(os.environ.get("HOMECARE_FAULTS_SEED", "8")), workdir=tmp_path,
        pg_host=postgres_server.host, pg_port=postgres_server.port,
        pg_user=postgres_server.user, pg_password=postgres_server.password)
    report = asyncio.run(run(config, log=print))
    print(report.text())
    summary = report.summary()
    assert report.problems == []
    assert report.counts.failed == 0, report.counts.failures
    assert summary["visits_driven"] == visits
    assert summary["verified"] + summary["unassigned"] == visits
    assert summary["charged"] + summary["credited"] == summary["verified"]
    assert summary["credited"] > 0 and summary["charged"] > 0
    # Every kind of fault happened.
    assert summary["kills"] == dict.fromkeys(SERVICES, 1)
    assert summary["broker_restarts"] == 1
    assert summary["connection_drops"] == dict.fromkeys(SERVICES, 1)
    assert summary["ledger_sum_of_balances"] == 0 == summary["timebank_sum_of_balances"]
    assert all(lag == 0 for lag in summary["lag_after"].values())
