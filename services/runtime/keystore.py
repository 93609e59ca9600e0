"""Per-subject data keys kept outside the event store, so that a person can be crypto-shredded.

Events are immutable; a person's personal fields in them are encrypted with a key of that
person's own (the *subject*, e.g. ``elder:E-1``). The keys live in a small table next to the
events (``<app>_subject_keys`` in the same SQLite file or PostgreSQL schema) and are
themselves wrapped with the event-store key, so a copy of the database alone opens nothing.
Erasure destroys the key (the row keeps only a tombstone, so no new key is ever made for that
person): from then on the person's fields cannot be decrypted by anyone, while every event (and
every total computed from them) stays where it was.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Cipher, InfrastructureFactory, PersistenceError

DATA_KEY_BYTES = 32
# What an erased subject's row holds instead of a key: the erasure is remembered, so no new key
# is ever made for that subject (a new key would make the old sealed fields fail to open, and
# would quietly start collecting the forgotten person's data again).
TOMBSTONE = b""


class SubjectErased(Exception):
    """Personal data of a subject that was erased: the person must be registered anew."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"{subject} was erased on request and cannot hold personal data again; "
                         "register the person under a new id")
        self.subject = subject
# How late another process may see an erasure: a process keeps the keys it read, and asks at
# most this often whether any subject was erased since it last asked (one cheap query for all
# keys, not one per key); when one was, it forgets every key it holds.
CACHE_SECONDS = 30.0
# How many subjects' keys a process keeps (least recently used go first): a city's elders and
# volunteers fit; about 200 bytes each.
CACHE_SIZE = 20_000


class SubjectKeys(ABC):
    """Data keys by subject: created on first use, deleted on erasure."""

    def __init__(self, wrap: Cipher | None = None, cache_seconds: float = CACHE_SECONDS,
                 cache_size: int = CACHE_SIZE) -> None:
        # The event-store cipher wraps each key at rest (None: stored as is, e.g. in memory).
        self.wrap = wrap
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._erasures_seen: int | None = None  # tombstones counted at the last look
        self._looked_at = float("-inf")  # when that look started (monotonic)

    # What a backend provides ------------------------------------------------------------------
    @abstractmethod
    def _select(self, subject: str) -> bytes | None: ...

    @abstractmethod
    def _insert_if_absent(self, subject: str, stored: bytes) -> None: ...

    @abstractmethod
    def _tombstone(self, subject: str) -> None:
        """Replace the subject's row (if any) by TOMBSTONE, or add one."""

    @abstractmethod
    def _erasures(self) -> int:
        """How many subjects were ever erased (tombstones are never removed, so the count
        only grows: a change means an erasure since it was last read)."""

    @abstractmethod
    def subjects(self) -> list[str]:
        """Every subject that has a key (for audits and tests)."""

    # The interface ------------------------------------------------------------------------------
    def key(self, subject: str) -> bytes | None:
        """The subject's data key, or None when it never had one or was erased."""
        self._forget_if_erased()
        with self._lock:
            cached = self._cache.get(subject)
            if cached is not None:
                self._cache.move_to_end(subject)
                return cached
        stored = self._select(subject)
        if stored is None or stored == TOMBSTONE:
            return None
        key = self.wrap.decrypt(stored) if self.wrap else stored
        with self._lock:
            self._cache[subject] = key
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return key

    def _forget_if_erased(self) -> None:
        """At most every ``cache_seconds``: forget every key held if a subject was erased
        since the last look (by this process or another)."""
        now = time.monotonic()
        if now - self._looked_at < self.cache_seconds:
            return
        erasures = self._erasures()
        with self._lock:
            if erasures != self._erasures_seen:
                self._cache.clear()
                self._erasures_seen = erasures
            self._looked_at = max(self._looked_at, now)

    def key_or_create(self, subject: str) -> bytes:
        """The subject's data key, made now if it has none (a concurrent maker may win)."""
        key = self.key(subject)
        if key is not None:
            return key
        fresh = os.urandom(DATA_KEY_BYTES)
        # Never replaces a row: an erased subject's tombstone stays, and is read back below.
        self._insert_if_absent(subject, self.wrap.encrypt(fresh) if self.wrap else fresh)
        key = self.key(subject)
        if key is None:  # erased, before or while being created
            raise SubjectErased(subject)
        return key

    def is_erased(self, subject: str) -> bool:
        return self._select(subject) == TOMBSTONE

    def delete(self, subject: str) -> bool:
        """Crypto-shred: delete the subject's key for good (a tombstone stays, so none is made
        again). True when there was a key."""
        with self._lock:
            self._cache.pop(subject, None)
        stored = self._select(subject)
        self._tombstone(subject)
        with self._lock:
            self._cache.pop(subject, None)
        return stored not in (None, TOMBSTONE)


class MemorySubjectKeys(SubjectKeys):
    """For applications on eventsourcing's in-memory store (unit tests)."""

    def __init__(self, wrap: Cipher | None = None) -> None:
        super().__init__(wrap)
        self._rows: dict[str, bytes] = {}

    def _select(self, subject: str) -> bytes | None:
        return self._rows.get(subject)

    def _insert_if_absent(self, subject: str, stored: bytes) -> None:
        with self._lock:
            self._rows.setdefault(subject, stored)

    def _tombstone(self, subject: str) -> None:
        with self._lock:
            self._rows[subject] = TOMBSTONE

    def _erasures(self) -> int:
        with self._lock:
            return sum(1 for stored in self._rows.values() if stored == TOMBSTONE)

    def subjects(self) -> list[str]:
        return sorted(s for s, k in self._rows.items() if k != TOMBSTONE)


