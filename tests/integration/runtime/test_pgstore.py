"""The PostgreSQL store with database functions keeps tracking in the events' transaction."""

import contextlib
import threading

import pytest
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking

from services.runtime.double_entry import Account
from services.runtime.eventstore import ServiceApplication

pytestmark = pytest.mark.integration


class Store(ServiceApplication):
    name = "PgStoreTest"


@pytest.fixture
def store(persistence):
    if not persistence["PERSISTENCE_MODULE"].startswith("services.runtime.pgstore"):
        pytest.skip("the PostgreSQL recorder is under test")
    app = Store(env=persistence)
    yield app
    app.close()


def test_tracking_is_written_with_the_events(store):
    """Events saved with a tracking record leave both (plain eventsourcing 9.5.6 with database
    functions would leave the events and lose the tracking)."""
    processing = ProcessingEvent(tracking=Tracking("consumer:topic:0", 5))
    processing.collect_events(Account(code="a"))
    store._record(processing)
    assert store.process_recorder.max_tracking_id("consumer:topic:0") == 5
    assert store.recorder.max_notification_id() >= 1


def test_a_conflicting_write_leaves_neither_events_nor_tracking(store):
    """If the events conflict (a version taken by another writer), the tracking record is not
    written either: the message will be processed again."""
    account = Account(code="b")
    store.save(account)
    stale = store.repository.get(account.id)
    account._change(transfer_id=account.id)
    store.save(account)
    stale._change(transfer_id=account.id)
    processing = ProcessingEvent(tracking=Tracking("consumer:topic:0", 9))
    processing.collect_events(stale)
    with pytest.raises(IntegrityError):
        store._record(processing)
    assert store.process_recorder.max_tracking_id("consumer:topic:0") is None


def test_events_become_visible_in_notification_order(store):
    """An append waits while another transaction holds a lower notification id uncommitted, so a
    reader following the log (the outbox relay) never sees a later id first and passes over the
    earlier one for good (eventsourcing 9.5.6's database function takes no table lock)."""
    store.save(Account(code="first"))
    recorder = store.process_recorder
    held = Account(code="held")
    pending = [recorder.construct_pg_stored_event(originator_id=e.originator_id,
                                                  originator_version=e.originator_version,
                                                  topic=e.topic, state=e.state)
               for e in map(store.mapper.to_stored_event, held.collect_events())]
    saved = threading.Event()

    def save_another() -> None:
        store.save(Account(code="later"))
        saved.set()

    # The tracked path's transaction (tracking row, then the function), held open before COMMIT.
    with recorder.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute(recorder.sql_invoke_pg_function_insert_events, (pending,))
        held_id = curs.fetchall()[0][recorder.pg_function_name_insert_events]
        writer = threading.Thread(target=save_another)
        writer.start()
        saved.wait(1.0)
        visible = [n.id for n in recorder.select_notifications(1, 100)]
        assert max(visible) < held_id, f"id {max(visible)} visible before {held_id} committed"
    writer.join(10)
    assert saved.is_set()
    ids = [n.id for n in recorder.select_notifications(1, 100)]
    assert ids == sorted(ids) and len(ids) == 3 and held_id in ids


def test_listen_based_subscriptions_are_refused(store):
    """The store's insert function sends no NOTIFY, so eventsourcing's LISTEN-based subscription
    would wait for ever: it refuses at once instead (followers poll the log)."""
    with pytest.raises(NotImplementedError, match="NOTIFY"):
        store.process_recorder.subscribe(gt=None)


