"""The PostgreSQL store with database functions keeps tracking in the events' transaction."""

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
