"""PostgreSQL event store: each append one statement, tracking in the same transaction.

eventsourcing 9.5.6's PostgreSQL recorder either runs several statements per append (its
statement path: BEGIN, LOCK TABLE, INSERT, COMMIT) or calls a database function that ignores the
tracking record passed with the events, and effectively-once processing depends on it being
written in the same transaction. This recorder appends with one statement in autocommit, the
tracking row (when there is one) written by a data-modifying CTE of that same statement:
one round trip and one transaction either way. Selected with
``PERSISTENCE_MODULE=services.runtime.pgstore:TrackedPostgresFactory``.

Writers must not commit notification ids out of order: a reader following the log (the outbox
relay, which records how far it got) would pass over a lower id committed late, for good. The
library's statement path locks the events table (EXCLUSIVE) for that; here each append first
takes a transaction-scoped advisory lock of its own events table, then draws its ids, and holds
the lock until commit, which gives the same order for less work than a plpgsql call taking a
table lock (single appends 3,034 -> 3,236-3,463/s in a raw psycopg loop, quiet machine). The
library's insert function, and the one-event function of earlier versions of this file, are
replaced at start-up by versions taking the same advisory lock, so a process still running the
earlier code during a rolling upgrade keeps the order too.

Nor does it NOTIFY: no one here LISTENs (the outbox relay and the read models poll the log), and
a notifying commit takes a lock shared by the whole PostgreSQL cluster, so every service's (and
every other database's) notifying commits queued behind each other. eventsourcing's LISTEN-based
``subscribe()`` would wait for ever on this store, so it refuses.

The history of each step, with its figures, is in ``git log services/runtime/pgstore.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import errors, pq
from psycopg.generators import execute
from psycopg.sql import SQL, Identifier, Literal

log = logging.getLogger(__name__)


def _advisory_key(name: str) -> int:
    """A PostgreSQL advisory-lock key for ``name``: a signed 64-bit integer, stable across
    processes and versions."""
    digest = hashlib.blake2b(name.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def events_lock_key(schema: str, table: str) -> int:
    """The advisory-lock key that serialises appends to one events table."""
    return _advisory_key(f"homecare-events:{schema}.{table}")


class TrackedFunctionProcessRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema, table = datastore.schema, self.events_table_name
        self.events_lock_key = events_lock_key(schema, table)
        names = {
            "schema": Identifier(schema), "table": Identifier(table),
            "tracking": Identifier(self.tracking_table_name),
            "id_type": SQL(datastore.originator_id_type),
            "lock": SQL("SELECT pg_advisory_xact_lock({})").format(
                Literal(self.events_lock_key)),
            "event": Identifier(self.stored_event_type_name),
            "insert_events": Identifier(self.pg_function_name_insert_events),
        }
        # The database functions (the library's, and this file's earlier one-event function)
        # take the same lock, for processes still calling them.
        self.sql_create_statements[self.create_insert_function_statement_index] = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{insert_events}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN"
            "    PERFORM pg_advisory_xact_lock({key});"
            "    RETURN QUERY"
            "    INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "    SELECT originator_id, originator_version, topic, state FROM unnest(events)"
            "    RETURNING notification_id;"
            " END; $BODY$").format(key=Literal(self.events_lock_key), **names)
        self.sql_create_statements.append(SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{insert_event}(i {id_type}, v integer, "
            "tp text, st bytea) RETURNS bigint LANGUAGE plpgsql AS $BODY$"
            " DECLARE n bigint; BEGIN"
            "    PERFORM pg_advisory_xact_lock({key});"
            "    INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "    VALUES (i, v, tp, st) RETURNING notification_id INTO n;"
            "    RETURN n;"
            " END; $BODY$").format(
                insert_event=Identifier(f"hc_insert_event_{datastore.originator_id_type}"),
                key=Literal(self.events_lock_key), **names))

        # The appends. The lock is taken (scanning ``lock``) before the row is built, so before
        # its notification id is drawn; rows of ``unnest`` keep the events' order. Rendered to
        # bytes once: composing them per call costs the client more than the statement's parse.
        insert = SQL("INSERT INTO {schema}.{table} (originator_id, originator_version, topic, "
                     "state) ").format(**names)
        one = SQL("SELECT %s::{id_type}, %s::integer, %s::text, %s::bytea").format(**names)
        many = SQL("SELECT e.i, e.v, e.tp, e.st FROM unnest(%s::{id_type}[], %s::integer[], "
                   "%s::text[], %s::bytea[]) AS e(i, v, tp, st)").format(**names)
        tracked = SQL(
            "tracked AS (INSERT INTO {schema}.{tracking} (application_name, notification_id) "
            "VALUES (%s, %s) ON CONFLICT (application_name) DO UPDATE SET notification_id = "
            "EXCLUDED.notification_id WHERE {schema}.{tracking}.notification_id < "
            "EXCLUDED.notification_id RETURNING 1)").format(**names)
        returning = SQL(" RETURNING notification_id")

        def render(query: Any) -> bytes:
            return query.as_bytes(None)  # type: ignore[no-any-return]

        self.sql_append_one = render(SQL("WITH lock AS ({lock}) ").format(**names) + insert
                                     + one + SQL(" FROM lock") + returning)
        self.sql_append_many = render(SQL("WITH lock AS ({lock}) ").format(**names) + insert
                                      + many + SQL(", lock") + returning)
        # With tracking, no row comes back when the tracking row was already at or past this
        # position (nothing is then inserted: the message was processed before).
        self.sql_append_one_tracked = render(
            SQL("WITH lock AS ({lock}), ").format(**names) + tracked + SQL(" ") + insert + one
            + SQL(" FROM lock, tracked") + returning)
        self.sql_append_many_tracked = render(
            SQL("WITH lock AS ({lock}), ").format(**names) + tracked + SQL(" ") + insert + many
            + SQL(", lock, tracked") + returning)
        # One event (what nearly every command and message appends) goes to libpq directly: a
        # statement prepared once per connection, parameters and result in binary. psycopg's
        # cursor machinery (adapters, query conversion, result wrapping) cost the client about
        # 50 of 85 us per call: raw loop 2,632-3,090 -> 3,587-3,825 calls/s (quiet machine).
        self.lean = datastore.originator_id_type == "uuid"
        self.lean_one = _numbered(self.sql_append_one)
        self.lean_one_tracked = _numbered(self.sql_append_one_tracked)
        self.lean_many = _numbered(self.sql_append_many)
        self.lean_many_tracked = _numbered(self.sql_append_many_tracked)
        # A consumer's two questions about a message in one round trip (seen_before).
        self.sql_seen_before = SQL(
            "SELECT COALESCE((SELECT MAX(notification_id) FROM {schema}.{tracking} "
            "WHERE application_name = %s), 0) >= %s AS tracked, EXISTS (SELECT 1 FROM "
            "{schema}.{table} WHERE originator_id = %s) AS stored").format(**names).as_bytes(None)
        # ... and the same for a whole batch of messages (seen_before_many).
        self.sql_seen_before_many = SQL(
            "SELECT application_name AS name, MAX(notification_id) AS position, "
            "NULL::uuid AS stored FROM {schema}.{tracking} WHERE application_name = ANY(%s) "
            "GROUP BY application_name UNION ALL SELECT DISTINCT NULL, NULL::bigint, "
            "originator_id FROM {schema}.{table} WHERE originator_id = ANY(%s)"
        ).format(**names).as_bytes(None)

        # The library composes the queries below from SQL objects on every call, and psycopg
        # renders each to bytes again (identifier quoting included: a tenth of the ledger's
        # CPU in the pipeline's profile). Rendered once here, by shape.
        for attribute in ("max_tracking_id_statement", "max_notification_id_statement",
                          "insert_tracking_statement"):
            setattr(self, attribute, render(getattr(self, attribute)))
        self._from_events = render(SQL(" FROM {schema}.{table}").format(**names))
        # By shape: the query for psycopg, and its name and numbered form for libpq.
        self._select_events_sql: dict[tuple[bool, bool, bool, bool],
                                      tuple[bytes, bytes, bytes]] = {}
        self._select_notifications_sql: dict[tuple[bool, bool, bool, bool], bytes] = {}
        self._select_versions_sql = _numbered(
            b"SELECT notification_id, originator_id, originator_version" + self._from_events
            + b" WHERE notification_id >= %s ORDER BY notification_id LIMIT %s")

    def _select_events_query(self, shape: tuple[bool, bool, bool, bool]
                             ) -> tuple[bytes, bytes, bytes]:
        statements = self._select_events_sql.get(shape)
        if statements is None:
            gt, lte, desc, limit = shape
            where = (b" WHERE originator_id = %s"
                     + (b" AND originator_version > %s" if gt else b"")
                     + (b" AND originator_version <= %s" if lte else b"")
                     + (b" ORDER BY originator_version DESC" if desc
                        else b" ORDER BY originator_version ASC")
                     + (b" LIMIT %s" if limit else b""))
            statements = (b"SELECT *" + self._from_events + where,
                           b"hc_select_events_%d" % sum(bit << n for n, bit in enumerate(shape)),
                           _numbered(_EVENT_COLUMNS + self._from_events + where))
            self._select_events_sql[shape] = statements
        return statements

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events(self, originator_id: UUID | str, *, gt: int | None = None,
                      lte: int | None = None, desc: bool = False,
                      limit: int | None = None) -> Sequence[StoredEvent]:
        """As the library's, with the query rendered once per shape; with uuid ids, a
        statement prepared per connection and run through libpq in binary (reading aggregates
        from the store is most of what the ledger and the time bank ask of it)."""
        query, name, lean = self._select_events_query(
            (gt is not None, lte is not None, desc, limit is not None))
        bounds = [v for v in (gt, lte, limit) if v is not None]
        if self.lean and isinstance(originator_id, UUID):
            params = [originator_id.bytes, *(_INT8.pack(v) for v in bounds)]
            with self.datastore.get_connection() as conn, conn.lock:
                result = _run_prepared(conn, name, lean, params)
                if result.status != pq.ExecStatus.TUPLES_OK:
                    raise errors.error_from_result(result, encoding=conn.info.encoding)
                return [StoredEvent(originator_id=originator_id,
                                    originator_version=_INT8.unpack(result.get_value(row, 1))[0],
                                    topic=(result.get_value(row, 2) or b"").decode(),
                                    state=result.get_value(row, 3) or b"")
                        for row in range(result.ntuples)]
        params = [originator_id, *bounds]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params, prepare=True)
            return [StoredEvent(originator_id=row["originator_id"],
                                originator_version=row["originator_version"],
                                topic=row["topic"], state=bytes(row["state"]))
                    for row in curs.fetchall()]

    def _select_notifications_query(self, shape: tuple[bool, bool, bool, bool]) -> bytes:
        query = self._select_notifications_sql.get(shape)
        if query is None:
            start, inclusive, stop, topics = shape
            conditions = [c for c, wanted in (
                (b"notification_id>=%s" if inclusive else b"notification_id>%s", start),
                (b"notification_id <= %s", stop), (b"topic = ANY(%s)", topics)) if wanted]
            query = (b"SELECT *" + self._from_events
                     + (b" WHERE " + b" AND ".join(conditions) if conditions else b"")
                     + b" ORDER BY notification_id LIMIT %s")
            self._select_notifications_sql[shape] = query
        return query

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *,
                             inclusive_of_start: bool = True) -> Sequence[Notification]:
        """As the library's, with the query rendered once per shape."""
        query = self._select_notifications_query(
            (start is not None, inclusive_of_start, stop is not None, bool(topics)))
        params: list[Any] = [v for v in (start, stop) if v is not None]
        if topics:
            params.append(list(topics))
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params, prepare=True)
            return [Notification(id=row["notification_id"],
                                 originator_id=row["originator_id"],
                                 originator_version=row["originator_version"],
                                 topic=row["topic"], state=bytes(row["state"]))
                    for row in curs.fetchall()]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_versions(self, start: int, limit: int) -> list[tuple[int, Any, int]]:
        """Each notification's id, aggregate and version from ``start`` on, without the event:
        all that the aggregate cache's watch needs to know what it holds is stale. The watch
        reads back everything its process writes, and fetching and wrapping each event's state
        was most of that cost."""
        if not self.lean:
            return [(n.id, n.originator_id, n.originator_version)
                    for n in self.select_notifications(start, limit)]
        with self.datastore.get_connection() as conn, conn.lock:
            result = _run_prepared(conn, b"hc_select_versions", self._select_versions_sql,
                                   [_INT8.pack(start), _INT8.pack(limit)])
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise errors.error_from_result(result, encoding=conn.info.encoding)
            value, unpack = result.get_value, _INT8.unpack
            return [(unpack(value(row, 0))[0], UUID(bytes=value(row, 1)),
                     unpack(value(row, 2))[0]) for row in range(result.ntuples)]

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "this store does not NOTIFY (see services/runtime/pgstore.py): follow the log by "
            "polling select_notifications, as the outbox relay does")

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if not (self.datastore.enable_db_functions and self.datastore.single_row_tracking):
            return super().insert_events(stored_events, **kwargs)
        if not stored_events:
            if tracking is not None:
                self.insert_tracking(tracking)
            return []
        if self.lean:
            return self._append_lean(stored_events, tracking)
        if len(stored_events) == 1:
            e = stored_events[0]
            params: tuple[Any, ...] = (e.originator_id, e.originator_version, e.topic, e.state)
            query = self.sql_append_one
        else:
            params = tuple(map(list, zip(*((e.originator_id, e.originator_version, e.topic,
                                             e.state) for e in stored_events), strict=True)))
            query = self.sql_append_many
        if tracking is not None:
            params = (tracking.application_name, tracking.notification_id, *params)
            query = (self.sql_append_one_tracked if len(stored_events) == 1
                     else self.sql_append_many_tracked)
        with self.datastore.get_connection() as conn:  # autocommit: one statement, one commit
            rows = conn.execute(query, params, prepare=True).fetchall()
        if not rows:
            raise IntegrityError(f"already processed: {tracking}")
        return [row["notification_id"] for row in rows]

    def seen_before(self, application_name: str, position: int,
                    originator_id: UUID) -> tuple[bool, bool]:
        """Whether ``position`` is tracked already under ``application_name`` and whether any
        event of ``originator_id`` is stored: a consumer's two questions about a message (a
        redelivery? an event processed before?) in one round trip instead of two."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_seen_before, (application_name, position, originator_id),
                         prepare=True)
            row = curs.fetchone()
        assert row is not None
        return bool(row["tracked"]), bool(row["stored"])

    def seen_before_many(self, application_names: Sequence[str],
                         originator_ids: Sequence[UUID]) -> tuple[dict[str, int], set[UUID]]:
        """``seen_before`` for a batch in one round trip: the position tracked under each of
        ``application_names`` (absent when none) and which of ``originator_ids`` have events."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_seen_before_many,
                         (list(application_names), list(originator_ids)), prepare=True)
            rows = curs.fetchall()
        positions = {row["name"]: row["position"] for row in rows if row["name"] is not None}
        return positions, {row["stored"] for row in rows if row["stored"] is not None}

    def _append_lean(self, events: Sequence[StoredEvent], tracking: Tracking | None) -> list[int]:
        """Append events (with their tracking row, when given) in one prepared statement,
        through libpq, parameters in binary (several events as four binary arrays: psycopg's
        list dumping was 5 % of the ledger's CPU); the notification ids they were given."""
        assert all(isinstance(e.originator_id, UUID) for e in events)
        if len(events) == 1:
            e = events[0]
            params = [e.originator_id.bytes, _INT4.pack(e.originator_version),  # type: ignore[union-attr]
                      e.topic.encode(), e.state]
            name, query = b"hc_append_one", self.lean_one
        else:
            params = [_binary_array(_UUID_OID, [e.originator_id.bytes for e in events]),  # type: ignore[union-attr]
                      _binary_array(_INT4_OID, [_INT4.pack(e.originator_version) for e in events]),
                      _binary_array(_TEXT_OID, [e.topic.encode() for e in events]),
                      _binary_array(_BYTEA_OID, [e.state for e in events])]
            name, query = b"hc_append_many", self.lean_many
        if tracking is not None:
            params[:0] = [tracking.application_name.encode(), _INT8.pack(tracking.notification_id)]
            name, query = name + b"_tracked", (self.lean_one_tracked if len(events) == 1
                                               else self.lean_many_tracked)
        with self.datastore.get_connection() as conn, conn.lock:
            result = _run_prepared(conn, name, query, params)
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise errors.error_from_result(result, encoding=conn.info.encoding)
            if result.ntuples == 0:
                raise IntegrityError(f"already processed: {tracking}")
            return [_INT8.unpack(result.get_value(row, 0) or b"")[0]
                    for row in range(result.ntuples)]


