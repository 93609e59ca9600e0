"""Malformed and random messages on every topic a service consumes, on the real broker.

The whole system (dispatch, ledger, time bank; PostgreSQL event stores) runs in one Host on a tansu
broker of this test's own. Onto every consumed topic go crafted bad messages (random bytes, empty
value, tombstone, invalid JSON, JSON of the wrong shape, an unknown type, a type of another topic,
missing and ill-typed fields, unknown schema versions, a huge message, a message too large to
dead-letter as it is, JSON nested too deeply, a date out of range, a lone surrogate, a wrong or
missing key, headers that contradict the body, an event the handler cannot apply) and a bounded,
deterministic batch of hypothesis-generated junk; then good messages. The test pins down that

- every bad message lands on ``<topic>.dlq`` exactly once per consumer group that reads the
  topic, with the original bytes and key, and ``x-error`` naming the cause;
- the good messages behind them are processed (their effect is visible over HTTP), every
  consumer got to the end of every partition, and the consumers keep running;
- nothing else changed: no bad event reached any inbox, the ledger's trial balance sums to zero,
  and the elder the bad messages name has the same balance, history and orders as before.

It lives in tests/faults (not tests/integration/runtime) because it injects faults into the
running system end to end through the broker, like test_crash_after_commit, rather than testing
one runtime component. ``HOMECARE_FUZZ_EXAMPLES`` sets how many hypothesis messages are generated
per topic (default 20).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contracts.envelope import IntegrationEvent
from contracts.events.funding import CreditsHoldRequested
from contracts.events.orders import OrderPlaced
from contracts.events.visits import VisitVerified
from contracts.registry import parse_event
from contracts.topics import ALL_TOPICS, ORDERS, VISITS, dlq
from services.demo import SEEDERS
from services.dispatch.application import DispatchApplication
from services.ledger.application import LedgerApplication
from services.runtime.broker import LocalBroker
from services.runtime.consumer import InboxEntry
from services.runtime.host import Host, create_http_app
from services.runtime.settings import SharedSettings
from services.system import build_units
from services.timebank.application import TimebankApplication
from tests.support.auth import bearer_for

pytestmark = pytest.mark.integration

AREA = "yiwu-choucheng"
VICTIM = "E-1001"  # every bad message that names an elder names this one
FUZZ_EXAMPLES = int(os.environ.get("HOMECARE_FUZZ_EXAMPLES", "") or 20)
NOW = datetime.now(UTC).replace(microsecond=0)
STARTED = NOW - timedelta(hours=3)
MONTH = STARTED.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
DAY = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
# Who reads what: every topic some service consumes, and the services that consume it.
CONSUMERS: dict[str, set[str]] = {
    topic: {name for name, cls in (("dispatch", DispatchApplication),
                                   ("ledger", LedgerApplication),
                                   ("timebank", TimebankApplication))
            if topic in cls.subscriptions}
    for topic in ALL_TOPICS
}


# Messages --------------------------------------------------------------------------------------
@dataclass
class Bad:
    """One bad message: what is sent, and what the dead letter must say."""

    name: str
    value: bytes | None
    key: bytes | None = AREA.encode()
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    reason: str = ""  # a substring of x-error (case-insensitive); "" = any non-empty reason
    consumers: set[str] | None = None  # None: every consumer of the topic
    truncated: bool = False  # too large to dead-letter whole: the copy is cut short
    event_id: str | None = None


def _verified(visit_id: str, elder_id: str, minutes: int = 30) -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder_id,
        "caregiver_id": "C-201", "caregiver_kind": "employee", "provider_id": "P-yiwu-anle",
        "service_type": "cleaning", "started_at": STARTED,
        "ended_at": STARTED + timedelta(minutes=minutes), "actual_minutes": minutes,
        "planned_minutes": 60, "confirmation": "elder_code", "location_verified": True})


def _order(order_id: str, elder_id: str) -> OrderPlaced:
    return OrderPlaced(service_area_id=AREA, payload={
        "order_id": order_id, "elder_id": elder_id, "service_type": "cleaning",
        "source": "hotline", "priority": "entitled_care", "emergency": False,
        "requested_date": DAY, "duration_minutes": 30})


def _hold(visit_id: str) -> CreditsHoldRequested:
    return CreditsHoldRequested(service_area_id=AREA, payload={
        "visit_id": visit_id, "elder_id": VICTIM, "account_id": VICTIM, "minutes": 30,
        "expires_at": NOW + timedelta(days=2)})


def _template(topic: str, tag: str) -> IntegrationEvent:
    """A valid event of `topic` naming the victim: processed by mistake, it would show."""
    if topic == ORDERS:
        return _order(f"O-bad-{tag}", VICTIM)
    if topic == VISITS:
        return _verified(f"V-bad-{tag}", VICTIM)
    return _hold(f"V-bad-{tag}")


def _other_topic_event(topic: str, tag: str) -> IntegrationEvent:
    return _verified(f"V-bad-{tag}", VICTIM) if topic != VISITS else _order(f"O-bad-{tag}",
                                                                             VICTIM)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, default=str).encode("utf-8")  # a lone surrogate as \\ud800


def _crafted(topic: str) -> list[Bad]:
    """The hand-made bad messages for one topic."""
    tag = f"{topic.split('.')[-1]}-{uuid.uuid4().hex[:6]}"

    def doc(name: str) -> dict[str, Any]:
        return json.loads(_template(topic, f"{tag}-{name}").to_bytes())

    def edited(name: str, edit: Callable[[dict[str, Any]], None]) -> bytes:
        data = doc(name)
        edit(data)
        return _dumps(data)

    first_field = next(iter(doc("x")["payload"]))
    rng = random.Random(8)
    huge = doc("huge")
    huge["service_area_id"] = ""
    huge["padding"] = "x" * 900_000
    too_big = doc("too-big")
    too_big["type"] = "Padding"
    too_big["padding"] = "y" * 1_100_000
    wrong_key, no_key = _template(topic, f"{tag}-key"), _template(topic, f"{tag}-nokey")
    bad_type_header = _template(topic, f"{tag}-hdr-type")
    bad_version_header = _template(topic, f"{tag}-hdr-version")
    bad = [
        Bad("random bytes", b"\xff\xfe" + rng.randbytes(62), reason="UTF-8"),
        Bad("empty value", b"", reason="not JSON"),
        Bad("tombstone", None, reason="not JSON"),
        Bad("invalid JSON", b'{"type": "VisitVerified", "schema_version": 1,',
            reason="not JSON"),
        Bad("JSON array", b"[1, 2, 3]", reason="JSON object"),
        Bad("JSON string", b'"OrderPlaced"', reason="JSON object"),
        Bad("JSON null", b"null", reason="JSON object"),
        Bad("no type", _dumps({"hello": "world"}), reason="no 'type'"),
        Bad("type not a string", _dumps({"type": 5, "schema_version": 1}),
            reason="'type' must be a string"),
        Bad("unknown type", edited("unknown", lambda d: d.update(type="VisitTeleported")),
            reason="unknown event type"),
        Bad("type of another topic", _other_topic_event(topic, f"{tag}-other").to_bytes(),
            reason=f"not {topic!r}"),
        Bad("no payload", edited("nopayload", lambda d: d.pop("payload")),
            reason="payload: Field required"),
        Bad("payload field missing", edited("missing", lambda d: d["payload"].pop(first_field)),
            reason=f"payload.{first_field}: Field required"),
        Bad("payload field ill-typed",
            edited("illtyped", lambda d: d["payload"].update({first_field: [1, 2]})),
            reason=f"payload.{first_field}"),
        Bad("payload not an object", edited("payloadstr", lambda d: d.update(payload="oops")),
            reason="payload"),
        Bad("event_id not a UUID", edited("eventid", lambda d: d.update(event_id="nope")),
            reason="event_id"),
        Bad("no schema_version", edited("nover", lambda d: d.pop("schema_version")),
            reason="no 'schema_version'"),
        Bad("schema_version from the future", edited("v2", lambda d: d.update(schema_version=2)),
            reason="unsupported schema_version 2"),
        Bad("schema_version 0", edited("v0", lambda d: d.update(schema_version=0)),
            reason="no upcaster"),
        Bad("schema_version a string", edited("vstr", lambda d: d.update(schema_version="1")),
            reason="schema_version must be an integer"),
        Bad("huge message", _dumps(huge), reason="service_area_id"),
        Bad("too large to dead-letter whole", _dumps(too_big), reason="unknown event type",
            truncated=True),
        Bad("nested too deeply", b"[" * 100_000, reason="nested"),
        Bad("date out of range",
            edited("date", lambda d: d.update(occurred_at="0001-01-01T00:00:00+14:00")),
            reason="occurred_at"),
        Bad("lone surrogate",
            edited("surrogate", lambda d: d["payload"].update({first_field: "\ud800"})),
            reason="surrogate"),
        Bad("wrong key", wrong_key.to_bytes(), key=b"another-area", reason="key",
            event_id=str(wrong_key.event_id)),
        Bad("no key", no_key.to_bytes(), key=None, reason="key",
            event_id=str(no_key.event_id)),
        Bad("type header contradicts the body", bad_type_header.to_bytes(),
            headers=[("type", b"OrderCancelled")], reason="header",
            event_id=str(bad_type_header.event_id)),
        Bad("schema_version header contradicts the body", bad_version_header.to_bytes(),
            headers=[("type", bad_version_header.type.encode()), ("schema_version", b"7")],
            reason="header", event_id=str(bad_version_header.event_id)),
    ]
    # A valid event its handler cannot apply: dead-lettered after the bounded retries.
    if topic == VISITS:
        stranger = _verified(f"V-bad-{tag}-stranger", "E-404")
        bad.append(Bad("elder unknown to the ledger", stranger.to_bytes(), reason="E-404",
                       consumers={"ledger"}, event_id=str(stranger.event_id)))
    return bad


# Hypothesis-generated junk ---------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
_DELETE = object()


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def _mutate(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        target.pop(path[-1])
    else:
        target[path[-1]] = value
    return data


def _junk(topic: str, count: int) -> list[Bad]:
    """`count` hypothesis examples (deterministic): raw bytes, random JSON, and valid events
    of the topic with one field deleted or replaced; only those the contract rejects are kept
    (a mutant that is still a valid event is not junk), each with the contract's reason."""
    template = json.loads(_template(topic, f"junk-{uuid.uuid4().hex[:6]}").to_bytes())
    mutants = st.sampled_from(list(_paths(template))).flatmap(
        lambda path: (st.just(_DELETE) | _json).map(lambda v: _mutate(template, path, v)))
    junk = st.one_of(st.binary(max_size=300), _json.map(_dumps), mutants.map(_dumps))
    collected: list[bytes] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(junk)
    def collect(value: bytes) -> None:
        collected.append(value)

    collect()
    out = []
    for i, value in enumerate(collected):
        try:
            parse_event(value, topic=topic)
        except Exception as error:  # noqa: BLE001 - whatever the contract rejects
            # The dead letter must give the same reason the contract gives here.
            out.append(Bad(f"hypothesis #{i}", value, reason=str(error)[:200]))
    return out


