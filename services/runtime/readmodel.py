"""In-process read models that follow a service's own notification log.

A read model is a pure function of the events: it can always be rebuilt by replaying the log from
the start, which is exactly what happens when a process starts. Queries call ``catch_up()`` first,
so a read after a write in the same process always sees the write.

Where the application's aggregate cache follows the log too (services/runtime/aggregate_cache.py),
the read model takes what the cache's watch reads instead of reading it again: inside a unit of
work, once the watch has checked the log for the unit and the read model holds all it read and
everything this process wrote, ``catch_up()`` asks the store nothing (a check-in read the log
twice, a twelfth of its CPU). It then sees what the aggregates of the unit see: what was committed
when the unit started (at most a second before), plus this process's own writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from services.runtime.aggregate_cache import fresh_as_of
from services.runtime.eventstore import ServiceApplication


class FollowingReadModel:
    def __init__(self, app: ServiceApplication, apply: Callable[[Any], None],
                 batch_size: int = 1000) -> None:
        self.app = app
        self.apply = apply
        self.batch_size = batch_size
        self.position = 0
        self.reads = 0  # queries of the log (what the tests count)
        self._lock = threading.Lock()
        self._watch = getattr(app.repository, "watch", None)
        if self._watch is not None:
            self._watch.followers.append(self._take)

    def catch_up(self) -> int:
        if self._current():
            return 0
        with self._lock:
            moved = 0
            while True:
                self.reads += 1
                notifications = self.app.process_recorder.select_notifications(
                    self.position + 1, self.batch_size
                )
                for notification in notifications:
                    self.apply(self.app.domain_event_of(notification))
                    self.position = notification.id
                moved += len(notifications)
                if len(notifications) < self.batch_size:
                    return moved

    def _current(self) -> bool:
        """Fresh enough for the current read without asking the store: the watch checked the
        log recently enough, and this holds what it read and what this process wrote."""
        watch = self._watch
        return (watch is not None and watch.position is not None
                and watch.checked_at >= fresh_as_of()
                and self.position >= watch.position and self.position >= self.app.last_written)

    def _take(self, start: int, notifications: Sequence[Any]) -> None:
        """Notifications the watch read from ``start`` on: applied when they follow on from this
        read model's position (else it is behind and reads the log itself). Never waits: a
        catch-up in progress reads them anyway."""
        if self.position < start - 1 or not self._lock.acquire(blocking=False):
            return
        try:
            for notification in notifications:
                if notification.id > self.position:
                    self.apply(self.app.domain_event_of(notification))
                    self.position = notification.id
        finally:
            self._lock.release()
