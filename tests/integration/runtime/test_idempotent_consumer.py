"""The effectively-once consumer on a real event store (SQLite and PostgreSQL).

The broker side (redelivery after a crash, dead letters on the real topic) is covered by the
end-to-end tests; here the store's transaction is what is under test.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from eventsourcing.persistence import OperationalError

from contracts.events.visits import VisitVerified
from services.ledger.application import LedgerApplication, NotFound
from services.ledger.domain.books import entitlement_account, provider_payable_account
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, str]]] = []

    async def publish(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))


def _verified(visit_id: str = "V-1", minutes: int = 50) -> VisitVerified:
    return VisitVerified(service_area_id="A1", payload={
        "visit_id": visit_id, "order_id": "O-1", "elder_id": "E-1", "caregiver_id": "C-1",
        "caregiver_kind": "employee", "provider_id": "P-1", "service_type": "cleaning",
        "started_at": STARTED, "ended_at": STARTED + timedelta(minutes=minutes),
        "actual_minutes": minutes, "planned_minutes": 60, "confirmation": "elder_code",
        "location_verified": True})


def _message(event_bytes: bytes, offset: int, topic: str = "homecare.visits") -> ConsumedMessage:
    return ConsumedMessage(topic=topic, partition=0, offset=offset, key=b"A1", value=event_bytes)


@pytest.fixture
def ledger(persistence):
    app = LedgerApplication(env=persistence)
    app.register_elder("E-1", "A1", ElderFacts(birth_date=date(1930, 1, 1)))  # 96: 240 min
    yield app
    app.close()


def _consumer(app, dlq, **kwargs) -> IdempotentConsumer:
    return IdempotentConsumer(app, "homecare-ledger", {"VisitVerified": app.policy}, dlq,
                              backoff_s=0.01, **kwargs)


def _posted(app) -> int:
    return app.account_by_code(provider_payable_account("P-1", "A1")).balance


async def test_same_event_twice_at_two_offsets_posts_once(ledger):
    """A relay that republishes after a crash sends the same event_id again: one posting only."""
    consumer = _consumer(ledger, RecordingPublisher())
    event = _verified().to_bytes()
    assert await consumer.consume(_message(event, 0)) is Outcome.PROCESSED
    assert await consumer.consume(_message(event, 1)) is Outcome.DUPLICATE
    assert _posted(ledger) == 50
    assert ledger.balance("E-1", "2026-11").used_minutes == 50
    assert len(ledger.postings(entitlement_account("E-1", "2026-11"))) == 2  # grant + charge


async def test_redelivered_offset_is_skipped_even_by_a_fresh_consumer(ledger, persistence):
    """After a restart the same offset comes again: the tracking record written with the
    posting says it is done, so a new consumer on a new application skips it."""
    event = _verified().to_bytes()
    await _consumer(ledger, RecordingPublisher()).consume(_message(event, 7))
    restarted = LedgerApplication(env=persistence)
    try:
        outcome = await _consumer(restarted, RecordingPublisher()).consume(_message(event, 7))
        assert outcome is Outcome.REDELIVERED
        assert _posted(restarted) == 50
    finally:
        restarted.close()


async def test_malformed_message_goes_to_the_dead_letter_topic_and_the_next_is_processed(ledger):
    """Bad JSON is dead-lettered at once with the reason; the partition moves on."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq)
    assert await consumer.consume(_message(b"{not json", 0)) is Outcome.DEAD_LETTERED
    assert await consumer.consume(_message(_verified().to_bytes(), 1)) is Outcome.PROCESSED
    (topic, key, value, headers), = dlq.sent
    assert topic == "homecare.visits.dlq" and value == b"{not json" and key == b"A1"
    assert "JSON" in headers["x-error"] and headers["x-source-offset"] == "0"
    assert _posted(ledger) == 50