# The system ------------------------------------------------------------------------------------
@pytest.fixture
async def system(tmp_path, postgres_server) -> AsyncIterator[dict[str, Any]]:
    """All three services in one Host on PostgreSQL, on a broker of this test's own (so no other
    test's messages reach its consumers)."""
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    dbname = f"homecare_fz_{uuid.uuid4().hex[:10]}"
    settings_ = SharedSettings(
        store="postgres", data_dir=tmp_path, postgres_dbname=dbname,
        postgres_host=postgres_server.host, postgres_port=postgres_server.port,
        postgres_user=postgres_server.user, postgres_password=postgres_server.password,
        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
        consumer_group_prefix=f"fz-{uuid.uuid4().hex[:8]}", consumer_retry_backoff_s=0.02,
    )
    units = build_units(["dispatch", "ledger", "timebank"], settings_)
    for unit in units:
        SEEDERS[unit.name](unit.application)
    host = Host(units, settings_, bootstrap_servers=broker.bootstrap_servers)
    app = create_http_app(host)
    await host.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                               headers=bearer_for(app, "admin"))
    try:
        yield {"client": client, "host": host, "bootstrap": broker.bootstrap_servers,
               "apps": {u.name: u.application for u in units}}
    finally:
        await client.aclose()
        await host.stop()
        broker.stop()
        with postgres_server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def eventually(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.25)


