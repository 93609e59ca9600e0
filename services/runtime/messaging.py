"""FastStream wiring shared by every service: subscribers that feed the idempotent consumer,
a publisher for the outbox relay and the dead-letter topics, and the AsyncAPI document.

tansu does not support aiokafka's idempotent producer or transactions, and group joins are slow with
default timeouts: idempotence stays off and session timeouts are short (settings).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.specification import AsyncAPI

from contracts.registry import EVENT_TYPES
from services.runtime.consumer import ConsumedMessage, Handler, IdempotentConsumer
from services.runtime.settings import SharedSettings

log = logging.getLogger(__name__)


@dataclass
class ConsumerSpec:
    """What one service consumes: a consumer group, its topics and a handler per event type."""

    group: str
    handlers_by_topic: dict[str, dict[str, Handler]]


@dataclass
class MessagingSpec:
    service: str
    consumer: ConsumerSpec | None
    publishes: list[str] = field(default_factory=list)


class BrokerPublisher:
    """The outbox relay's and dead-letter publisher, over a FastStream Kafka broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def publish(self, topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> None:
        await self.broker.publish(value, topic=topic, key=key, headers=headers)

    async def publish_all(self, messages: list[tuple[str, bytes, bytes, dict[str, str]]]
                          ) -> None:
        """Hand every message to the producer (in order: one partition's messages are sent in
        order), then wait for all the broker's confirmations; the first failure is raised."""
        confirmations = [
            await self.broker.publish(value, topic=topic, key=key, headers=headers,
                                      no_confirm=True)
            for topic, key, value, headers in messages]
        outcomes = await asyncio.gather(*confirmations, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


def make_broker(bootstrap_servers: str, settings: SharedSettings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        enable_idempotence=False,  # not supported by tansu; consumers deduplicate instead
        acks=1,
        request_timeout_ms=15_000,
        logger=None,
        # No dependency injection into handlers: resolving even the message parameter costs
        # fast_depends a worker-thread hop per message (a tenth of a consumer's CPU);
        # on_message takes the message from the broker's context instead.
        apply_types=False,
        # messages received/published, processing time and errors per handler and topic
        middlewares=(_prometheus_middleware(client_id),),
    )


def _prometheus_middleware(client_id: str) -> Any:
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware
    from prometheus_client import REGISTRY

    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)


async def _raw_body(message: Any) -> bytes:
    """Hand the consumer the raw bytes: it validates the contract itself and dead-letters
    what is not valid, so FastStream must not decode (or reject) anything first."""
    return message.body


# A failed offset commit is tried again after this long at the least.
RETRY_S = 1.0