async def test_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries(ledger):
    """A visit naming an elder the ledger does not know fails every attempt: after the bounded
    retries it is dead-lettered with the cause, nothing is posted, and later messages flow."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq, max_attempts=3)
    stranger = _verified("V-9").model_copy(
        update={"payload": _verified("V-9").payload.model_copy(update={"elder_id": "E-404"})})
    assert await consumer.consume(_message(stranger.to_bytes(), 0)) is Outcome.DEAD_LETTERED
    (_, _, _, headers), = dlq.sent
    assert headers["x-attempts"] == "3" and "E-404" in headers["x-error"]
    assert headers["x-error-type"] == "UnknownElder"
    assert await consumer.consume(_message(_verified().to_bytes(), 1)) is Outcome.PROCESSED


async def test_store_outage_is_retried_not_dead_lettered(ledger, monkeypatch):
    """A database that fails for a while is not the message's fault: it is retried until the
    store answers, and never dead-lettered."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq, max_attempts=1)
    real_record = ledger._record
    failures = {"left": 3}

    def flaky(processing):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("connection refused")
        return real_record(processing)

    monkeypatch.setattr(ledger, "_record", flaky)
    assert await consumer.consume(_message(_verified().to_bytes(), 0)) is Outcome.PROCESSED
    assert dlq.sent == [] and failures["left"] == 0
    assert _posted(ledger) == 50


async def test_balances_always_sum_to_zero(ledger):
    """Across grants and charges beyond the entitlement, the trial balance stays zero; minutes
    beyond what was funded are recorded as unfunded, never posted to anyone."""
    consumer = _consumer(ledger, RecordingPublisher())
    for i, minutes in enumerate([120, 100, 90]):  # 310 minutes against 240 entitled
        await consumer.consume(_message(_verified(f"V-{i}", minutes).to_bytes(), i))
    balance = ledger.balance("E-1", "2026-11")
    assert (balance.used_minutes, balance.available_minutes) == (240, 0)
    assert balance.out_of_pocket_minutes == 0
    assert ledger.charge_for("V-2").unfunded_minutes == 70
    assert ledger.trial_balance() == {"minute": 0}


async def test_a_concurrent_writer_makes_the_message_retry_not_vanish(ledger, monkeypatch):
    """If a command writes the same account between the consumer's read and its commit, the
    conflict is not mistaken for a duplicate: the message is processed again and posted (with a
    single attempt allowed, any other failure would dead-letter it)."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq, max_attempts=1)
    await consumer.consume(_message(_verified("V-0", 30).to_bytes(), 0))
    real_record = ledger._record
    raced = {"done": False}

    def record_after_a_rival_write(processing):
        if not raced["done"]:
            raced["done"] = True
            rival = LedgerApplication(env=ledger.env)  # another writer on the same store
            try:
                account = rival.account_by_code(entitlement_account("E-1", "2026-11"))
                account._change(transfer_id=account.id)  # no-op change: only the version moves
                rival.save(account)
            finally:
                rival.close()
        return real_record(processing)

    monkeypatch.setattr(ledger, "_record", record_after_a_rival_write)
    assert await consumer.consume(_message(_verified("V-1").to_bytes(), 1)) is Outcome.PROCESSED
    assert raced["done"] and dlq.sent == []
    assert _posted(ledger) == 80



# Messages that contradict themselves, and what the parser or the dead-letter topic cannot take --


@pytest.mark.parametrize(("key", "headers", "reason"), [
    (b"A2", {}, "not the partition key b'A1'"),
    (None, {}, "message has no key"),
    (b"A1", {"type": "VisitCancelled"}, "header type 'VisitCancelled' contradicts"),
    (b"A1", {"type": "VisitVerified", "schema_version": "2"},
     "header schema_version '2' contradicts"),
], ids=["wrong key", "no key", "type header", "schema_version header"])
async def test_a_message_contradicting_its_body_is_dead_lettered(ledger, key, headers, reason):
    """A valid event under the wrong partition key (one elder's events would leave their
    partition and their order), or whose type/schema_version headers disagree with the body,
    is dead-lettered with the contradiction named, and nothing is posted."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq)
    message = ConsumedMessage(topic="homecare.visits", partition=0, offset=0, key=key,
                              value=_verified().to_bytes(), headers=headers)
    assert await consumer.consume(message) is Outcome.DEAD_LETTERED
    (_, sent_key, _, sent_headers), = dlq.sent
    assert reason in sent_headers["x-error"] and sent_key == (key or b"")
    with pytest.raises(NotFound):  # the provider's account was never even opened
        _posted(ledger)


