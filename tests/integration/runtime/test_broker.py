"""The local tansu broker launcher, topic bootstrap, and the client settings that work on tansu."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from kafka.admin import KafkaAdminClient

from services.runtime.broker import (
    BrokerStartError,
    ExternalBroker,
    LocalBroker,
    broker_from_env,
    end_offsets,
    free_port,
    leave_group,
    port_is_free,
    probe_metadata,
)
from services.runtime.topics import TopicBootstrapError, TopicSpec, dlq_topic, ensure_topics

pytestmark = pytest.mark.integration

# What the services use on tansu (see services/runtime/broker.py): joins take ~2 s with these.
GROUP_SETTINGS = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 1000,
    "rebalance_timeout_ms": 3000,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone: it holds no port.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _fake_binary(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-tansu"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


# -- launcher ----------------------------------------------------------------------------------


def test_launcher_serves_kafka_metadata_then_frees_port_and_process(tmp_path: Path) -> None:
    """start() returns once the broker answers metadata for its own address; stop() ends the
    process and releases the port; the broker's output lands in the log directory."""
    broker = LocalBroker(tmp_path)
    with broker:
        host, port = broker.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        assert [(h, p) for _, h, p in probe_metadata(host, int(port))] == [(host, int(port))]
        pid = broker.pid
        assert pid is not None and not _process_gone(pid)
    assert not broker.running
    assert _process_gone(pid)
    assert port_is_free(int(port))
    assert broker.log_path is not None and broker.log_path.parent == tmp_path
    assert f"tcp://127.0.0.1:{port}" in broker.log_path.read_text()
    with pytest.raises(RuntimeError):
        _ = broker.bootstrap_servers


def test_two_launchers_get_different_ports(tmp_path: Path) -> None:
    """Each LocalBroker picks its own free port, so tests and a running demo do not collide."""
    with LocalBroker(tmp_path) as first, LocalBroker(tmp_path) as second:
        assert first.bootstrap_servers != second.bootstrap_servers
        assert probe_metadata("127.0.0.1", first.port)
        assert probe_metadata("127.0.0.1", second.port)


def test_broker_that_exits_early_fails_with_its_log_tail(tmp_path: Path) -> None:
    """A broker that dies on startup raises BrokerStartError quoting what it printed."""
    binary = _fake_binary(tmp_path, 'echo "fatal: cannot bind listener $4" >&2; exit 3')
    broker = LocalBroker(tmp_path, binary=binary, ready_timeout=5)
    with pytest.raises(BrokerStartError, match=r"exited with code 3(.|\n)*fatal: cannot bind"):
        broker.start()
    assert not broker.running


def test_broker_that_never_listens_times_out_and_is_killed(tmp_path: Path) -> None:
    """A broker that never answers hits the bounded ready timeout, the error carries the log
    tail, and the hung process is not left running."""
    binary = _fake_binary(tmp_path, 'echo "still warming up"; exec sleep 60')
    port = free_port()
    broker = LocalBroker(tmp_path, binary=binary, port=port, ready_timeout=0.5, stop_timeout=1)
    started = time.monotonic()
    with pytest.raises(BrokerStartError, match=r"not ready after(.|\n)*still warming up"):
        broker.start()
    assert time.monotonic() - started < 5
    assert broker.pid is None and not broker.running


