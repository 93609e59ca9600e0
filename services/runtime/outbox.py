"""The outbox relay: a service's notification log is its outbox.

The relay reads new notifications in order, translates each domain event into zero or more
integration events (a translator per service; raw domain events never leave a service), publishes
them, and only then records how far it got as a tracking record in the service's own store. After a
crash it resumes from the recorded position and may publish the last batch again: integration
event ids are derived from the domain event, so a republished event has the same ``event_id`` and
consumers drop it as a duplicate.

The position is one broker log's: with a ``log_id`` (a memory-only broker's incarnation) it is
tracked as ``<name>@<log_id>``, so a relay facing a new, empty log publishes the whole outbox
again from the start; consumers drop what they had processed by its event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from contracts.envelope import IntegrationEvent
from services.runtime.eventstore import ServiceApplication, stable_id
from services.runtime.observability import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

Translator = Callable[[Any], Iterable[IntegrationEvent]]


class Publisher(Protocol):
    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> None: ...


# (topic, key, value, headers)
Message = tuple[str, bytes, bytes, dict[str, str]]


async def publish_all(publisher: Publisher, messages: list[Message]) -> None:
    """Publish the messages in order and return once each is confirmed. A publisher with its
    own ``publish_all`` (the broker's) sends them all before waiting for the confirmations:
    one at a time, every message waited for its own round trip to the broker."""
    many = getattr(publisher, "publish_all", None)
    if many is not None:
        await many(messages)
        return
    for message in messages:
        await publisher.publish(*message)


def integration_event_id(domain_event: Any, type_name: str) -> UUID:
    """Stable id of the integration event that a domain event becomes (same on every replay)."""
    return stable_id(
        "integration", domain_event.originator_id, domain_event.originator_version, type_name
    )


class RelayLease(Protocol):
    """Whether this process may relay an outbox now: one relay per outbox at a time, when
    several replicas of a service share its store (``services.runtime.pgstore.AdvisoryLease``)."""

    def held(self) -> bool: ...

    def release(self) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        app: ServiceApplication,
        translate: Translator,
        publisher: Publisher,
        *,
        name: str = "outbox-relay",
        batch_size: int = 200,
        poll_interval_s: float = 0.05,
        log_id: str | None = None,
        lease: RelayLease | None = None,
    ) -> None:
        self.app = app
        self.lease = lease  # None: this process is the store's only relay
        self.name = name
        # Where the position is kept: one record per broker log (plain name: a persistent log).
        self.tracking_name = name
        self.follow(log_id)
        self.translate = translate
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._service = app.name.lower()
        # Whether the last relay_once found nothing after its position (the backlog is then 0
        # without asking), and when the backlog is next counted otherwise: two queries each
        # time, which on every round were a tenth of the pipeline's commits.
        self._caught_up = False
        self._next_backlog_count = 0.0

    def follow(self, log_id: str | None) -> None:
        """Track the position in the broker log ``log_id`` from now on (a new, empty log: the
        relay publishes the whole outbox into it again; a batch under way is recorded under the
        log it was published to)."""
        self.tracking_name = f"{self.name}@{log_id}" if log_id else self.name

    def position(self, tracking_name: str | None = None) -> int:
        return self.app.process_recorder.max_tracking_id(tracking_name or self.tracking_name) or 0

    def backlog(self) -> int:
        latest = self.app.process_recorder.max_notification_id() or 0
        return max(0, latest - self.position())

    async def relay_once(self) -> int:
        """Publish the next batch; return how many notifications were consumed."""
        recorder = self.app.process_recorder
        self._caught_up = False
        if self.lease is not None and not await asyncio.to_thread(self.lease.held):
            return 0  # another replica relays this outbox
        tracking_name = self.tracking_name  # the log this batch goes to, even if it changes
        start = await asyncio.to_thread(self.position, tracking_name)
        notifications = await asyncio.to_thread(
            recorder.select_notifications, start + 1, self.batch_size
        )
        self._caught_up = not notifications
        if not notifications:
            return 0
        messages: list[Message] = []
        published: list[str] = []
        for notification in notifications:
            domain_event = self.app.domain_event_of(notification)
            for integration_event in self.translate(domain_event):
                messages.append((
                    integration_event.topic,
                    integration_event.key(),
                    integration_event.to_bytes(),
                    {
                        "type": integration_event.type,
                        "schema_version": str(integration_event.schema_version),
                        "correlation_id": str(integration_event.correlation_id),
                    },
                ))
                published.append(integration_event.type)
        # Every message confirmed before the position moves past them.
        await publish_all(self.publisher, messages)
        for type_name in published:
            OUTBOX_PUBLISHED.labels(self._service, type_name).inc()
        last = notifications[-1].id
        try:
            await asyncio.to_thread(recorder.insert_tracking, Tracking(tracking_name, last))
        except IntegrityError:
            # Another relay of this outbox got as far first (a replica that held the lease
            # until a moment ago): it published the same messages, and consumers drop copies.
            if await asyncio.to_thread(self.position, tracking_name) < last:
                raise
            log.info("outbox position %s already recorded by another relay", last,
                     extra={"relay": self.name})
        return len(notifications)

    async def _report_backlog(self) -> None:
        """The backlog gauge: 0 when the last round found nothing new, else counted at most
        once a second."""
        if self._caught_up:
            OUTBOX_BACKLOG.labels(self._service).set(0)
        elif time.monotonic() >= self._next_backlog_count:
            OUTBOX_BACKLOG.labels(self._service).set(await asyncio.to_thread(self.backlog))
            self._next_backlog_count = time.monotonic() + 1.0

    def close(self) -> None:
        """Give up the lease (another replica takes the outbox over)."""
        if self.lease is not None:
            self.lease.release()

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until ``stopping`` is set; back off on errors, never give up."""
        backoff = self.poll_interval_s
        while not stopping.is_set():
            try:
                moved = await self.relay_once()
                await self._report_backlog()
                backoff = self.poll_interval_s
            except Exception:  # noqa: BLE001 - keep relaying after transient failures
                log.exception("outbox relay failed; retrying", extra={"relay": self.name})
                moved = 0
                backoff = min(backoff * 2, 5.0)
            if moved < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=backoff)


def aggregate_at(app: ServiceApplication, domain_event: Any) -> Any:
    """The aggregate as it was right after the event: what the event means, deterministically
    (the same on every replay, whatever happened to the aggregate later). Usually the state
    this process kept when it saved the event (replaying it from the store was an eighth of
    a check-in's CPU), else replayed up to that version."""
    state = app.saved_state(domain_event.originator_id, domain_event.originator_version)
    if state is not None:
        return state
    return app.repository.get(domain_event.originator_id, version=domain_event.originator_version)


def envelope(domain_event: Any, cls: type[IntegrationEvent], service_area_id: str,
             correlation_id: str | UUID, causation_id: str | UUID | None = None) -> dict[str, Any]:
    """Envelope fields of the integration event ``cls`` that ``domain_event`` becomes."""
    return {
        "event_id": integration_event_id(domain_event, cls.__name__),
        "occurred_at": domain_event.timestamp,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "service_area_id": service_area_id,
    }
