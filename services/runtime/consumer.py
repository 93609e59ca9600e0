"""The effectively-once consumer.

For each message it writes, in ONE transaction of the service's event store:
- the events the handler caused,
- an inbox entry whose id is derived from the integration event's ``event_id`` (a second copy of
  the same event, e.g. republished by an outbox relay after a crash, collides with it), and
- a tracking record of the message's position (topic, partition, offset), so a redelivery of the
  same offset (a consumer killed between its database commit and its Kafka commit) is skipped.
  Positions belong to one broker log: with a ``log_id`` (a memory-only broker's incarnation) they
  are tracked as ``<name>@<log_id>:<topic>:<partition>``, so a new, empty log starts from 0 and
  its messages are not taken for redeliveries; what was processed before is then recognised by
  the inbox (event ids), which is keyed by the consumer's name alone.

A handled message whose handler collects nothing writes no inbox entry (nothing was done, so
nothing can be done twice): only its position is tracked, as for a message with no handler. In a
batch, the store is asked once, on PostgreSQL, which positions and inbox entries it has for all
of the batch's handled messages.

Kafka's own idempotence and transactions are not relied on. A message that is not a valid
contract (or whose key or headers contradict its body) goes to ``<topic>.dlq`` at once; one whose
handler keeps failing goes there after bounded retries with backoff, with the error in the
headers; then the partition moves on. A dead letter too large to publish whole is cut short and
marked so. Failures of the
store itself (database down) are not the message's fault: they are retried without dead-lettering,
and the message is not acknowledged until they pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    Tracking,
)

from contracts.envelope import IntegrationEvent
from contracts.registry import ContractError, parse_event_and_version
from contracts.topics import dlq
from services.runtime.aggregate_cache import unit_of_work
from services.runtime.audit import acting_as, consumer_actor
from services.runtime.eventstore import Processing, ServiceApplication, stable_id
from services.runtime.observability import DEAD_LETTERS, MESSAGES_CONSUMED, correlation_id_var

log = logging.getLogger(__name__)

# A dead letter too large to publish whole keeps this much of the message.
TRUNCATED_BYTES = 64 * 1024
# The producer's (or broker's) answer to a message over its size limit.
TOO_LARGE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def parse_delivered(message: ConsumedMessage) -> IntegrationEvent:
    """The event a message carries, checked against how it travelled (check_delivery)."""
    event, body_version = parse_event_and_version(message.value, topic=message.topic)
    check_delivery(message, event, body_version)
    return event


def check_delivery(message: ConsumedMessage, event: IntegrationEvent,
                   body_version: int | None = None) -> None:
    """How a message travelled must agree with what it says: its key is the event's partition
    key (the service area, so one elder's events stay in one partition, in order), and the
    ``type`` and ``schema_version`` headers, when present, name the body's type and version
    (``body_version``, before any upcast: read from the message again when not given).
    A message that contradicts itself is not acted on; ContractError says why."""
    key = event.key()
    if message.key != key:
        found = "no key" if message.key is None else f"key {message.key!r}"
        raise ContractError(
            f"message has {found}, not the partition key {key!r} "
            f"({event.partition_key_field} of the {event.type})",
            event_type=event.type, event_id=str(event.event_id))
    header_type = message.headers.get("type")
    if header_type is not None and header_type != event.type:
        raise ContractError(f"header type {header_type!r} contradicts the body's type "
                            f"{event.type!r}", event_type=event.type, event_id=str(event.event_id))
    header_version = message.headers.get("schema_version")
    if header_version is not None:
        if body_version is None:
            body_version = json.loads(message.value).get("schema_version")  # before upcasts
        if header_version != str(body_version):
            raise ContractError(
                f"header schema_version {header_version!r} contradicts the body's "
                f"schema_version {body_version!r}", event_type=event.type,
                event_id=str(event.event_id))


class ConcurrentWrite(RuntimeError):
    """Another writer changed an aggregate this message changes; try the message again."""


# Errors of the infrastructure, not of the message: retry, never dead-letter.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConcurrentWrite,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"  # same event_id seen before (republished)
    REDELIVERED = "redelivered"  # same position seen before (Kafka redelivery)
    IGNORED = "ignored"  # a valid event this consumer does not act on
    UNCHANGED = "unchanged"  # handled, and the handler found nothing to change
    DEAD_LETTERED = "dead_lettered"


class InboxEntry(Aggregate):
    """Marks one integration event as processed by one consumer."""

    @staticmethod
    def create_id(consumer: str, event_id: UUID, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("inbox", consumer, event_id)

    @event("Received")
    def __init__(self, consumer: str, event_id: UUID, type: str, source: str,
                 position: int) -> None:
        self.consumer = consumer
        self.event_id = event_id
        self.type = type
        self.source = source
        self.position = position


@dataclass(frozen=True)
class ConsumedMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"

    @property
    def position(self) -> int:
        # Tracking ids must grow strictly from 1; Kafka offsets start at 0.
        return self.offset + 1


@dataclass(frozen=True)
class SeenBefore:
    """What the store knew of a run of messages before processing it: the position tracked
    under each tracking name, and which inbox entries exist."""

    positions: dict[str, int]
    stored: set[UUID]


class DeadLetterPublisher(Protocol):
    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> None: ...


Handler = Callable[[IntegrationEvent, ProcessingEvent], None]


class IdempotentConsumer:
    """Applies integration events to a service's application, effectively once."""

    def __init__(
        self,
        app: ServiceApplication,
        name: str,
        handlers: dict[str, Handler],
        dead_letters: DeadLetterPublisher,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.2,
        after_commit: Callable[[ConsumedMessage], None] | None = None,
        actor: str | None = None,
        log_id: str | None = None,
        confirm_log: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        # The broker log the tracked positions belong to (None: a persistent log, plain names).
        self.log_id = log_id
        # Asked before a message is skipped as a redelivery: True when the broker's log is not
        # ``log_id`` any more (restarted empty; the caller has moved ``log_id`` to the new one),
        # so an offset seen in the old log is not taken for the same message in the new one.
        self.confirm_log = confirm_log
        # Who the audit trail names for what this consumer changes.
        self.actor = actor or consumer_actor(app.name.lower())
        self.name = name
        self.handlers = handlers
        self.dead_letters = dead_letters
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        # Test hook: called after the database commit, before the broker commit.
        self.after_commit = after_commit

    def tracking_name(self, source: str) -> str:
        """The tracking record of ``source`` (topic:partition) in this consumer's broker log."""
        if self.log_id:
            return f"{self.name}@{self.log_id}:{source}"
        return f"{self.name}:{source}"

    # A batch of messages ----------------------------------------------------------------------
    async def consume_batch(self, messages: Sequence[ConsumedMessage]) -> list[Outcome]:
        """Consume ``messages`` in order, each in its own transaction as ``consume`` does, with
        one hop to a worker thread for the run of messages that go through without trouble
        (valid, handled or passed over, written at the first try). The message that needs more
        (invalid, a failing handler, the store away, a redelivery to confirm against the log)
        goes through ``consume`` on its own, from its start, and the run resumes after it."""
        outcomes: list[Outcome] = []
        while len(outcomes) < len(messages):
            rest = messages[len(outcomes):]
            outcomes += await asyncio.to_thread(self._process_run, rest)
            if len(outcomes) < len(messages):
                outcomes.append(await self.consume(messages[len(outcomes)]))
        return outcomes

    def _process_run(self, messages: Sequence[ConsumedMessage]) -> list[Outcome]:
        """The outcomes of the longest run of ``messages`` that needs nothing but the store;
        the first message that needs more is left, untouched or rolled back, to ``consume``.
        The run is one unit of work (its aggregates' freshness is checked once)."""
        with unit_of_work():
            return self._process_messages(messages)

    def _process_messages(self, messages: Sequence[ConsumedMessage]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # The last position per partition of messages passed over and not yet tracked: most
        # of what a service is sent it does not handle, and a commit each for nothing but the
        # position was a third of the database's commits. Passing over changes nothing, so an
        # untracked one read again is passed over again; a later message's tracking record
        # covers it (positions are "up to"), else one is written per partition at the end.
        untracked: dict[str, int] = {}
        try:
            self._process_run_of(messages, outcomes, untracked)
        finally:
            for source, position in untracked.items():
                self._insert_tracking(Tracking(self.tracking_name(source), position))
        return outcomes

    def _process_run_of(self, messages: Sequence[ConsumedMessage], outcomes: list[Outcome],
                        untracked: dict[str, int]) -> None:
        valid: list[tuple[ConsumedMessage, IntegrationEvent]] = []
        for message in messages:
            try:
                integration_event = parse_delivered(message)
            except Exception:  # noqa: BLE001 - consume dead-letters it, saying why
                break
            valid.append((message, integration_event))
        seen = self._seen_many(valid)
        for message, integration_event in valid:
            token = correlation_id_var.set(str(integration_event.correlation_id))
            try:
                outcome = self._process(message, integration_event, track_ignored=False,
                                        seen=seen)
            except Exception:  # noqa: BLE001 - nothing was written: consume retries it
                break
            finally:
                correlation_id_var.reset(token)
            if outcome is Outcome.REDELIVERED and self.confirm_log is not None:
                break  # consume asks the broker whether this is still the same log
            if outcome in (Outcome.IGNORED, Outcome.UNCHANGED):
                untracked[message.source] = message.position
            else:  # tracked at this position or later already
                untracked.pop(message.source, None)
            self._done(message, integration_event, outcome)
            outcomes.append(outcome)

    def _seen_many(self, valid: Sequence[tuple[ConsumedMessage, IntegrationEvent]]
                   ) -> SeenBefore | None:
        """What the store knows of the handled messages of a run (their positions tracked,
        their events in the inbox), asked in one round trip where the store can (PostgreSQL),
        instead of once per message. Asked before the first is processed: a message processed
        earlier in the same run is caught when its second copy's inbox entry collides."""
        many = getattr(self.app.process_recorder, "seen_before_many", None)
        handled = [(m, e) for m, e in valid if e.type in self.handlers]
        if many is None or len(handled) < 2:
            return None
        positions, stored = many(
            sorted({self.tracking_name(m.source) for m, _ in handled}),
            [InboxEntry.create_id(self.name, e.event_id) for _, e in handled])
        return SeenBefore(positions, stored)

    # The whole of one message ---------------------------------------------------------------
    async def consume(self, message: ConsumedMessage) -> Outcome:
        try:
            integration_event = parse_delivered(message)
        except Exception as error:  # noqa: BLE001 - whatever is wrong, it is the message's
            # A ContractError says what is wrong; anything else escaping the parser is the
            # message's fault all the same: raising would redeliver it forever (a stalled
            # partition), so it is dead-lettered with its type and trace.
            if await asyncio.to_thread(self._seen, message) and not await self._log_changed():
                return Outcome.REDELIVERED  # dead-lettered already, before a crash or rebalance
            await self._dead_letter(message, error, attempts=1, type_name="invalid")
            await asyncio.to_thread(self._track_only, message)
            return Outcome.DEAD_LETTERED

        token = correlation_id_var.set(str(integration_event.correlation_id))
        try:
            return await self._consume_valid(message, integration_event)
        finally:
            correlation_id_var.reset(token)

    async def _consume_valid(
        self, message: ConsumedMessage, integration_event: IntegrationEvent
    ) -> Outcome:
        attempts = 0
        transient_backoff = self.backoff_s
        while True:
            attempts += 1
            try:
                outcome = await asyncio.to_thread(self._process, message, integration_event)
                if outcome is Outcome.REDELIVERED and await self._log_changed():
                    attempts -= 1  # a position of the old log: look again under the new one
                    continue
            except TRANSIENT_ERRORS:
                log.warning("store unavailable, retrying", exc_info=True)
                attempts -= 1  # not the message's fault
                await asyncio.sleep(transient_backoff)
                transient_backoff = min(transient_backoff * 2, 5.0)
                continue
            except Exception as error:  # noqa: BLE001 - bounded retries, then dead letter
                if attempts < self.max_attempts:
                    log.warning(
                        "handler failed (attempt %s of %s)", attempts, self.max_attempts,
                        exc_info=True,
                    )
                    await asyncio.sleep(self.backoff_s * 2 ** (attempts - 1))
                    continue
                await self._dead_letter(message, error, attempts, integration_event.type)
                await asyncio.to_thread(self._track_only, message)
                outcome = Outcome.DEAD_LETTERED
            self._done(message, integration_event, outcome)
            return outcome

    def _done(self, message: ConsumedMessage, integration_event: IntegrationEvent,
              outcome: Outcome) -> None:
        MESSAGES_CONSUMED.labels(self.name, integration_event.type, outcome.value).inc()
        if outcome is Outcome.PROCESSED and self.after_commit is not None:
            self.after_commit(message)

    async def _log_changed(self) -> bool:
        if self.confirm_log is None:
            return False
        try:
            return await self.confirm_log()
        except Exception as error:  # noqa: BLE001 - unknown: retried, never skipped or dead-lettered
            raise ConnectionError(f"cannot confirm the broker log: {error!r}") from error

    # One transaction --------------------------------------------------------------------------
    def _process(self, message: ConsumedMessage, integration_event: IntegrationEvent,
                 *, track_ignored: bool = True, seen: SeenBefore | None = None) -> Outcome:
        with unit_of_work():
            return self._process_one(message, integration_event, track_ignored, seen)

    def _process_one(self, message: ConsumedMessage, integration_event: IntegrationEvent,
                     track_ignored: bool = True, seen: SeenBefore | None = None) -> Outcome:
        recorder = self.app.process_recorder
        tracking_name = self.tracking_name(message.source)
        tracking = Tracking(tracking_name, message.position)
        handler = self.handlers.get(integration_event.type)
        if handler is None:
            # Nothing to do but move the position (a no-op when it is there already): one
            # round trip instead of three; in a batch, not even that (_process_messages).
            if track_ignored:
                self._insert_tracking(tracking)
            return Outcome.IGNORED
        inbox_id = InboxEntry.create_id(self.name, integration_event.event_id)
        seen_before = getattr(recorder, "seen_before", None)
        if seen is not None:  # asked for the whole run already
            redelivered = seen.positions.get(tracking_name, 0) >= message.position
            duplicate = not redelivered and inbox_id in seen.stored
        elif seen_before is not None:  # PostgreSQL: both questions in one round trip
            redelivered, duplicate = seen_before(tracking_name, message.position, inbox_id)
        else:
            redelivered = recorder.has_tracking_id(tracking_name, message.position)
            duplicate = not redelivered and inbox_id in self.app.repository
        if redelivered:
            return Outcome.REDELIVERED
        if duplicate:
            self._insert_tracking(tracking)
            return Outcome.DUPLICATE
        processing = Processing(tracking=tracking)
        processing.collect_events(
            InboxEntry(
                consumer=self.name,
                event_id=integration_event.event_id,
                type=integration_event.type,
                source=message.source,
                position=message.position,
            )
        )
        # The audit stamp of every event written: this consumer, caused by this event.
        # Sections the handler entered are left once the record is written (or not).
        with acting_as(self.actor, f"{integration_event.type}:{integration_event.event_id}"), \
                processing.sections:
            handler(integration_event, processing)
            if all(e.originator_id == inbox_id for e in processing.events):
                # Nothing to change (the time bank is sent every verified visit, and acts on
                # a volunteer's): like a message passed over, only the position moves. No
                # inbox entry is needed: a second copy finds nothing to change either, or,
                # if the state changed since, acts once then.
                if track_ignored:
                    self._insert_tracking(tracking)
                return Outcome.UNCHANGED
            return self._record(processing, integration_event, inbox_id, tracking_name,
                                message.position)

    def _record(self, processing: ProcessingEvent, integration_event: IntegrationEvent,
                inbox_id: UUID, tracking_name: str, position: int) -> Outcome:
        recorder = self.app.process_recorder
        try:
            self.app._record(processing)  # events + inbox + tracking, atomically
        except IntegrityError:
            # Either another copy of this event or position got there first (done already), or
            # a command wrote one of the same aggregates meanwhile (optimistic concurrency):
            # then nothing was written and the message is simply processed again.
            if inbox_id in self.app.repository or recorder.has_tracking_id(tracking_name,
                                                                           position):
                return Outcome.DUPLICATE
            raise ConcurrentWrite(f"{integration_event.type} {integration_event.event_id} "
                                  "raced with another writer; retrying") from None
        self.app._take_snapshots(processing)
        return Outcome.PROCESSED

    def _insert_tracking(self, tracking: Tracking) -> None:
        # An equal or later position may be recorded already: then there is nothing to do.
        with contextlib.suppress(IntegrityError):
            self.app.process_recorder.insert_tracking(tracking)

    def _seen(self, message: ConsumedMessage) -> bool:
        return bool(self.app.process_recorder.has_tracking_id(
            self.tracking_name(message.source), message.position))

    def _track_only(self, message: ConsumedMessage) -> None:
        self._insert_tracking(Tracking(self.tracking_name(message.source), message.position))

    async def _dead_letter(
        self, message: ConsumedMessage, error: BaseException, attempts: int, type_name: str
    ) -> None:
        headers = dict(message.headers)
        headers.update(
            {
                "x-error": str(error)[:2000],
                "x-error-type": type(error).__name__,
                "x-error-trace": "".join(traceback.format_exception(error))[-4000:],
                "x-source-topic": message.topic,
                "x-source-partition": str(message.partition),
                "x-source-offset": str(message.offset),
                "x-consumer": self.name,
                "x-attempts": str(attempts),
                "x-failed-at": datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self.dead_letters.publish(dlq(message.topic), message.key or b"",
                                            message.value, headers)
        except TOO_LARGE:
            # The copy (message + error headers) is over the producer's or broker's limit:
            # dead-letter its beginning instead, marked as cut; the whole message stays on its
            # source topic at the offset named. Raising would redeliver it forever.
            ours = {k: v for k, v in headers.items() if k.startswith("x-")}
            ours.update({"x-value-truncated": "true",
                         "x-original-size": str(len(message.value)),
                         "x-original-headers": ",".join(sorted(message.headers))[:1000]})
            await self.dead_letters.publish(dlq(message.topic), (message.key or b"")[:1024],
                                            message.value[:TRUNCATED_BYTES], ours)
        DEAD_LETTERS.labels(self.name, message.topic).inc()
        MESSAGES_CONSUMED.labels(self.name, type_name, Outcome.DEAD_LETTERED.value).inc()
        log.error(
            "dead-lettered message",
            extra={"topic": message.topic, "offset": message.offset, "error": str(error)},
        )
