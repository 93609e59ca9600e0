"""PostgreSQL event store with database functions AND tracking in the same transaction.

eventsourcing's PostgreSQL recorder can insert events through a database function, which about
doubles the append rate (fewer round trips). In eventsourcing 9.5.6 that path ignores the tracking
record passed with the events, and effectively-once processing depends on it being written in the
same transaction. This recorder writes both together: the tracking row first, then the function
call, in one transaction. Selected with
``PERSISTENCE_MODULE=services.runtime.pgstore:TrackedPostgresFactory``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import retry


class TrackedFunctionProcessRecorder(PostgresProcessRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if not self.datastore.enable_db_functions or tracking is None:
            return super().insert_events(stored_events, **kwargs)
        pg_stored_events = [
            self.construct_pg_stored_event(
                originator_id=e.originator_id,
                originator_version=e.originator_version,
                topic=e.topic,
                state=e.state,
            )
            for e in stored_events
        ]
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_tracking(curs, tracking)
            if not pg_stored_events:
                return []
            curs.execute(self.sql_invoke_pg_function_insert_events, (pg_stored_events,),
                         prepare=True)
            return [row[self.pg_function_name_insert_events] for row in curs.fetchall()]


class TrackedPostgresFactory(PostgresFactory):
    process_recorder_class = TrackedFunctionProcessRecorder