async def test_headers_that_agree_with_the_body_are_fine(ledger):
    """The outbox relay's own headers (type, schema_version, correlation_id) pass."""
    consumer = _consumer(ledger, RecordingPublisher())
    event = _verified()
    message = ConsumedMessage(topic="homecare.visits", partition=0, offset=0, key=b"A1",
                              value=event.to_bytes(), headers={
                                  "type": "VisitVerified", "schema_version": "1",
                                  "correlation_id": str(event.correlation_id)})
    assert await consumer.consume(message) is Outcome.PROCESSED
    assert _posted(ledger) == 50


async def test_a_redelivered_bad_message_is_not_dead_lettered_twice(ledger):
    """After a restart the same bad offset comes again: its tracking record says it was
    dead-lettered already, so the dead-letter topic gets one copy, not two."""
    dlq = RecordingPublisher()
    assert await _consumer(ledger, dlq).consume(_message(b"{not json", 3)) \
        is Outcome.DEAD_LETTERED
    assert await _consumer(ledger, dlq).consume(_message(b"{not json", 3)) \
        is Outcome.REDELIVERED
    assert len(dlq.sent) == 1


async def test_whatever_the_parser_lets_out_is_dead_lettered_not_raised(ledger, monkeypatch):
    """An exception other than ContractError from parsing (a parser bug yet unknown) would
    make the broker redeliver the message forever; it is dead-lettered with its type."""
    import services.runtime.consumer as consumer_module

    def broken_parser(raw, topic=None):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(consumer_module, "parse_event_and_version", broken_parser)
    dlq = RecordingPublisher()
    assert await _consumer(ledger, dlq).consume(_message(b"[[[[", 0)) is Outcome.DEAD_LETTERED
    (_, _, _, headers), = dlq.sent
    assert headers["x-error-type"] == "RecursionError"


class SizeLimitedPublisher(RecordingPublisher):
    """Refuses what a producer with a 1 MiB max_request_size refuses (aiokafka's own error)."""

    async def publish(self, topic, key, value, headers):
        size = len(value) + len(key) + sum(len(k) + len(v) for k, v in headers.items())
        if size > 1024 * 1024:
            raise MessageSizeTooLargeError(f"The message is {size} bytes")
        await super().publish(topic, key, value, headers)


async def test_a_dead_letter_too_large_to_publish_whole_is_cut_short_and_marked(ledger):
    """A message near the size limit no longer fits once the error headers are added: its
    beginning is dead-lettered, marked as truncated with the original size (the whole message
    stays on its source topic at the offset named), and the next message is processed."""
    dlq = SizeLimitedPublisher()
    consumer = _consumer(ledger, dlq)
    big = b'{"type": "Padding", "padding": "' + b"x" * (1024 * 1024 - 40) + b'"}'
    message = ConsumedMessage(topic="homecare.visits", partition=0, offset=0, key=b"A1",
                              value=big, headers={"trace": "t"})
    assert await consumer.consume(message) is Outcome.DEAD_LETTERED
    (_, key, value, headers), = dlq.sent
    assert key == b"A1" and big.startswith(value) and len(value) == 64 * 1024
    assert headers["x-value-truncated"] == "true"
    assert headers["x-original-size"] == str(len(big))
    assert headers["x-original-headers"] == "trace"
    assert "unknown event type 'Padding'" in headers["x-error"]
    assert headers["x-source-offset"] == "0"
    assert await consumer.consume(_message(_verified().to_bytes(), 1)) is Outcome.PROCESSED


