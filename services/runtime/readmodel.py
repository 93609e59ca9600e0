"""In-process read models that follow a service's own notification log.

A read model is a pure function of the events: it can always be rebuilt by replaying the log from
the start, which is exactly what happens when a process starts. Queries call ``catch_up()`` first,
so a read after a write in the same process always sees the write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from eventsourcing.utils import resolve_topic

from services.runtime.eventstore import ServiceApplication


class FollowingReadModel:
    """``apply`` is given each event of the log in order; with ``applies_to`` (the qualified
    names of the event classes it acts on, "Visit.Scheduled"), only those: the others are
    not decrypted and decoded at all (most of a catch-up's cost, for events it ignores)."""

    def __init__(self, app: ServiceApplication, apply: Callable[[Any], None],
                 batch_size: int = 1000, applies_to: Iterable[str] | None = None) -> None:
        self.app = app
        self.apply = apply
        self.batch_size = batch_size
        self.applies_to = None if applies_to is None else frozenset(applies_to)
        self.position = 0
        self._lock = threading.Lock()
        self._wanted: dict[str, bool] = {}  # stored topic -> whether apply acts on it

    def wants(self, topic: str) -> bool:
        """Whether events stored under ``topic`` go to ``apply`` (by the class the topic
        names now, so a renamed class's old topic counts as the class)."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            wanted = self.applies_to is None or resolve_topic(topic).__qualname__ in \
                self.applies_to
            self._wanted[topic] = wanted
        return wanted

    def catch_up(self) -> int:
        with self._lock:
            moved = 0
            while True:
                notifications = self.app.process_recorder.select_notifications(
                    self.position + 1, self.batch_size
                )
                for notification in notifications:
                    if self.wants(notification.topic):
                        self.apply(self.app.domain_event_of(notification))
                    self.position = notification.id
                moved += len(notifications)
                if len(notifications) < self.batch_size:
                    return moved