def _run_prepared(conn: Any, name: bytes, query: bytes, params: list[bytes]) -> Any:
    """Run ``query`` as the statement ``name``, prepared once per connection, straight through
    libpq: parameters and results in binary (psycopg's adapters, query conversion and row
    wrapping cost the client more than the server's work for these small statements). The
    caller holds ``conn.lock``; the result is libpq's, its status unchecked."""
    pgconn = conn.pgconn
    prepared: set[bytes] = conn.__dict__.setdefault("_hc_prepared", set())
    for attempt in (1, 2):
        if name not in prepared:
            result = pgconn.prepare(name, query)
            if (result.status != pq.ExecStatus.COMMAND_OK and result.error_field(
                    pq.DiagnosticField.SQLSTATE) != DUPLICATE_PREPARED_STATEMENT):
                raise errors.error_from_result(result, encoding=conn.info.encoding)
            # (already there: the session kept it while the note was lost, as seen after
            # dropped connections; the name always means this recorder's query)
            prepared.add(name)
        pgconn.send_query_prepared(name, params, param_formats=[1] * len(params),
                                   result_format=1)
        result = conn.wait(execute(pgconn))[-1]
        if (attempt == 1 and result.status == pq.ExecStatus.FATAL_ERROR
                and result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"):
            # Gone from the session: psycopg's own statement cache sends DEALLOCATE ALL when
            # it resets (after some errors). Nothing ran: prepare again.
            prepared.clear()
            continue
        return result
    return result


_INT4, _INT8 = struct.Struct("!i"), struct.Struct("!q")
_EVENT_COLUMNS = b"SELECT originator_id, originator_version, topic, state"
_ARRAY_HEADER = struct.Struct("!iiIii")
# Element type oids of PostgreSQL's binary array format.
_UUID_OID, _INT4_OID, _TEXT_OID, _BYTEA_OID = 2950, 23, 25, 17
DUPLICATE_PREPARED_STATEMENT = b"42P05"


def _binary_array(element_oid: int, elements: list[bytes]) -> bytes:
    """A one-dimensional array without nulls in PostgreSQL's binary format: dimensions, flags,
    element type, length and lower bound, then each element's length and bytes."""
    return _ARRAY_HEADER.pack(1, 0, element_oid, len(elements), 1) + b"".join(
        _INT4.pack(len(element)) + element for element in elements)


def _numbered(query: bytes) -> bytes:
    """A query with psycopg's ``%s`` placeholders as libpq's ``$1, $2, ...``."""
    parts = query.split(b"%s")
    return b"".join(part + (b"$%d" % n if n < len(parts) else b"")
                    for n, part in enumerate(parts, start=1))


class TrackedPostgresFactory(PostgresFactory):
    process_recorder_class = TrackedFunctionProcessRecorder


def relay_lock_key(schema: str, relay_name: str) -> int:
    """The advisory-lock key that one outbox relay holds while it relays."""
    return _advisory_key(f"homecare-relay:{schema}:{relay_name}")


class AdvisoryLease:
    """Whether this process is the one that relays an outbox: a session-level advisory lock,
    held on a connection of its own for as long as the process relays.

    Every replica of a service runs a relay over the same store; without the lease each
    published the whole outbox (consumers dropped the copies, but the broker carried them
    all), and each relay's position collided with the others' (an error and a back-off every
    few batches). The lock goes with the session: a replica killed or cut off from the database
    loses it, and another takes over within ``retry_every_s``. A holder checks that its session
    is still alive at most every ``verify_every_s`` (while it cannot know, two relays may
    publish the same batch: harmless, as before).
    """

    def __init__(self, connect: Callable[[], Any], key: int, *, verify_every_s: float = 1.0,
                 retry_every_s: float = 1.0) -> None:
        self._connect = connect
        self.key = key
        self.verify_every_s = verify_every_s
        self.retry_every_s = retry_every_s
        self._connection: Any = None
        self._holding = False
        self._checked = float("-inf")  # when the holding session last answered
        self._tried = float("-inf")  # when the lock was last asked for
        self._lock = threading.Lock()

    def held(self) -> bool:
        """True while this process holds the lease (asks the database at most every
        ``verify_every_s`` while holding, ``retry_every_s`` while not)."""
        with self._lock:
            now = time.monotonic()
            if self._holding:
                if now - self._checked < self.verify_every_s:
                    return True
                try:
                    self._connection.execute("SELECT 1")
                    self._checked = now
                    return True
                except psycopg.Error:
                    log.warning("outbox relay lease lost (its session ended)")
                    self._drop()
            if now - self._tried < self.retry_every_s:
                return False
            self._tried = now
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = self._connect()
                row = self._connection.execute("SELECT pg_try_advisory_lock(%s)",
                                               (self.key,)).fetchone()
            except psycopg.Error:
                self._drop()
                return False
            self._holding = bool(row[0])
            self._checked = now
            return self._holding

    def release(self) -> None:
        """Give the lease up (closing the session releases the lock)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._holding = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None


LEASE_SESSION_OPTIONS = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                         "-c tcp_keepalives_count=3")


def own_session(app: Any, purpose: str) -> Callable[[], Any] | None:
    """How to open a session of ``app``'s PostgreSQL store outside its pool, for a lock that
    lives as long as the session (None on a store that only one process opens: SQLite, in
    memory)."""
    datastore = getattr(app.process_recorder, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        return None
    params = {k: v for k, v in datastore.pool.kwargs.items() if k != "row_factory"}

    def connect() -> Any:
        # Keepalives on both ends: a holder cut off without a word (a network partition, a
        # frozen node) is dropped by the server in about 25 s, its lock with it, instead of
        # after the operating system's default of two hours.
        return psycopg.connect(**params, autocommit=True, connect_timeout=5,
                               application_name=f"homecare {purpose}",
                               keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=3, options=LEASE_SESSION_OPTIONS)

    return connect


def relay_lease(app: Any, relay_name: str) -> AdvisoryLease | None:
    """The lease for ``app``'s outbox relay on PostgreSQL; None on a store that only one
    process opens (SQLite, in memory), where the relay needs none."""
    connect = own_session(app, f"{relay_name} lease")
    if connect is None:
        return None
    return AdvisoryLease(connect, relay_lock_key(app.process_recorder.datastore.schema,
                                                 relay_name))


def section_lock_key(schema: str, name: str) -> int:
    """The advisory-lock key of the exclusive section ``name`` of one service's store."""
    return _advisory_key(f"homecare-section:{schema}:{name}")


class AdvisoryLocks:
    """Exclusive sections across the processes sharing one store: a session-level advisory lock
    per section name, taken on a connection of its own (kept for the next section) and held
    until the section ends, so past the commit of what the section wrote. A process that dies
    inside loses its lock with its session (keepalives as for the relay's lease)."""

    def __init__(self, connect: Callable[[], Any], schema: str, *, idle_kept: int = 4) -> None:
        self._connect = connect
        self.schema = schema
        self.idle_kept = idle_kept
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str, wait_s: float) -> Iterator[None]:
        """Inside, no other process holds section ``name`` of this store; waits at most
        ``wait_s``, rounded up to whole seconds, for it (:class:`LockWaitTimeout` after
        that)."""
        key = section_lock_key(self.schema, name)
        # Whole seconds, so that the setting rarely changes (one round trip less).
        timeout_ms = 1000 * max(1, math.ceil(wait_s))
        while True:
            connection, kept = self._take()
            try:
                if getattr(connection, "_lock_timeout_ms", None) != timeout_ms:
                    connection.execute(f"SET lock_timeout = {timeout_ms}")
                    connection._lock_timeout_ms = timeout_ms  # once per wait and session
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
                break
            except errors.LockNotAvailable:
                self._give_back(connection)
                raise LockWaitTimeout(f"section {name} is held by another process") from None
            except psycopg.Error as error:
                self._close(connection)
                if kept:  # a kept session the server has ended meanwhile: take a new one
                    continue
                raise OperationalError(f"cannot take section {name}: {error}") from error
        try:
            yield
        finally:
            try:
                released = connection.execute("SELECT pg_advisory_unlock(%s)",
                                              (key,)).fetchone()[0]
                if not released:  # the session was replaced under us (never expected)
                    log.warning("section %s was not held at its end", name)
                self._give_back(connection)
            except psycopg.Error:
                # The session is gone, and its lock with it.
                log.warning("section %s: its session ended while held", name, exc_info=True)
                self._close(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._close(connection)

    def _take(self) -> tuple[Any, bool]:
        """A session, and whether it was kept from an earlier section (it may have been
        ended by the server since: a restart, a terminated backend)."""
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection, True
        try:
            return self._connect(), False
        except psycopg.Error as error:
            raise OperationalError(f"cannot open a session for a section: {error}") from error

    def _give_back(self, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < self.idle_kept and not connection.closed:
                self._idle.append(connection)
                return
        self._close(connection)

    @staticmethod
    def _close(connection: Any) -> None:
        with contextlib.suppress(Exception):
            connection.close()


class LockWaitTimeout(OperationalError):
    """An exclusive section stayed held by someone else for longer than the wait allowed: a
    transient condition (try again), not a fault of the request or message."""


def advisory_locks(app: Any) -> AdvisoryLocks | None:
    """Exclusive sections across the processes sharing ``app``'s PostgreSQL store; None on a
    store that only one process opens."""
    connect = own_session(app, f"{app.name.lower()} sections")
    if connect is None:
        return None
    return AdvisoryLocks(connect, app.process_recorder.datastore.schema)
