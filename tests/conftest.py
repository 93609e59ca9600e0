"""Session fixtures shared by every test: the broker, PostgreSQL and the event-store persistence.

Environment knobs:

- ``KAFKA_BOOTSTRAP_SERVERS``: use that Kafka instead of starting a tansu broker for the session.
- ``HOMECARE_TEST_PG_HOST`` / ``_PORT`` / ``_USER`` / ``_PASSWORD``: the PostgreSQL server
  (default 127.0.0.1:5432, user postgres, trust auth). A fresh database is created per session
  and dropped at the end.
- ``HOMECARE_REQUIRE_PG``: PostgreSQL is required by default and an unreachable server fails
  the tests that need it; set it to 0 to skip them instead (e.g. a laptop without PostgreSQL).
- ``HOMECARE_TEST_PERSISTENCE``: ``sqlite``, ``postgres`` or ``both`` (default): which stores
  the `persistence`-parametrised tests run on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from services.runtime.broker import BOOTSTRAP_ENV, LocalBroker

_FALSE = {"0", "false", "no", "off", ""}


# -- Kafka -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker: KAFKA_BOOTSTRAP_SERVERS, or one local tansu."""
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        yield configured
        return
    broker = LocalBroker(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


# -- PostgreSQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )

    def dsn(self, dbname: str) -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The test PostgreSQL server, checked for reachability once per session."""
    server = PostgresServer(
        host=os.environ.get("HOMECARE_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("HOMECARE_TEST_PG_PORT", "5432")),
        user=os.environ.get("HOMECARE_TEST_PG_USER", "postgres"),
        password=os.environ.get("HOMECARE_TEST_PG_PASSWORD", ""),
    )
    try:
        server.connect().close()
    except psycopg.OperationalError as error:
        message = (
            f"PostgreSQL at {server.host}:{server.port} (user {server.user}) is unreachable: "
            f"{error}".strip()
        )
        if os.environ.get("HOMECARE_REQUIRE_PG", "1").strip().lower() in _FALSE:
            pytest.skip(f"{message} (HOMECARE_REQUIRE_PG=0: skipping PostgreSQL tests)")
        pytest.fail(
            f"{message}\nStart PostgreSQL, point HOMECARE_TEST_PG_HOST/PORT/USER/PASSWORD at "
            "one, or set HOMECARE_REQUIRE_PG=0 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    return server


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """Name of a database created for this test session and dropped after it."""
    name = f"homecare_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with postgres_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with postgres_server.connect() as conn:
            # FORCE ends connections a test left open (pools of applications not closed).
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer, postgres_database: str) -> str:
    """libpq URL of the session's test database."""
    return postgres_server.dsn(postgres_database)


@pytest.fixture(scope="session")
def postgres_env(postgres_server: PostgresServer, postgres_database: str) -> dict[str, str]:
    """eventsourcing's POSTGRES_* settings for the session's test database (no schema)."""
    return {
        "POSTGRES_DBNAME": postgres_database,
        "POSTGRES_HOST": postgres_server.host,
        "POSTGRES_PORT": str(postgres_server.port),
        "POSTGRES_USER": postgres_server.user,
        # eventsourcing insists on the variable; empty is right for trust auth.
        "POSTGRES_PASSWORD": postgres_server.password,
    }


# -- event-store persistence -----------------------------------------------------------------


def _persistence_kinds() -> list[str]:
    choice = os.environ.get("HOMECARE_TEST_PERSISTENCE", "both").strip().lower() or "both"
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    if choice not in kinds:
        raise pytest.UsageError(
            f"HOMECARE_TEST_PERSISTENCE={choice!r}: expected sqlite, postgres or both"
        )
    return kinds[choice]


@pytest.fixture(params=_persistence_kinds())
def persistence(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """eventsourcing environment for one test's event store, on SQLite and on PostgreSQL.

    The keys are unprefixed, so they apply to every application built with ``env=persistence``;
    a service-specific prefix (``LEDGER_...``) in the real environment would still win.
    PostgreSQL gets a fresh schema per test in the session database.
    """
    if request.param == "sqlite":
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "eventstore.sqlite"),
        }
        return
    postgres_server: PostgresServer = request.getfixturevalue("postgres_server")
    postgres_env: dict[str, str] = request.getfixturevalue("postgres_env")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    # eventsourcing creates tables in POSTGRES_SCHEMA but not the schema itself.
    with postgres_server.connect(postgres_env["POSTGRES_DBNAME"]) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield {
        # What the services run on: database functions, tracking in the same transaction.
        "PERSISTENCE_MODULE": "services.runtime.pgstore:TrackedPostgresFactory",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        **postgres_env,
        "POSTGRES_SCHEMA": schema,
    }
