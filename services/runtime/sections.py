"""Exclusive sections: work that must not run twice at once for the same thing, in any process.

Placing an order reads the area's bookings and then books a caregiver. Two placements at the
same moment would both see the same caregiver free and book the same time twice, and
optimistic concurrency cannot stop the second: each visit is a new aggregate. So the read and
the booking run inside a section named after the area, held until what it wrote is committed:
- in this process, by a lock per name (threads queue here without holding a connection);
- across the processes sharing a PostgreSQL store (replicas), by a session-level advisory lock
  of that store (:class:`services.runtime.pgstore.AdvisoryLocks`); a store only one process
  opens (SQLite, in memory) needs none.
Inside, reads see everything committed before the section was entered
(:func:`~services.runtime.aggregate_cache.reads_from_now`), whatever the unit of work read
before. A section already held by the thread is entered again at no cost. Waiting is bounded:
after ``wait_s`` a :class:`SectionBusy` says so (HTTP 503, a consumer tries again).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from services.runtime.aggregate_cache import reads_from_now
from services.runtime.pgstore import AdvisoryLocks, LockWaitTimeout, advisory_locks


class SectionBusy(LockWaitTimeout):
    """The section stayed held longer than the wait allowed; nothing was done: try again."""


class ExclusiveSections:
    def __init__(self, across_processes: AdvisoryLocks | None, *, wait_s: float = 30.0) -> None:
        self.across_processes = across_processes
        self.wait_s = wait_s
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._held = threading.local()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        held: set[str] = self._held.__dict__.setdefault("names", set())
        if name in held:
            yield
            return
        deadline = time.monotonic() + self.wait_s
        with self._locks_lock:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=self.wait_s):
            raise SectionBusy(f"{name} is busy (held longer than {self.wait_s:g} s): try again")
        try:
            with contextlib.ExitStack() as stack:
                if self.across_processes is not None:
                    remaining = max(0.001, deadline - time.monotonic())
                    try:
                        stack.enter_context(self.across_processes.hold(name, remaining))
                    except LockWaitTimeout:
                        raise SectionBusy(f"{name} is busy in another process (held longer "
                                          f"than {self.wait_s:g} s): try again") from None
                stack.enter_context(reads_from_now())
                held.add(name)
                try:
                    yield
                finally:
                    held.discard(name)
        finally:
            lock.release()

    def close(self) -> None:
        if self.across_processes is not None:
            self.across_processes.close()


def exclusive_sections(app: Any, *, wait_s: float = 30.0) -> ExclusiveSections:
    """The exclusive sections of ``app``'s store: across processes on PostgreSQL."""
    return ExclusiveSections(advisory_locks(app), wait_s=wait_s)
