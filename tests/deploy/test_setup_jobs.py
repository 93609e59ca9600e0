"""The setup Jobs' scripts, taken from the rendered dev overlay and run as the Job would run
them (same command and environment, pointed at this machine's broker and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, DLQ_TOPICS
from services.runtime.broker import LocalBroker
from services.runtime.cipher import new_key
from tests.deploy.conftest import named, rendered

pytestmark = pytest.mark.integration


def job_command(name: str) -> tuple[list[str], dict[str, str]]:
    """The Job's command line and its plain environment (ConfigMap + literal env values)."""
    docs = rendered("dev")
    (container,) = named(docs, "Job", name)["spec"]["template"]["spec"]["containers"]
    env = dict(named(docs, "ConfigMap", "homecare-config")["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    command = [sys.executable if part == "python" else part for part in container["command"]]
    return command + container["args"], env


def run(command: list[str], env: dict[str, str], **overrides: Any) -> str:
    result = subprocess.run(command, env={**os.environ, **env, **overrides},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_topic_bootstrap_job_creates_every_topic_and_is_idempotent(tmp_path):
    """On an empty broker the Job creates the event topics with the Job's partitions and the
    dead-letter topics with one; run again it creates nothing and succeeds."""
    command, env = job_command("homecare-topic-bootstrap")
    with LocalBroker(tmp_path) as broker:
        first = run(command, env, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        assert "created: none" not in first
        again = run(command, env, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        assert "created: none" in again
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            described = {t["name"]: len(t["partitions"])
                         for t in admin.describe_topics([*ALL_TOPICS, *DLQ_TOPICS])}
        finally:
            admin.close()
    partitions = int(env["TOPIC_PARTITIONS"])
    assert described == {**{t: partitions for t in ALL_TOPICS}, **{t: 1 for t in DLQ_TOPICS}}
    assert partitions >= max(DEFAULT_PARTITIONS[t] for t in ALL_TOPICS)


def test_store_init_job_creates_each_services_event_store_in_its_own_database(
        postgres_server):
    """The Job creates, per service, its database's schema with the event-store tables
    (a second run is the library's CREATE ... IF NOT EXISTS: not repeated here)."""
    command, env = job_command("homecare-store-init")
    suffix = uuid.uuid4().hex[:8]
    dbnames = {s: f"homecare_job_{s}_{suffix}" for s in ("dispatch", "ledger", "timebank")}
    overrides = {
        "HOMECARE_POSTGRES_HOST": postgres_server.host,
        "HOMECARE_POSTGRES_PORT": str(postgres_server.port),
        "HOMECARE_POSTGRES_USER": postgres_server.user,
        "HOMECARE_POSTGRES_PASSWORD": postgres_server.password,
        **{f"{s.upper()}_POSTGRES_DBNAME": db for s, db in dbnames.items()},
        # what the Secret homecare-cipher gives the Job in the cluster
        "HOMECARE_CIPHER_KEY": new_key(),
    }
    assert set(overrides) >= {k for k in env if k.endswith("_POSTGRES_DBNAME")
                              and not k.startswith("HOMECARE")}
    try:
        out = run(command, env, **overrides)
        assert out.count("event store ready:") == 3
        for service, db in dbnames.items():
            with postgres_server.connect(db) as conn:
                tables = {r[0] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (service,))}
            assert {f"{service}_events", f"{service}_tracking"} <= tables, tables
    finally:
        with postgres_server.connect() as conn:
            for db in dbnames.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