async def test_a_new_broker_log_starts_from_offset_zero_and_the_inbox_drops_what_was_done(
        ledger, persistence):
    """A memory-only broker comes back empty: its offsets start at 0 again. A consumer told the
    new log's id tracks positions under it, so offset 0 is not taken for a redelivery; the
    events it had processed in the old log come again (republished) and its inbox drops them
    by event id; a new event is processed. Nothing is posted twice."""
    old_log = _consumer(ledger, RecordingPublisher(), log_id="one")
    first, second = _verified("V-1", 50).to_bytes(), _verified("V-2", 30).to_bytes()
    assert await old_log.consume(_message(first, 0)) is Outcome.PROCESSED
    assert await old_log.consume(_message(second, 1)) is Outcome.PROCESSED
    restarted = LedgerApplication(env=persistence)
    try:
        new_log = _consumer(restarted, RecordingPublisher(), log_id="two")
        assert await new_log.consume(_message(first, 0)) is Outcome.DUPLICATE
        assert await new_log.consume(_message(second, 1)) is Outcome.DUPLICATE
        assert await new_log.consume(_message(_verified("V-3", 20).to_bytes(), 2)) \
            is Outcome.PROCESSED
        assert _posted(restarted) == 100
        assert restarted.balance("E-1", "2026-11").used_minutes == 100
        tracked = restarted.process_recorder.max_tracking_id
        assert new_log.tracking_name("homecare.visits:0") == \
            "homecare-ledger@two:homecare.visits:0"
        assert tracked("homecare-ledger@one:homecare.visits:0") == 2
        assert tracked("homecare-ledger@two:homecare.visits:0") == 3
        assert tracked("homecare-ledger:homecare.visits:0") is None
    finally:
        restarted.close()


async def test_without_a_log_id_positions_keep_their_plain_names(ledger):
    """With a persistent Kafka there is no log id: tracking records are named
    <consumer>:<topic>:<partition> as before, so existing deployments resume where they were."""
    consumer = _consumer(ledger, RecordingPublisher())
    assert await consumer.consume(_message(_verified().to_bytes(), 4)) is Outcome.PROCESSED
    assert consumer.tracking_name("homecare.visits:0") == "homecare-ledger:homecare.visits:0"
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:0") == 5


async def test_an_event_dead_lettered_in_an_old_broker_log_is_tried_again_in_a_new_one(ledger):
    """A dead-lettered event leaves no inbox entry, and the old log's dead-letter topic is gone
    with it: republished into a new log it is tried again (here it now succeeds, its elder has
    been registered meanwhile) rather than dropped as done."""
    from services.ledger.domain.entitlement import ElderFacts as Facts

    stranger = _verified("V-9").model_copy(
        update={"payload": _verified("V-9").payload.model_copy(update={"elder_id": "E-404"})})
    old_log = _consumer(ledger, RecordingPublisher(), log_id="one", max_attempts=1)
    assert await old_log.consume(_message(stranger.to_bytes(), 0)) is Outcome.DEAD_LETTERED
    ledger.register_elder("E-404", "A1", Facts(birth_date=date(1930, 1, 1)))
    new_log = _consumer(ledger, RecordingPublisher(), log_id="two")
    assert await new_log.consume(_message(stranger.to_bytes(), 0)) is Outcome.PROCESSED
    assert ledger.balance("E-404", "2026-11").used_minutes == 50