_PARENT = textwrap.dedent(
    """
    import sys, threading, time
    from services.runtime.broker import LocalBroker
    broker = LocalBroker(sys.argv[1])
    if sys.argv[2] == "thread":
        # Started from a short-lived thread, as asyncio.to_thread or a helper thread would.
        starter = threading.Thread(target=broker.start)
        starter.start()
        starter.join()
    else:
        broker.start()
    print(broker.pid, broker.port, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize(
    ("how", "started_from"),
    [(signal.SIGTERM, "main"), (signal.SIGKILL, "main"), (signal.SIGKILL, "thread")],
    ids=["sigterm", "sigkill", "sigkill-started-from-thread"],
)
def test_no_orphan_broker_when_the_parent_process_dies(
    tmp_path: Path, how: signal.Signals, started_from: str
) -> None:
    """Whether the parent is terminated (its handler stops the broker) or killed outright (the
    kernel's parent-death signal), the broker does not outlive it; a broker started from a
    thread that has ended since stays up while the parent lives."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path), started_from],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        broker_pid, port = (int(part) for part in line.split())
        time.sleep(0.3)
        assert not _process_gone(broker_pid)
        assert probe_metadata("127.0.0.1", port)
        parent.send_signal(how)
        parent.wait(timeout=10)
        assert _wait_until(lambda: _process_gone(broker_pid), timeout=10)
        assert _wait_until(lambda: port_is_free(port), timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_broker_from_env_uses_the_configured_cluster_without_launching(tmp_path: Path) -> None:
    """With KAFKA_BOOTSTRAP_SERVERS set nothing is started and the value is used as given;
    without it a local broker is started."""
    external = broker_from_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092"})
    assert isinstance(external, ExternalBroker)
    assert external.bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    external.stop()
    local = broker_from_env({}, log_dir=tmp_path)
    try:
        assert isinstance(local, LocalBroker) and local.running
        assert probe_metadata("127.0.0.1", local.port)
    finally:
        local.stop()


# -- topic bootstrap ---------------------------------------------------------------------------


def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def test_ensure_topics_creates_missing_topics_and_dead_letter_topics_once(
    kafka_bootstrap: str,
) -> None:
    """The first call creates each topic with its partitions plus the asked-for .dlq topics;
    a second call (another instance starting) creates nothing and does not fail."""
    visits, orders = _unique("visits"), _unique("orders")
    specs = [TopicSpec(visits, partitions=3, dlq=True), TopicSpec(orders, partitions=2)]
    created = ensure_topics(kafka_bootstrap, specs, timeout=20)
    assert created == sorted([visits, dlq_topic(visits), orders])
    assert _partitions(kafka_bootstrap, created) == {
        visits: 3,
        dlq_topic(visits): 3,
        orders: 2,
    }
    assert ensure_topics(kafka_bootstrap, specs, timeout=20) == []
    more = _unique("credits")
    assert ensure_topics(kafka_bootstrap, [*specs, TopicSpec(more)], timeout=20) == [more]


def test_ensure_topics_gives_up_with_a_clear_error_when_no_broker_answers() -> None:
    """Nothing listening: retries until the timeout, then names the topics and the address."""
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TopicBootstrapError, match=rf"not ready on {address}"):
        ensure_topics(address, [TopicSpec("orders")], timeout=1.5)
    assert time.monotonic() - started < 10


def test_ensure_topics_waits_for_a_broker_that_comes_up_late(tmp_path: Path) -> None:
    """Services may start before the broker: ensure_topics keeps retrying and then succeeds."""
    port = free_port()
    broker = LocalBroker(tmp_path, port=port)

    async def start_late() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(broker.start)

    async def scenario() -> list[str]:
        starter = asyncio.create_task(start_late())
        created = await asyncio.to_thread(
            ensure_topics, f"127.0.0.1:{port}", [TopicSpec("late", 2)], 20
        )
        await starter
        return created

    try:
        assert asyncio.run(scenario()) == ["late"]
    finally:
        broker.stop()


# -- client behaviour on tansu -----------------------------------------------------------------


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, str]]) -> dict[str, int]:
    """Send keyed records; returns the partition each key went to."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks=1)
    await producer.start()
    try:
        partitions: dict[str, int] = {}
        for key, value in records:
            meta = await producer.send_and_wait(topic, value.encode(), key=key.encode())
            assert partitions.setdefault(key, meta.partition) == meta.partition
        return partitions
    finally:
        await producer.stop()


async def _take(consumer: AIOKafkaConsumer, count: int, timeout: float = 20) -> list:
    """Read `count` records one by one, committing after each (the services' pattern)."""
    records = []
    async with asyncio.timeout(timeout):
        while len(records) < count:
            record = await consumer.getone()
            records.append(record)
            await consumer.commit()
    return records


async def _nothing_more(consumer: AIOKafkaConsumer, wait_ms: int = 1500) -> bool:
    batch = await consumer.getmany(timeout_ms=wait_ms)
    return not any(batch.values())


async def test_keyed_records_round_trip_through_a_consumer_group(kafka_bootstrap: str) -> None:
    """Keys and values arrive unchanged over several partitions, every key stays on one
    partition, and a group member with auto_offset_reset=earliest sees records produced
    before it joined."""
    topic = _unique("roundtrip")
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=3)], timeout=20)
    sent = [(f"area-{i % 4}", f"visit-{i}") for i in range(12)]
    key_partition = await _produce(kafka_bootstrap, topic, sent)
    assert len(set(key_partition.values())) > 1  # the keys really spread over partitions

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=_unique("g"), **GROUP_SETTINGS
    )
    await consumer.start()
    try:
        records = await _take(consumer, len(sent))
        assert await _nothing_more(consumer, wait_ms=1000)
    finally:
        await consumer.stop()
    received = [(r.key.decode(), r.value.decode()) for r in records]
    assert sorted(received) == sorted(sent)
    assert all(key_partition[r.key.decode()] == r.partition for r in records)
    for key in key_partition:  # order is kept per key
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