class SQLiteSubjectKeys(SubjectKeys):
    """A ``<app>_subject_keys`` table in the service's SQLite file (eventsourcing's pool)."""

    def __init__(self, datastore: Any, wrap: Cipher | None = None,
                 table: str = "subject_keys") -> None:
        super().__init__(wrap)
        if not table.replace("_", "").isalnum():
            raise ValueError(f"bad table name {table!r}")
        self.datastore = datastore
        self.table = table
        with datastore.transaction(commit=True) as c:
            c.execute(f"CREATE TABLE IF NOT EXISTS {table} (subject TEXT PRIMARY KEY, "
                      "wrapped_key BLOB NOT NULL, created_at TEXT NOT NULL)")
            # The tombstones alone, so counting them reads no key rows.
            c.execute(f"CREATE INDEX IF NOT EXISTS {table}_erased ON {table} (subject) "
                      "WHERE length(wrapped_key) = 0")

    def _select(self, subject: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT wrapped_key FROM {self.table} WHERE subject = ?", (subject,))
            row = c.fetchone()
        return None if row is None else bytes(row["wrapped_key"])

    def _insert_if_absent(self, subject: str, stored: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"INSERT OR IGNORE INTO {self.table} (subject, wrapped_key, created_at) "
                      "VALUES (?, ?, ?)", (subject, stored, datetime.now(UTC).isoformat()))

    def _tombstone(self, subject: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"INSERT INTO {self.table} (subject, wrapped_key, created_at) "
                      "VALUES (?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
                      "wrapped_key = excluded.wrapped_key",
                      (subject, TOMBSTONE, datetime.now(UTC).isoformat()))

    def _erasures(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) AS n FROM {self.table} WHERE length(wrapped_key) = 0")
            return int(c.fetchone()["n"])

    def subjects(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT subject FROM {self.table} WHERE length(wrapped_key) > 0 "
                      "ORDER BY subject")
            return [r["subject"] for r in c.fetchall()]


class PostgresSubjectKeys(SubjectKeys):
    """A ``<app>_subject_keys`` table in the service's PostgreSQL schema (eventsourcing's pool)."""

    def __init__(self, datastore: Any, wrap: Cipher | None = None,
                 table: str = "subject_keys") -> None:
        import psycopg
        from psycopg import sql

        super().__init__(wrap)
        self.datastore = datastore
        self.table = sql.Identifier(datastore.schema, table)
        self._sql = sql
        with datastore.transaction(commit=True) as c:
            c.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (subject text PRIMARY KEY, "
                              "wrapped_key bytea NOT NULL, "
                              "created_at timestamptz NOT NULL DEFAULT now())").format(self.table))
        # The tombstones alone, so counting them reads no key rows (replicas starting together
        # may race to create it: whoever loses finds it made).
        try:
            with datastore.transaction(commit=True) as c:
                c.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (subject) "
                                  "WHERE length(wrapped_key) = 0").format(
                    sql.Identifier(f"{table}_erased"), self.table))
        except PersistenceError as error:
            if not isinstance(error.__cause__, psycopg.errors.UniqueViolation
                              | psycopg.errors.DuplicateTable):
                raise

    def _q(self, text: str) -> Any:
        return self._sql.SQL(text).format(self.table)

    def _select(self, subject: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._q("SELECT wrapped_key FROM {} WHERE subject = %s"), (subject,))
            row = c.fetchone()
        return None if row is None else bytes(row["wrapped_key"])

    def _insert_if_absent(self, subject: str, stored: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._q("INSERT INTO {} (subject, wrapped_key) VALUES (%s, %s) "
                              "ON CONFLICT (subject) DO NOTHING"), (subject, stored))

    def _tombstone(self, subject: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._q("INSERT INTO {} (subject, wrapped_key) VALUES (%s, %s) "
                              "ON CONFLICT (subject) DO UPDATE SET wrapped_key = "
                              "excluded.wrapped_key"), (subject, TOMBSTONE))

    def _erasures(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._q("SELECT count(*) AS n FROM {} WHERE length(wrapped_key) = 0"))
            return int(c.fetchone()["n"])

    def subjects(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._q("SELECT subject FROM {} WHERE length(wrapped_key) > 0 "
                              "ORDER BY subject"))
            return [r["subject"] for r in c.fetchall()]


def subject_keys_for(factory: InfrastructureFactory, wrap: Cipher | None,
                     app_name: str = "") -> SubjectKeys:
    """The key store next to the given event store (same SQLite file or PostgreSQL schema),
    in a table named after the application as its event tables are (``dispatch_subject_keys``)."""
    table = f"{app_name.lower()}_subject_keys" if app_name else "subject_keys"
    from eventsourcing.postgres import PostgresFactory
    from eventsourcing.sqlite import SQLiteFactory

    if isinstance(factory, SQLiteFactory):
        return SQLiteSubjectKeys(factory.datastore, wrap, table)
    if isinstance(factory, PostgresFactory):
        return PostgresSubjectKeys(factory.datastore, wrap, table)
    return MemorySubjectKeys(wrap)