async def test_a_batch_gives_each_message_the_outcome_it_would_have_alone(ledger):
    """A batch holding a valid visit, bad JSON, the same visit again at a later offset, a visit
    naming an unknown elder and another valid visit: each message gets the outcome it would
    have on its own, in order; one posting per valid visit, both bad ones dead-lettered with
    their offsets, and nothing after a bad message is lost."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq, max_attempts=2)
    stranger = _verified("V-9").model_copy(
        update={"payload": _verified("V-9").payload.model_copy(update={"elder_id": "E-404"})})
    first = _verified("V-1", 50).to_bytes()
    batch = [_message(first, 0), _message(b"{not json", 1),
             _message(first, 2), _message(stranger.to_bytes(), 3),
             _message(_verified("V-2", 30).to_bytes(), 4)]
    assert await consumer.consume_batch(batch) == [
        Outcome.PROCESSED, Outcome.DEAD_LETTERED, Outcome.DUPLICATE, Outcome.DEAD_LETTERED,
        Outcome.PROCESSED]
    assert [headers["x-source-offset"] for _, _, _, headers in dlq.sent] == ["1", "3"]
    assert _posted(ledger) == 80
    assert await consumer.consume_batch(batch) == [Outcome.REDELIVERED] * 5  # read again
    assert _posted(ledger) == 80 and len(dlq.sent) == 2


async def test_a_store_outage_in_the_middle_of_a_batch_holds_it_there(ledger, monkeypatch):
    """The store failing at the second message of a batch: the first stays processed, the
    second is retried until the store answers (never dead-lettered), then the rest follows."""
    dlq = RecordingPublisher()
    consumer = _consumer(ledger, dlq, max_attempts=1)
    real_record = ledger._record
    calls = {"n": 0}

    def flaky(processing):
        calls["n"] += 1
        if calls["n"] in (2, 3):  # the second message's first two tries
            raise OperationalError("connection refused")
        return real_record(processing)

    monkeypatch.setattr(ledger, "_record", flaky)
    batch = [_message(_verified(f"V-{i}", 10 * (i + 1)).to_bytes(), i) for i in range(3)]
    assert await consumer.consume_batch(batch) == [Outcome.PROCESSED] * 3
    assert dlq.sent == [] and calls["n"] == 5
    assert _posted(ledger) == 60



def _checked_out(visit_id: str) -> bytes:
    from contracts.events.visits import VisitCheckedOut

    return VisitCheckedOut(service_area_id="A1", payload={
        "visit_id": visit_id, "elder_id": "E-1", "caregiver_id": "C-1",
        "at": STARTED + timedelta(minutes=50), "location_verified": True,
        "actual_minutes": 50}).to_bytes()


async def test_messages_passed_over_in_a_batch_are_tracked_once_per_partition(ledger,
                                                                              monkeypatch):
    """Check-outs (which the ledger does not handle) on two partitions, and between them on
    partition 0 a verified visit (which it does). Each partition's position still ends at its
    last message (the batch read again posts nothing more); but the passed-over messages
    cost one tracking write per partition, for its last one, not one each: the verified
    visit's own tracking record covers the check-outs before it."""
    consumer = _consumer(ledger, RecordingPublisher())
    written: list[tuple[str, int]] = []
    insert_tracking = ledger.process_recorder.insert_tracking

    def counted(tracking):
        written.append((tracking.application_name.rsplit(":", 1)[-1], tracking.notification_id))
        return insert_tracking(tracking)

    monkeypatch.setattr(ledger.process_recorder, "insert_tracking", counted)

    def on(partition: int, value: bytes, offset: int) -> ConsumedMessage:
        return ConsumedMessage(topic="homecare.visits", partition=partition, offset=offset,
                               key=b"A1", value=value)

    batch = [on(0, _checked_out("V-1"), 0), on(1, _checked_out("V-2"), 0),
             on(0, _checked_out("V-3"), 1), on(0, _verified("V-1").to_bytes(), 2),
             on(1, _checked_out("V-4"), 1), on(0, _checked_out("V-5"), 3),
             on(1, _checked_out("V-6"), 2)]
    assert await consumer.consume_batch(batch) == [
        Outcome.IGNORED, Outcome.IGNORED, Outcome.IGNORED, Outcome.PROCESSED,
        Outcome.IGNORED, Outcome.IGNORED, Outcome.IGNORED]
    assert sorted(written) == [("0", 4), ("1", 3)]  # positions are offsets + 1
    assert _posted(ledger) == 50
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:0") == 4
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:1") == 3
    again = await consumer.consume_batch(batch)
    assert again[3] is Outcome.REDELIVERED and _posted(ledger) == 50