async def _snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """What the victim looks like through the services."""
    out: dict[str, Any] = {}
    for path in (f"/ledger/elders/{VICTIM}/balance?month={MONTH}",
                 f"/ledger/elders/{VICTIM}/history", f"/timebank/accounts/{VICTIM}",
                 f"/dispatch/areas/{AREA}/orders?date={DAY}"):
        r = await client.get(path)
        out[path] = (r.status_code, r.json())
    out["victim orders"] = [o for o in out.pop(f"/dispatch/areas/{AREA}/orders?date={DAY}")[1]
                            if o.get("elder_id") == VICTIM]
    return out


async def _read_dead_letters(bootstrap: str, expected: set[tuple[str, str, int, int]],
                             timeout: float = 90.0) -> dict[tuple[str, str, int, int], list[Any]]:
    """Every record on the dead-letter topics, by (consumer, source topic, partition, offset),
    read until all `expected` are there (then a moment longer, for unexpected extras)."""
    reader = AIOKafkaConsumer(*(dlq(t) for t in ALL_TOPICS), bootstrap_servers=bootstrap,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              group_id=None, fetch_max_bytes=64 * 1024 * 1024,
                              max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    found: dict[tuple[str, str, int, int], list[Any]] = {}
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle: float | None = None
        while loop.time() < deadline and (settle is None or loop.time() < settle):
            batch = await reader.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    h = {k: v.decode("utf-8", "replace") for k, v in record.headers}
                    where = (h.get("x-consumer", "?"), h.get("x-source-topic", "?"),
                             int(h.get("x-source-partition", -1)),
                             int(h.get("x-source-offset", -1)))
                    found.setdefault(where, []).append((record, h))
            if settle is None and expected <= found.keys():
                settle = loop.time() + 2.0
    finally:
        await reader.stop()
    return found


async def test_bad_messages_on_every_topic_end_in_the_dead_letter_topics(system):
    """Every bad message lands once per consuming group on <topic>.dlq with its cause; the good
    messages behind them are processed; nothing else changes."""
    client, host, apps = system["client"], system["host"], system["apps"]
    assert {t for t, services in CONSUMERS.items() if services} == set(ALL_TOPICS)
    groups = {name: consumer.name for name, consumer in host.consumers.items()}
    before = await _snapshot(client)

    producer = AIOKafkaProducer(bootstrap_servers=system["bootstrap"], enable_idempotence=False,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent: list[tuple[str, Bad, int, int]] = []  # topic, message, partition, offset
    good_order = _order(f"O-good-{uuid.uuid4().hex[:6]}", "E-1002")
    good_visit = _verified(f"V-good-{uuid.uuid4().hex[:6]}", "E-1002", minutes=25)
    try:
        for topic in ALL_TOPICS:
            for bad in [*_crafted(topic), *_junk(topic, FUZZ_EXAMPLES)]:
                meta = await producer.send_and_wait(topic, bad.value, key=bad.key,
                                                    headers=bad.headers or None)
                sent.append((topic, bad, meta.partition, meta.offset))
        # The good ones, behind the bad ones on the same partition (same key).
        ends: dict[tuple[str, int], int] = {}
        for event in (good_order, good_visit):
            meta = await producer.send_and_wait(event.topic, event.to_bytes(), key=event.key())
            ends[(event.topic, meta.partition)] = meta.offset
    finally:
        await producer.stop()
    for topic, _, partition, offset in sent:
        ends[(topic, partition)] = max(ends.get((topic, partition), -1), offset)

    # Every consumer got to the end of every partition of every topic it reads.
    def caught_up() -> list[str]:
        behind = []
        for (topic, partition), last in ends.items():
            for service in CONSUMERS[topic]:
                tracked = apps[service].process_recorder.max_tracking_id(
                    f"{groups[service]}:{topic}:{partition}") or 0
                if tracked < last + 1:
                    behind.append(f"{service} {topic}:{partition} at {tracked} of {last + 1}")
        return behind

    async def all_caught_up() -> bool:
        return not await asyncio.to_thread(caught_up)

    try:
        await eventually(all_caught_up)
    except AssertionError:
        raise AssertionError(f"consumers stuck: {caught_up()}") from None

    # The good messages are processed: their effects show through the services.
    async def order_placed() -> Any:
        r = await client.get(f"/dispatch/orders/{good_order.payload.order_id}")
        return r.json() if r.status_code == 200 else None

    async def visit_charged() -> Any:
        r = await client.get(f"/ledger/visits/{good_visit.payload.visit_id}/charge")
        return r.json() if r.status_code == 200 else None

    assert (await eventually(visit_charged))["charged_minutes"] == 25
    await eventually(order_placed)

    # Every bad message is dead-lettered exactly once per consuming group, with its cause.
    expected: dict[tuple[str, str, int, int], Bad] = {}
    for topic, bad, partition, offset in sent:
        for service in bad.consumers or CONSUMERS[topic]:
            expected[(groups[service], topic, partition, offset)] = bad
    found = await _read_dead_letters(system["bootstrap"], set(expected))
    missing = sorted(f"{k}: {expected[k].name}" for k in expected.keys() - found.keys())
    assert not missing, f"not dead-lettered: {missing}"
    extra = sorted(str(k) for k in found.keys() - expected.keys())
    assert not extra, f"dead-lettered but not bad: {extra}"
    problems = []
    for where, bad in expected.items():
        (record, headers), *more = found[where]
        name = f"{bad.name} {where}"
        if more:
            problems.append(f"{name}: dead-lettered {1 + len(more)} times")
        error = headers.get("x-error", "")
        if not error or bad.reason.lower() not in error.lower():
            problems.append(f"{name}: x-error {error[:300]!r} does not name {bad.reason!r}")
        if record.key != (bad.key or b""):
            problems.append(f"{name}: key {record.key!r} is not {bad.key!r}")
        original = bad.value or b""
        if bad.truncated:
            if not (headers.get("x-value-truncated") == "true"
                    and headers.get("x-original-size") == str(len(original))
                    and original.startswith(record.value or b"")):
                problems.append(f"{name}: truncated copy not marked as such: {headers}")
        elif (record.value or b"") != original:
            problems.append(f"{name}: value changed on the way to the dead-letter topic")
        for header, value in bad.headers:
            if not bad.truncated and headers.get(header) != value.decode("utf-8", "replace"):
                problems.append(f"{name}: original header {header} not kept")
    assert not problems, "\n".join(problems)

    # Nothing else changed.
    for topic, bad, _, _ in sent:
        for service in (bad.consumers or CONSUMERS[topic]) if bad.event_id else ():
            inbox_id = InboxEntry.create_id(groups[service], uuid.UUID(bad.event_id))
            assert inbox_id not in apps[service].repository, \
                f"{bad.name} reached the inbox of {service}"
    assert (await client.get("/ledger/trial-balance")).json()["sum_of_balances"] == 0
    assert await _snapshot(client) == before

    # And the consumers keep going: one more good message is processed.
    later = _verified(f"V-later-{uuid.uuid4().hex[:6]}", "E-1002", minutes=5)
    producer = AIOKafkaProducer(bootstrap_servers=system["bootstrap"], enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(VISITS, later.to_bytes(), key=later.key())
    finally:
        await producer.stop()

    async def later_charged() -> bool:
        r = await client.get(f"/ledger/visits/{later.payload.visit_id}/charge")
        return r.status_code == 200

    await eventually(later_charged)