def test_one_event_and_many_events_get_their_notification_ids(store):
    """A single event goes through the one-event function and several through the array
    function; both return the ids they were given, in order, and a stale single-event append
    (its version taken) is refused without writing anything."""
    recorder = store.process_recorder
    one = Account(code="one")
    [single] = store.save(one)
    several = store.save(Account(code="two"), Account(code="three"))
    ids = [single.notification.id, *(r.notification.id for r in several)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [n.id for n in recorder.select_notifications(1, 10)] == ids
    stale = store.repository.get(one.id)
    one._change(transfer_id=one.id)
    store.save(one)
    stale._change(transfer_id=one.id)
    with pytest.raises(IntegrityError):
        store.save(stale)
    assert recorder.max_notification_id() == ids[-1] + 1


def test_a_message_already_tracked_appends_nothing(store):
    """An append whose tracking position the store has already reached (a redelivered message)
    is refused as an integrity error and writes no event, for one event and for several."""
    recorder = store.process_recorder
    store._record(_processing(Tracking("consumer:topic:1", 7), Account(code="c")))
    before = recorder.max_notification_id()
    for position in (7, 6):
        for accounts in ([Account(code="d")], [Account(code="e"), Account(code="f")]):
            with pytest.raises(IntegrityError):
                store._record(_processing(Tracking("consumer:topic:1", position), *accounts))
    assert recorder.max_notification_id() == before
    assert recorder.max_tracking_id("consumer:topic:1") == 7
    store._record(_processing(Tracking("consumer:topic:1", 8), Account(code="g")))
    assert recorder.max_tracking_id("consumer:topic:1") == 8


def test_seen_before_answers_both_of_a_consumer_s_questions_as_the_separate_queries(store):
    """seen_before(name, position, id) = (the position is tracked already, an event of the
    aggregate is stored): what has_tracking_id and the repository answer one by one."""
    recorder = store.process_recorder
    account = Account(code="seen")
    never = Account(code="never saved")
    assert recorder.seen_before("consumer:topic:2", 1, account.id) == (False, False)
    store._record(_processing(Tracking("consumer:topic:2", 4), account))
    for position in (1, 4, 5):
        for aggregate in (account, never):
            assert recorder.seen_before("consumer:topic:2", position, aggregate.id) == (
                recorder.has_tracking_id("consumer:topic:2", position),
                aggregate.id in store.repository)
    assert recorder.seen_before("consumer:topic:2", 4, never.id) == (True, False)
    assert recorder.seen_before("other:topic:2", 4, account.id) == (False, True)


def test_appends_keep_their_order_on_every_path_and_every_connection(store):
    """The one-event statement (prepared per connection), the many-event statement and the
    database function take the same lock: while one of them holds an uncommitted id, an append
    through another waits, on a pooled connection of its own."""
    recorder = store.process_recorder
    held = Account(code="held-many")
    events = list(map(store.mapper.to_stored_event, held.collect_events()))
    saved = threading.Event()

    def save_another() -> None:
        store.save(Account(code="after"))
        saved.set()

    columns = [[e.originator_id for e in events], [e.originator_version for e in events],
               [e.topic for e in events], [e.state for e in events]]
    with recorder.datastore.get_connection() as conn, conn.transaction():
        [held_id] = [row["notification_id"] for row in
                     conn.execute(recorder.sql_append_many, columns).fetchall()]
        writer = threading.Thread(target=save_another)
        writer.start()
        assert not saved.wait(1.0), "an append went ahead of an uncommitted lower id"
    writer.join(10)
    assert saved.is_set()
    ids = [n.id for n in recorder.select_notifications(1, 100)]
    assert ids == sorted(ids) and held_id in ids


def _processing(tracking: Tracking, *aggregates: Account) -> ProcessingEvent:
    processing = ProcessingEvent(tracking=tracking)
    processing.collect_events(*aggregates)
    return processing


def test_an_append_prepares_again_when_the_session_forgot_its_statement(store):
    """psycopg's own statement cache sends DEALLOCATE ALL when it resets: the next one-event
    append prepares its statement again instead of failing."""
    recorder = store.process_recorder
    store.save(Account(code="prepared"))
    pool = recorder.datastore.pool
    with contextlib.ExitStack() as stack:
        for _ in range(pool.get_stats()["pool_size"]):
            stack.enter_context(pool.connection()).execute("DEALLOCATE ALL")
    [recording] = store.save(Account(code="after-deallocate"))
    assert recording.notification.id == recorder.max_notification_id()


def test_an_append_uses_a_statement_the_session_has_without_knowing_it(store):
    """A session may hold the append statements while the connection's note of what it
    prepared does not say so (seen in the chaos test after dropped connections, as consumers'
    'prepared statement already exists' retries): preparing again is not an error."""
    recorder = store.process_recorder
    pool = recorder.datastore.pool
    pool.open()
    with contextlib.ExitStack() as stack:
        for _ in range(pool.get_stats()["pool_size"]):
            conn = stack.enter_context(pool.connection())
            for name, query in ((b"hc_append_one", recorder.lean_one),
                                (b"hc_append_one_tracked", recorder.lean_one_tracked)):
                conn.pgconn.prepare(name, query)  # on the server, not in the note
            conn.__dict__.pop("_hc_prepared", None)
    processing = ProcessingEvent(tracking=Tracking("consumer:topic:0", 11))
    processing.collect_events(Account(code="tracked"))
    store._record(processing)
    [recording] = store.save(Account(code="untracked"))
    assert recording.notification.id == recorder.max_notification_id()
    assert recorder.max_tracking_id("consumer:topic:0") == 11


def test_reads_rendered_once_answer_as_the_library_s_composed_queries(store):
    """select_events and select_notifications, with their queries rendered once per shape,
    return what eventsourcing's own (composed on every call) return, for every combination
    of bounds, order, limit and topics; and seen_before_many answers as seen_before."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    recorder = store.process_recorder
    first, second = Account(code="read-a"), Account(code="read-b")
    for _ in range(4):
        first._change(transfer_id=first.id)
        second._change(transfer_id=second.id)
        store.save(first, second)
    library = PostgresApplicationRecorder
    for gt in (None, 2):
        for lte in (None, 4):
            for desc in (False, True):
                for limit in (None, 2):
                    kwargs = {"gt": gt, "lte": lte, "desc": desc, "limit": limit}
                    ours = recorder.select_events(first.id, **kwargs)
                    theirs = library.select_events(recorder, first.id, **kwargs)
                    assert ours == theirs and ours, kwargs
    topic = recorder.select_events(first.id, limit=1)[0].topic
    for start in (None, 1, 3):
        for inclusive in (True, False):
            for stop in (None, 6):
                for topics in ((), (topic,)):
                    args = (start, 5, stop, topics)
                    ours = recorder.select_notifications(*args, inclusive_of_start=inclusive)
                    theirs = library.select_notifications(recorder, *args,
                                                          inclusive_of_start=inclusive)
                    assert [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                            for n in ours] == [
                        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
                        for n in theirs], args
    recorder.insert_tracking(Tracking("consumer:topic:1", 7))
    positions, stored = recorder.seen_before_many(
        ["consumer:topic:1", "consumer:topic:2"], [first.id, Account(code="never").id])
    assert positions == {"consumer:topic:1": 7} and stored == {first.id}
    assert recorder.seen_before("consumer:topic:1", 7, first.id) == (True, True)


def test_versions_are_the_notifications_without_their_events(store):
    """select_versions gives each notification's id, aggregate and version from a start, in
    order and up to a limit, as select_notifications does (the aggregate cache's watch reads
    only these)."""
    recorder = store.process_recorder
    first, second = Account(code="versions-a"), Account(code="versions-b")
    for _ in range(3):
        first._change(transfer_id=first.id)
        store.save(first, second)
    start = recorder.max_notification_id() - 3
    for limit in (1, 2, 10):
        assert recorder.select_versions(start, limit) == [
            (n.id, n.originator_id, n.originator_version)
            for n in recorder.select_notifications(start, limit)]
    assert recorder.select_versions(start, 10)[-1] == (
        recorder.max_notification_id(), first.id, first.version)
    assert recorder.select_versions(recorder.max_notification_id() + 1, 10) == []


def test_several_events_sent_as_binary_arrays_are_stored_byte_for_byte(store):
    """Several events in one append go to the server as four binary arrays: each comes back
    as written (ids, versions, a topic with non-ASCII text, states with every byte value and
    an empty one), in order, with and without a tracking row, and a tracked batch already
    processed writes nothing."""
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent

    recorder = store.process_recorder
    first, second = uuid4(), uuid4()
    events = [StoredEvent(first, 1, "测试:Created", bytes(range(256))),
              StoredEvent(first, 2, "测试:Changed", b""),
              StoredEvent(second, 1, "x" * 300, b"\x00" * 70_000)]
    ids = recorder.insert_events(events)
    assert len(ids) == 3 and ids == sorted(ids)
    assert list(recorder.select_events(first)) + list(recorder.select_events(second)) == events
    tracked = [StoredEvent(second, 2, "t", b"\xff"), StoredEvent(second, 3, "t", b"\x01")]
    more = recorder.insert_events(tracked, tracking=Tracking("consumer:topic:9", 3))
    assert more[0] > ids[-1] and recorder.max_tracking_id("consumer:topic:9") == 3
    with pytest.raises(IntegrityError):
        recorder.insert_events([StoredEvent(second, 4, "t", b""), StoredEvent(second, 5, "t", b"")],
                               tracking=Tracking("consumer:topic:9", 3))
    assert [e.originator_version for e in recorder.select_events(second)] == [1, 2, 3]