async def test_a_message_passed_over_alone_is_tracked_at_once(ledger):
    """Outside a batch (consume), a passed-over message's position is written with it."""
    consumer = _consumer(ledger, RecordingPublisher())
    assert await consumer.consume(_message(_checked_out("V-1"), 5)) is Outcome.IGNORED
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:0") == 6


async def test_a_batch_asks_the_store_once_whether_its_messages_were_seen(ledger, monkeypatch):
    """On PostgreSQL, a batch's "redelivered?" and "processed before?" questions go to the
    store in one query for the run, not one per message; the answers are the same: a copy
    processed in an earlier batch is a duplicate, a position tracked before is redelivered."""
    recorder = ledger.process_recorder
    if not hasattr(recorder, "seen_before_many"):
        pytest.skip("asked per message on this store")
    consumer = _consumer(ledger, RecordingPublisher())
    first = _verified("V-1", 50).to_bytes()
    assert await consumer.consume_batch([_message(first, 0)]) == [Outcome.PROCESSED]
    asked = {"one": 0, "many": 0}
    seen_before, seen_before_many = recorder.seen_before, recorder.seen_before_many

    def one(*args):
        asked["one"] += 1
        return seen_before(*args)

    def many(*args):
        asked["many"] += 1
        return seen_before_many(*args)

    monkeypatch.setattr(recorder, "seen_before", one)
    monkeypatch.setattr(recorder, "seen_before_many", many)
    batch = [_message(first, 1),  # a copy of the same event (republished)
             _message(_verified("V-2", 30).to_bytes(), 2),
             _message(_verified("V-3", 20).to_bytes(), 3)]
    assert await consumer.consume_batch(batch) == [
        Outcome.DUPLICATE, Outcome.PROCESSED, Outcome.PROCESSED]
    assert asked == {"one": 0, "many": 1}
    assert _posted(ledger) == 100
    assert await consumer.consume_batch(batch) == [Outcome.REDELIVERED] * 3
    assert asked == {"one": 0, "many": 2} and _posted(ledger) == 100


async def test_a_handled_message_that_changes_nothing_writes_no_inbox_entry(ledger):
    """A handler that finds nothing to change (the time bank sent a visit no volunteer served)
    leaves no event at all, not even the inbox entry; the message's position is still
    tracked, once per partition at the end of a batch, at once alone; and what the other
    messages of the batch change is saved as usual."""
    consumer = IdempotentConsumer(
        ledger, "homecare-ledger",
        {"VisitVerified": ledger.policy, "VisitCheckedOut": lambda event, processing: None},
        RecordingPublisher(), backoff_s=0.01)
    before = ledger.process_recorder.max_notification_id() or 0
    batch = [_message(_checked_out("V-1"), 0), _message(_verified("V-1").to_bytes(), 1),
             _message(_checked_out("V-2"), 2)]
    assert await consumer.consume_batch(batch) == [
        Outcome.UNCHANGED, Outcome.PROCESSED, Outcome.UNCHANGED]
    assert _posted(ledger) == 50
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:0") == 3
    written = ledger.process_recorder.select_notifications(before + 1, 100)
    assert not any(n.topic.endswith("InboxEntry.Received") and b"V-2" in n.state
                   for n in written)  # (states are compressed; nothing of V-2 at all)
    assert len([n for n in written if "InboxEntry" in n.topic]) == 1  # the verified visit's
    assert await consumer.consume(_message(_checked_out("V-3"), 7)) is Outcome.UNCHANGED
    assert ledger.process_recorder.max_tracking_id("homecare-ledger:homecare.visits:0") == 8
    assert ledger.process_recorder.max_notification_id() == written[-1].id  # nothing new
