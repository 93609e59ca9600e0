"""Cached aggregates kept fresh by following the application's own notification log.

The library's aggregate cache asks the store, on every read of a cached aggregate, for the
events after the cached version ("fast-forward"): one round trip per aggregate read, although
nearly always nothing is new (this process wrote the last events and cached what it saved).
A check-in read four aggregates that way, placing an order fifty (every caregiver and
provider of the area).

Here the process instead reads its store's notification log, which every writer's events go
through in commit order, and evicts a cached aggregate as soon as the log shows a later
version of it than the one cached. One such check, one round trip whatever the number of
aggregates, serves every read of a *unit of work* (an HTTP request, a batch of consumed
messages, a periodic task): the unit reads what was committed when it started (or at most
``MAX_UNIT_AGE_S`` earlier, for units that last long), plus what this process wrote since.
Commands stay safe regardless: a command on a state that another process changed meanwhile
fails its save (optimistic concurrency), which also evicts what it read.

Two rules keep a stale state from outliving the check that should have evicted it:
- a state read from the store is cached only if no check moved past newer events of it while
  it was being read (:meth:`LogWatch.cache_read`);
- a state never replaces a newer one of the same aggregate (:class:`TypedLRUCache`).

An aggregate not in the store is cached as :data:`ABSENT` (version 0) under the same rules:
most lookups that find nothing are for what a command is about to create (a charge, a
transfer), or that rarely exists (a month closed), and each cost a query.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from eventsourcing.application import LRUCache

# When the current unit of work started (time.monotonic()), None outside of one.
_unit_started: ContextVar[float | None] = ContextVar("unit_started", default=None)

# A unit that runs longer than this (a server-sent event stream, a long batch) checks the log
# again: what it reads is at most this old.
MAX_UNIT_AGE_S = 1.0


@contextlib.contextmanager
def unit_of_work() -> Iterator[None]:
    """The reads inside share one check of the log (a unit already open is kept)."""
    if _unit_started.get() is not None:
        yield
        return
    with reads_from_now():
        yield


@contextlib.contextmanager
def reads_from_now() -> Iterator[None]:
    """Reads inside see what was committed before they began, not only what was committed
    when the enclosing unit of work started: for a decision that must rest on the latest
    state, such as booking a caregiver inside an exclusive section (services/runtime/
    sections.py). Costs one more check of the log."""
    token = _unit_started.set(time.monotonic())
    try:
        yield
    finally:
        _unit_started.reset(token)


class UnitOfWorkMiddleware:
    """Each HTTP request is a unit of work (plain ASGI: the endpoint's threads inherit it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with unit_of_work():
            await self.app(scope, receive, send)


def fresh_as_of() -> float:
    """The moment the store's state must be checked at or after for the current read."""
    now = time.monotonic()
    started = _unit_started.get()
    return now if started is None else max(started, now - MAX_UNIT_AGE_S)


class Absent:
    """What the cache holds for an aggregate the store had no events of when it was read
    (a charge not made yet, a month not closed): asking again costs no query until the log
    shows an event of it, which evicts this like any older version."""

    version = 0

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()


class TypedLRUCache(LRUCache):  # type: ignore[type-arg]
    """eventsourcing's aggregate LRU cache, keeping only aggregates of the given classes, and
    never an older state of an aggregate in place of a newer one (two threads saving the same
    aggregate one after the other may cache their states in the other order)."""

    def __init__(self, maxsize: int, kinds: tuple[type, ...]) -> None:
        super().__init__(maxsize)
        self.kinds = kinds
        self._replacing = threading.Lock()

    def put(self, key: Any, value: Any) -> Any:
        if value is None:
            return super().put(key, value)
        if not isinstance(value, (*self.kinds, Absent)):
            self.evict(key)  # not kept, and no longer absent
            return None
        with self._replacing:
            current = self.peek(key)
            if current is not None and current.version > value.version:
                return None
            return super().put(key, value)

    def peek(self, key: Any) -> Any:
        """The cached value or None, without making it the most recently used."""
        with self.lock:
            link = self.cache.get(key)
            return None if link is None else link[self.RESULT]

    def evict(self, key: Any) -> None:
        with contextlib.suppress(KeyError):
            self.get(key, evict=True)

    def empty(self) -> None:
        """Drop everything (the library's clear() leaves its key index behind)."""
        with self.lock:
            self.cache.clear()
            self.clear()
            self.full = False


class LogWatch:
    """Evicts cached aggregates that the notification log shows a later version of."""

    # How many aggregates the watch remembers the latest notification of (see cache_read).
    RECENT_LIMIT = 10_000

    def __init__(self, recorder: Any, cache: TypedLRUCache, batch_size: int = 1000) -> None:
        self.recorder = recorder
        self.cache = cache
        self.batch_size = batch_size
        self.position: int | None = None  # the last notification looked at
        self.checked_at = float("-inf")  # when the last check started (monotonic)
        self.checks = 0  # how many (what the tests count)
        self._lock = threading.Lock()
        # Aggregate id -> (position, version) of the latest notification of it read after
        # position _recent_from: what a state read meanwhile is compared with.
        self._recent: dict[Any, tuple[int, int]] = {}
        self._recent_from = 0

    def check(self, as_of: float) -> None:
        """Make sure the log was read at or after ``as_of`` (monotonic time)."""
        if self.checked_at >= as_of:
            return
        with self._lock:
            if self.checked_at >= as_of:
                return  # another thread checked meanwhile
            started = time.monotonic()
            if self.position is None:
                # What was cached before the log was first followed may be stale: start clean.
                self.position = self.recorder.max_notification_id() or 0
                self.cache.empty()
                self._recent_from = self.position
            else:
                self._read_log()
            self.checked_at = started
            self.checks += 1

    def _read_log(self) -> None:
        assert self.position is not None
        if len(self._recent) > self.RECENT_LIMIT:
            self._recent.clear()  # bounded: reads begun before now are not cached any more
            self._recent_from = self.position
        recent = self._recent
        while True:
            versions = self._versions(self.position + 1)
            for position, aggregate_id, version in versions:
                cached = self.cache.peek(aggregate_id)
                if cached is not None and cached.version < version:
                    self.cache.evict(aggregate_id)
                recent[aggregate_id] = (position, version)
                self.position = position
            if len(versions) < self.batch_size:
                return

    def _versions(self, start: int) -> list[tuple[int, Any, int]]:
        """(position, aggregate id, version) of the notifications from ``start`` on: only
        these, where the store can leave the events out (PostgreSQL)."""
        select_versions = getattr(self.recorder, "select_versions", None)
        if select_versions is not None:
            return select_versions(start, self.batch_size)
        return [(n.id, n.originator_id, n.originator_version)
                for n in self.recorder.select_notifications(start, self.batch_size)]

    def cache_read(self, aggregate_id: Any, aggregate: Any, position_before: int | None) -> None:
        """Cache a state read from the store, unless a check read past newer events of it
        meanwhile (the check could not evict what was not cached yet); ``position_before`` is
        the watch's position taken before the read.

        What the log held up to ``position_before`` was committed before the read began, so
        the state includes it; only what a check read since can be newer. Under load other
        requests' checks move the watch during most reads: comparing with the latest version
        read of this aggregate, rather than refusing whenever the watch moved, keeps a
        check-in from reading its visit from the store twice (ownership, then command)."""
        with self._lock:
            if position_before is None:
                return
            if self.position != position_before:
                if position_before < self._recent_from:
                    return  # what was read meanwhile is forgotten: cannot tell
                latest = self._recent.get(aggregate_id)
                if latest is not None and latest[0] > position_before \
                        and latest[1] > aggregate.version:
                    return
            self.cache.put(aggregate_id, aggregate)