@pytest.mark.parametrize("leave", [True, False], ids=["leave_group", "plain_stop"])
async def test_group_restart_resumes_from_the_committed_offset(
    kafka_bootstrap: str, leave: bool
) -> None:
    """With manual commits, a new member of the same group starts exactly after what the
    stopped member committed: nothing is lost, nothing is delivered twice. With leave_group()
    before stop() the new member is in after one join, not after the old session expired."""
    topic = _unique("resume")
    group = _unique("g")
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)], timeout=20)
    sent = [(f"k{i % 3}", f"v{i}") for i in range(8)]
    await _produce(kafka_bootstrap, topic, sent)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=group, **GROUP_SETTINGS
        )

    first = member()
    await first.start()
    try:
        before = await _take(first, 3)
        if leave:
            assert await leave_group(first)  # a fresh group: tansu's generation 0
    finally:
        await first.stop()

    second = member()
    joining = time.monotonic()
    await second.start()
    try:
        # Without leave_group the first member lingers until its session expires.
        after = [*await _take(second, 1, timeout=30)]
        join_seconds = time.monotonic() - joining
        after += await _take(second, len(sent) - 4)
        assert await _nothing_more(second, wait_ms=1000)
        assert not await leave_group(second)  # generation 1: aiokafka leaves by itself
    finally:
        await second.stop()
    seen = [(r.partition, r.offset) for r in before + after]
    assert len(seen) == len(set(seen)) == len(sent)
    assert sorted(r.value.decode() for r in before + after) == sorted(v for _, v in sent)
    if leave and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        assert join_seconds < GROUP_SETTINGS["session_timeout_ms"] / 1000 + 1.5


async def test_idempotent_producer_is_rejected_by_tansu(kafka_bootstrap: str) -> None:
    """Why the services run with enable_idempotence=False: tansu refuses InitProducerId.
    If this starts failing, a newer tansu supports it and the setting can be revisited."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("only meaningful against the bundled tansu broker")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    try:
        with pytest.raises(KafkaError):
            await producer.start()
    finally:
        await producer.stop()


async def test_faststream_subscriber_with_the_tansu_settings_commits_and_resumes(
    kafka_bootstrap: str,
) -> None:
    """The FastStream settings documented in broker.py: one subscriber on two topics joins
    once, sees keys, commits after each handled record (visible to the admin client), and a
    restarted app in the same group gets only what was published since."""
    topics = [_unique("visits"), _unique("orders")]
    group = _unique("g")
    ensure_topics(kafka_bootstrap, [TopicSpec(t, partitions=2) for t in topics], timeout=20)

    def app(received: list[tuple[str, bytes, bytes]]) -> KafkaBroker:
        broker = KafkaBroker(
            # Per-message logs at DEBUG: quiet unless someone asks for them.
            kafka_bootstrap, enable_idempotence=False, acks=1, log_level=logging.DEBUG
        )
        subscriber = broker.subscriber(
            *topics,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.ACK,
            session_timeout_ms=GROUP_SETTINGS["session_timeout_ms"],
            heartbeat_interval_ms=GROUP_SETTINGS["heartbeat_interval_ms"],
            rebalance_timeout_ms=GROUP_SETTINGS["rebalance_timeout_ms"],
        )

        @subscriber
        async def handle(body: bytes, msg: KafkaMessage) -> None:
            received.append((msg.raw_message.topic, msg.raw_message.key, body))

        return broker

    async def until(received: list, count: int) -> None:
        async with asyncio.timeout(20):
            while len(received) < count:
                await asyncio.sleep(0.02)

    def committed() -> int:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            offsets = admin.list_group_offsets(group)[group]
        finally:
            admin.close()
        return sum(meta.offset for meta in offsets.values())

    first_run: list[tuple[str, bytes, bytes]] = []
    broker = app(first_run)
    await broker.start()
    try:
        for i in range(4):
            await broker.publish(f"e{i}".encode(), topics[i % 2], key=f"A{i % 2}".encode())
        await until(first_run, 4)
        async with asyncio.timeout(10):
            while committed() < 4:
                await asyncio.sleep(0.05)
        for subscriber in broker.subscribers:
            assert subscriber.consumer is not None
            await leave_group(subscriber.consumer)
    finally:
        await broker.stop()
    assert sorted(first_run) == sorted(
        (topics[i % 2], f"A{i % 2}".encode(), f"e{i}".encode()) for i in range(4)
    )

    second_run: list[tuple[str, bytes, bytes]] = []
    broker = app(second_run)
    restarted = time.monotonic()
    await broker.start()
    try:
        await broker.publish(b"e4", topics[0], key=b"A0")
        await until(second_run, 1)
        await asyncio.sleep(0.5)  # room for a wrong redelivery of e0..e3 to show up
    finally:
        await broker.stop()
    assert second_run == [(topics[0], b"A0", b"e4")]
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        assert time.monotonic() - restarted < GROUP_SETTINGS["session_timeout_ms"] / 1000 + 2


async def test_end_offsets_count_every_record_of_a_batch(kafka_bootstrap: str) -> None:
    """Records sent without waiting for each confirmation travel as one batch; the end of
    the partition is after its last record (tansu itself reports the batch's base offset + 1),
    and an empty partition ends at 0."""
    topic = _unique("ends")
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)], timeout=20)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"v%d" % i, key=b"one-key") for i in range(5)]
        offsets = [meta.offset for meta in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    [partition] = {meta.partition for meta in (f.result() for f in sent)}
    ends = await asyncio.to_thread(end_offsets, kafka_bootstrap, [topic])
    assert ends == {(topic, partition): max(offsets) + 1, (topic, 1 - partition): 0}
