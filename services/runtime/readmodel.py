"""In-process read models that follow a service's own notification log.

A read model is a pure function of the events: it can always be rebuilt by replaying the log from
the start, which is exactly what happens when a process starts. Queries call ``catch_up()`` first,
so a read after a write in the same process always sees the write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from services.runtime.eventstore import ServiceApplication


class FollowingReadModel:
    def __init__(self, app: ServiceApplication, apply: Callable[[Any], None],
                 batch_size: int = 1000) -> None:
        self.app = app
        self.apply = apply
        self.batch_size = batch_size
        self.position = 0
        self._lock = threading.Lock()

    def catch_up(self) -> int:
        with self._lock:
            moved = 0
            while True:
                notifications = self.app.process_recorder.select_notifications(
                    self.position + 1, self.batch_size
                )
                for notification in notifications:
                    self.apply(self.app.domain_event_of(notification))
                    self.position = notification.id
                moved += len(notifications)
                if len(notifications) < self.batch_size:
                    return moved