class OffsetCommits:
    """The broker's committed offsets of one subscriber, at most one commit every
    ``interval_s``, each naming the offset after the last message *processed* per partition.

    What makes processing effectively-once is the tracking record written with each message's
    events; the committed offset only says where a restarted or rebalanced consumer resumes
    reading. Committing after every message cost a broker round trip each (a tenth of a
    consumer's CPU); committing less often costs a few more redeliveries after a crash, each
    skipped by its tracking record. The offsets are explicit, never "whatever was read": a
    commit made while the next message is in hand must not pass it.
    """

    def __init__(self, interval_s: float = 0.5,
                 confirm_log: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.interval_s = interval_s
        # Asks the broker whether its log is still the one the offsets are positions in (and
        # moves to a new one if not: the host's confirm_log, which calls forget()).
        self._confirm_log = confirm_log
        # Bumped by forget(): offsets of messages read from an older log are not recorded.
        self.generation = 0
        # A commit failed: the broker may have been restarted empty since, so its log is
        # confirmed before the next commit, or offsets from the old log would be committed
        # into the new one, past its end, and the group would skip what is republished.
        self._failed = False
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._later: asyncio.TimerHandle | None = None
        # The timer's commit task, held so that it is not collected while it runs.
        self._flushing: asyncio.Task[None] | None = None

    async def processed(self, consumer: Any, topic: str, partition: int, offset: int,
                        generation: int | None = None) -> None:
        """The message at ``offset`` is done (its tracking record is in the store). With the
        ``generation`` read before the message was processed: nothing is recorded if the
        broker's log changed meanwhile (the offset is a position in the old log)."""
        if generation is not None and generation != self.generation:
            return
        self._consumer = consumer
        self._pending[TopicPartition(topic, partition)] = offset + 1
        loop = asyncio.get_running_loop()
        wait = self._last + self.interval_s - loop.time()
        if wait <= 0:
            await self.flush()
        elif self._later is None:  # the last messages before a pause are committed too
            self._later = loop.call_later(wait, self._flush_later)

    def _flush_later(self) -> None:
        self._later = None
        self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Commit what is processed and not yet committed (before the consumer stops)."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if not self._pending or self._consumer is None:
            return
        if self._failed and self._confirm_log is not None:
            try:
                if await self._confirm_log():
                    return  # a new log: forget() dropped the old log's offsets
            except Exception as error:  # noqa: BLE001 - the broker is still away
                log.info("broker log not confirmed, commit tried again later: %r", error)
                self._retry_later()
                return
            if not self._pending:
                return
        offsets, self._pending = self._pending, {}
        self._last = asyncio.get_running_loop().time()
        try:
            await self._consumer.commit(offsets)
        except Exception as error:  # noqa: BLE001 - a partition moved to another member
            # meanwhile, or the broker is away (restarting, rebalancing): never the message's
            # failure; what is not committed may be delivered again and is recognised by its
            # tracking record.
            log.info("offset commit failed, to be tried again: %r", error)
            self._failed = True
            self._keep_for_retry(offsets)
        else:
            self._failed = False

    def _keep_for_retry(self, offsets: dict[TopicPartition, int]) -> None:
        """Keep the offsets of a failed commit pending (unless a later offset of the partition
        already is, or the partition is no longer this member's) and try again after the
        interval, at least a second: dropped, the last commit before a pause would never be
        made, the group's lag would not reach zero and a restart would re-read all of it."""
        assignment = getattr(self._consumer, "assignment", None)
        assigned = assignment() if callable(assignment) else None
        for partition, offset in offsets.items():
            if partition not in self._pending and (assigned is None or partition in assigned):
                self._pending[partition] = offset
        self._retry_later()

    def _retry_later(self) -> None:
        if self._pending and self._later is None:
            self._later = asyncio.get_running_loop().call_later(
                max(self.interval_s, RETRY_S), self._flush_later)

    def forget(self) -> None:
        """Drop the pending offsets: they are positions in a broker log that is gone (the
        broker was restarted empty and the consumer reads the new one from its start)."""
        self.generation += 1
        self._failed = False
        self._pending = {}
        if self._later is not None:
            self._later.cancel()
            self._later = None


def subscribe(
    broker: KafkaBroker,
    consumer: IdempotentConsumer,
    topics: list[str],
    group: str,
    settings: SharedSettings,
    description: str = "",
    *,
    documentation: bool = False,
    confirm_log: Callable[[], Awaitable[bool]] | None = None,
) -> OffsetCommits:
    """Feed ``topics`` to ``consumer`` in group ``group``; returns the subscriber's offset
    commits, to be flushed before it stops. With ``documentation`` the subscriber is only
    described (for AsyncAPI): as taking the messages of its topics one by one, as they are on
    the wire, not in the batches it is handed."""
    commits = OffsetCommits(settings.kafka_commit_interval_s, confirm_log)

    async def on_message(bodies: list[bytes]) -> None:
        msg: KafkaMessage = broker.context.get_local("message")
        generation = commits.generation
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        try:
            await consumer.consume_batch([ConsumedMessage(
                topic=record.topic, partition=record.partition, offset=record.offset,
                key=record.key, value=record.value or b"", headers={
                    k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
                    for k, v in (record.headers or ())},
            ) for record in records])
        except BaseException:
            # Not all processed (the store is away for good, the process stops): the batch is
            # read again from its first message; what was processed is recognised as such.
            await msg.nack()
            raise
        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[(record.topic, record.partition)] = record.offset
        for (topic, partition), offset in last.items():
            await commits.processed(msg.consumer, topic, partition, offset, generation)

    async def described(body: bytes) -> None:
        raise NotImplementedError("documentation only")

    handler = described if documentation else on_message
    # One subscriber per service for all its topics: tansu joins take seconds each, and
    # FastStream starts subscribers one after another.
    handler.__name__ = group.replace("-", "_")
    broker.subscriber(
        *topics,
        group_id=group,
        auto_offset_reset="earliest",
        # Offsets are committed by OffsetCommits after processing; on an unexpected error
        # on_message seeks back so the message is read again.
        ack_policy=AckPolicy.MANUAL,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_session_timeout_ms,
        # Whatever has arrived, up to 100 messages, is handed over as one batch (one worker
        # thread hop for the lot); a poll waits up to 50 ms for a first message, and FastStream
        # sleeps as long after an empty one: a message arriving in that pause waits <= 50 ms.
        batch=not documentation,
        max_records=100,
        batch_timeout_ms=50,
        decoder=_raw_body,
        title=f"{group}:{','.join(topics)}",
        description=description,
    )(handler)
    return commits


def declare_publications(broker: KafkaBroker, service: str, topics: list[str]) -> None:
    """Publishers, for the AsyncAPI document: each topic with the events that travel on it."""
    for topic in topics:
        types = sorted(name for name, cls in EVENT_TYPES.items() if cls.topic == topic)
        broker.publisher(
            topic,
            title=f"{service}:{topic}",
            description="Integration events: " + ", ".join(types),
        )


def asyncapi_document(broker: KafkaBroker, service: str) -> dict[str, Any]:
    spec = AsyncAPI(broker, title=f"homecare {service}", version="1.0.0",
                    description=f"Integration events consumed and published by {service}")
    return spec.to_specification().to_jsonable()


def service_messaging(service: str, app: Any, publishes: list[str]) -> MessagingSpec:
    """The messaging of a service whose application declares ``subscriptions`` and ``policy``."""
    handlers = {topic: {name: app.policy for name in names}
                for topic, names in app.subscriptions.items()}
    consumer = ConsumerSpec(group=f"homecare-{service}", handlers_by_topic=handlers)
    return MessagingSpec(service=service, consumer=consumer if handlers else None,
                         publishes=publishes)


def asyncapi_documents() -> dict[str, dict[str, Any]]:
    """One AsyncAPI document per service, from its FastStream subscribers and publishers,
    built without connecting to any broker."""
    from services.runtime.consumer import IdempotentConsumer

    docs: dict[str, dict[str, Any]] = {}
    settings = SharedSettings()
    for service, app_cls, publishes in _service_classes():
        broker = make_broker("localhost:9092", settings, f"homecare-{service}")
        declare_publications(broker, service, publishes)
        subscriptions = getattr(app_cls, "subscriptions", {})
        if subscriptions:
            consumer = IdempotentConsumer.__new__(IdempotentConsumer)  # documentation only
            names = sorted(n for types in subscriptions.values() for n in types)
            subscribe(broker, consumer, sorted(subscriptions), f"homecare-{service}", settings,
                      description=f"{service} consumes " + ", ".join(names), documentation=True)
        docs[service] = asyncapi_document(broker, service)
    return docs


def _service_classes() -> list[tuple[str, type, list[str]]]:
    from services.dispatch.application import DispatchApplication
    from services.dispatch.messaging import PUBLISHES as DISPATCH_PUBLISHES
    from services.ledger.application import LedgerApplication
    from services.ledger.messaging import PUBLISHES as LEDGER_PUBLISHES
    from services.timebank.application import TimebankApplication
    from services.timebank.messaging import PUBLISHES as TIMEBANK_PUBLISHES

    return [("dispatch", DispatchApplication, DISPATCH_PUBLISHES),
            ("ledger", LedgerApplication, LEDGER_PUBLISHES),
            ("timebank", TimebankApplication, TIMEBANK_PUBLISHES)]
