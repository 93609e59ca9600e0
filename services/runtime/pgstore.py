"""PostgreSQL event store with database functions AND tracking in the same transaction.

eventsourcing's PostgreSQL recorder can insert events through a database function, which about
doubles the append rate (fewer round trips). In eventsourcing 9.5.6 that path ignores the tracking
record passed with the events, and effectively-once processing depends on it being written in the
same transaction. This recorder writes both together: the tracking row first, then the function
call, in one transaction. Selected with
``PERSISTENCE_MODULE=services.runtime.pgstore:TrackedPostgresFactory``.

The library's function also takes no table lock, unlike its statement path: two writers could
commit notification ids out of order, and a reader following the log (the outbox relay, which
records how far it got) would pass over the lower id for good. The function here locks the
events table (EXCLUSIVE: reads go on, inserts queue) before inserting, as the statement path
does, so ids become visible in the order they were issued. ``CREATE OR REPLACE`` at start-up
replaces the library's function in an existing schema.

Nor does it NOTIFY: no one here LISTENs (the outbox relay and the read models poll the log), and
a notifying commit takes a lock shared by the whole PostgreSQL cluster, so every service's (and
every other database's) notifying commits queued behind each other. Median of 12 interleaved
rounds on a loaded machine: 174 function calls/s with NOTIFY, 234 without, 255 plain
INSERT+COMMIT. eventsourcing's LISTEN-based ``subscribe()`` would wait for ever on this store,
so it refuses.

A single event (what most commands save) goes through a second function taking plain
parameters instead of an array of composites, with the same lock: client CPU per append 456 ->
398 and 520 -> 425 us, appends/s median 205 -> 234 and 142 -> 173 in two runs of 8 interleaved
rounds (load average 12-13; plain loop 429 and 339/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier


class TrackedFunctionProcessRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_pg_function_insert_events = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{insert_events}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN"
            "    SET LOCAL lock_timeout = '{lock_timeout}s';"
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "    RETURN QUERY"
            "    INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "    SELECT originator_id, originator_version, topic, state FROM unnest(events)"
            "    RETURNING notification_id;"
            " END; $BODY$"
        ).format(
            insert_events=Identifier(self.pg_function_name_insert_events),
            lock_timeout=self.datastore.lock_timeout,
            event=Identifier(self.stored_event_type_name),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = (
            self.sql_create_pg_function_insert_events)
        # One event (what most commands save): plain parameters, which cost the client a fifth
        # of dumping an array of composites, and the same lock.
        self.pg_function_name_insert_event = f"hc_insert_event_{datastore.originator_id_type}"
        self.sql_create_statements.append(SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{insert_event}(i {id_type}, v integer, "
            "tp text, st bytea) RETURNS bigint LANGUAGE plpgsql AS $BODY$"
            " DECLARE n bigint; BEGIN"
            "    SET LOCAL lock_timeout = '{lock_timeout}s';"
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "    INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "    VALUES (i, v, tp, st) RETURNING notification_id INTO n;"
            "    RETURN n;"
            " END; $BODY$"
        ).format(
            insert_event=Identifier(self.pg_function_name_insert_event),
            id_type=SQL(datastore.originator_id_type),
            lock_timeout=self.datastore.lock_timeout,
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        ))
        self.sql_invoke_pg_function_insert_event = SQL(
            "SELECT {schema}.{insert_event}(%s, %s, %s, %s)").format(
            schema=Identifier(self.datastore.schema),
            insert_event=Identifier(self.pg_function_name_insert_event))

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "this store does not NOTIFY (see services/runtime/pgstore.py): follow the log by "
            "polling select_notifications, as the outbox relay does")

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if not self.datastore.enable_db_functions:
            return super().insert_events(stored_events, **kwargs)
        with self.datastore.get_connection() as conn:
            if tracking is None:  # autocommit: the function call is the transaction
                return self._call_insert_function(conn, stored_events)
            with conn.transaction(), conn.cursor() as curs:
                self._insert_tracking(curs, tracking)
                return self._call_insert_function(conn, stored_events)

    def _call_insert_function(self, conn: Any, stored_events: Sequence[StoredEvent]
                              ) -> Sequence[int]:
        if not stored_events:
            return []
        with conn.cursor() as curs:
            if len(stored_events) == 1:
                e = stored_events[0]
                curs.execute(self.sql_invoke_pg_function_insert_event,
                             (e.originator_id, e.originator_version, e.topic, e.state),
                             prepare=True)
                row = curs.fetchone()
                assert row is not None
                return [row[self.pg_function_name_insert_event]]
            pg_stored_events = [
                self.construct_pg_stored_event(
                    originator_id=e.originator_id,
                    originator_version=e.originator_version,
                    topic=e.topic,
                    state=e.state,
                )
                for e in stored_events
            ]
            curs.execute(self.sql_invoke_pg_function_insert_events, (pg_stored_events,),
                         prepare=True)
            return [row[self.pg_function_name_insert_events] for row in curs.fetchall()]


class TrackedPostgresFactory(PostgresFactory):
    process_recorder_class = TrackedFunctionProcessRecorder
