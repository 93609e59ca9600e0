"""The outbox relay publishes a service's notifications in order and resumes where it stopped."""

import time
from datetime import date

import pytest

from contracts.registry import parse_event
from services.demo import seed_dispatch
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.runtime.outbox import OutboxRelay
from services.runtime.pgstore import relay_lease

pytestmark = pytest.mark.integration


class RecordingPublisher:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_after = fail_after

    async def publish(self, topic, key, value, headers):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("broker went away")
        self.sent.append((topic, key, value))


@pytest.fixture
def dispatch(persistence):
    app = DispatchApplication(env=persistence)
    seed_dispatch(app)
    yield app
    app.close()


def _order(app: DispatchApplication, n: int) -> None:
    app.place_order(PlaceOrder(elder_id="E-1001", service_type="cleaning",
                               requested_date=date(2026, 11, 24), order_id=f"O-{n}"))


async def test_publishes_translated_events_in_order_with_the_area_as_key(dispatch):
    """Each placed order yields OrderPlaced then VisitScheduled, keyed by the service area;
    registrations (internal domain events) are not published."""
    _order(dispatch, 1)
    publisher = RecordingPublisher()
    relay = OutboxRelay(dispatch, dispatch.translate, publisher, name="relay-test")
    while await relay.relay_once():
        pass
    types = [(topic, parse_event(value).type) for topic, _, value in publisher.sent]
    assert types == [("homecare.orders", "OrderPlaced"), ("homecare.visits", "VisitScheduled")]
    assert {key for _, key, _ in publisher.sent} == {b"yiwu-choucheng"}
    assert relay.backlog() == 0


async def test_resumes_after_the_last_recorded_position_and_republishes_the_same_ids(
        dispatch, persistence):
    """A relay that fails mid-batch records nothing for that batch; the next relay (a restart)
    publishes the batch again with identical event ids, then only what is new."""
    _order(dispatch, 1)
    failing = RecordingPublisher(fail_after=1)
    relay = OutboxRelay(dispatch, dispatch.translate, failing, name="relay-test")
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    first_attempt = [parse_event(v).event_id for _, _, v in failing.sent]

    restarted_app = DispatchApplication(env=persistence)
    try:
        publisher = RecordingPublisher()
        restarted = OutboxRelay(restarted_app, restarted_app.translate, publisher,
                                name="relay-test")
        while await restarted.relay_once():
            pass
        ids = [parse_event(v).event_id for _, _, v in publisher.sent]
        assert ids[:1] == first_attempt and len(ids) == 2
        _order(restarted_app, 2)
        publisher.sent.clear()
        while await restarted.relay_once():
            pass
        assert [parse_event(v).payload.order_id for _, _, v in publisher.sent] == ["O-2", "O-2"]
    finally:
        restarted_app.close()


async def test_a_relay_on_a_new_broker_log_publishes_the_whole_outbox_again(dispatch):
    """Positions belong to one broker log: a relay given a new log id starts from the first
    notification and publishes the same integration events (same ids, same order) again,
    while the old log's position is left as it was."""
    _order(dispatch, 1)
    _order(dispatch, 2)
    first = RecordingPublisher()
    old_log = OutboxRelay(dispatch, dispatch.translate, first, name="relay-test", log_id="one")
    while await old_log.relay_once():
        pass
    position = old_log.position()
    second = RecordingPublisher()
    new_log = OutboxRelay(dispatch, dispatch.translate, second, name="relay-test", log_id="two")
    assert (new_log.tracking_name, new_log.position()) == ("relay-test@two", 0)
    assert new_log.backlog() == position
    while await new_log.relay_once():
        pass
    assert [parse_event(v).event_id for _, _, v in second.sent] == \
        [parse_event(v).event_id for _, _, v in first.sent]
    assert len(second.sent) == 4
    assert new_log.position() == old_log.position() == position
    assert OutboxRelay(dispatch, dispatch.translate, first, name="relay-test").tracking_name \
        == "relay-test"


@pytest.fixture
def replica(dispatch, persistence):
    """A second process's view of the same store (another replica of dispatch)."""
    app = DispatchApplication(env=persistence)
    yield app
    app.close()


def _leased(app: DispatchApplication, publisher: RecordingPublisher) -> OutboxRelay:
    """A relay with the lease the host gives it, asking the database on every call (the host's
    lease asks at most once a second)."""
    lease = relay_lease(app, "relay-test")
    if lease is None:
        pytest.skip("a store only one process opens needs no lease")
    lease.verify_every_s = lease.retry_every_s = 0
    return OutboxRelay(app, app.translate, publisher, name="relay-test", lease=lease)


async def _relay_all(relay: OutboxRelay) -> None:
    while await relay.relay_once():
        pass


async def test_only_the_replica_holding_the_lease_relays_the_outbox(dispatch, replica):
    """Two replicas' relays over one store: the first to ask takes the lease and publishes
    everything; the other publishes nothing (no copies on the broker, no colliding positions)
    until the holder gives the lease up, and then carries on from the holder's position."""
    first, second = RecordingPublisher(), RecordingPublisher()
    holder, standby = _leased(dispatch, first), _leased(replica, second)
    try:
        _order(dispatch, 1)
        await _relay_all(holder)
        _order(replica, 2)
        assert await standby.relay_once() == 0
        await _relay_all(holder)
        assert second.sent == []
        assert [parse_event(v).payload.order_id for _, _, v in first.sent] == \
            ["O-1", "O-1", "O-2", "O-2"]
        holder.close()
        _order(dispatch, 3)
        await _relay_all(standby)
        assert [parse_event(v).payload.order_id for _, _, v in second.sent] == ["O-3", "O-3"]
        assert await holder.relay_once() == 0  # taken over, not taken back
    finally:
        holder.close()
        standby.close()


async def test_the_lease_passes_on_when_its_holder_s_session_ends(dispatch, replica,
                                                                   postgres_server,
                                                                   postgres_env):
    """A replica killed or cut off from the database loses its session and with it the lease:
    another replica takes the outbox over, and the former holder, finding its session gone,
    does not publish while the other holds the lease."""
    first, second = RecordingPublisher(), RecordingPublisher()
    holder, standby = _leased(dispatch, first), _leased(replica, second)
    try:
        _order(dispatch, 1)
        await _relay_all(holder)
        backend = holder.lease._connection.info.backend_pid  # type: ignore[union-attr]
        with postgres_server.connect(postgres_env["POSTGRES_DBNAME"]) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        for _ in range(100):  # the backend releases its locks as it exits
            if standby.lease.held():  # type: ignore[union-attr]
                break
            time.sleep(0.02)
        _order(dispatch, 2)
        assert await holder.relay_once() == 0
        await _relay_all(standby)
        assert [parse_event(v).payload.order_id for _, _, v in second.sent] == ["O-2", "O-2"]
        assert len(first.sent) == 2
    finally:
        holder.close()
        standby.close()


async def test_a_position_another_relay_recorded_first_is_not_an_error(dispatch, replica):
    """Two relays that published the same batch (the moment a lease changes hands) both
    finish it: the second finds its position already recorded and carries on, without an
    error or a back-off."""
    _order(dispatch, 1)
    first = RecordingPublisher()
    one = OutboxRelay(dispatch, dispatch.translate, first, name="relay-test")

    class OvertakenPublisher(RecordingPublisher):
        """Lets the other relay publish and record the same batch while this one publishes."""

        async def publish(self, topic, key, value, headers):
            if not first.sent:
                await one.relay_once()
            await super().publish(topic, key, value, headers)

    second = OvertakenPublisher()
    other = OutboxRelay(replica, replica.translate, second, name="relay-test")
    assert await other.relay_once() > 0  # every notification read, none left over
    assert [v for _, _, v in second.sent] == [v for _, _, v in first.sent]
    assert other.position() == one.position() == other.app.process_recorder.max_notification_id()


def test_the_lease_session_is_dropped_soon_when_its_holder_falls_silent(dispatch):
    """The server probes the lease's connection after 10 s of silence, every 5 s, 3 times: a
    holder cut off without a word loses the lease in about 25 s, not the operating system's
    two hours."""
    relay = _leased(dispatch, RecordingPublisher())
    try:
        assert relay.lease.held()  # type: ignore[union-attr]
        session = relay.lease._connection  # type: ignore[union-attr]
        settings = {name: session.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("tcp_keepalives_idle", "tcp_keepalives_interval",
                                 "tcp_keepalives_count")}
        assert settings == {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                            "tcp_keepalives_count": "3"}
    finally:
        relay.close()


async def test_the_backlog_gauge_is_zero_when_caught_up_and_counted_at_most_once_a_second(
        dispatch, monkeypatch):
    """Counting the backlog takes two queries: a relay that found nothing new reports 0
    without counting; one still behind counts at most once a second, whatever its rounds."""
    from services.runtime.observability import OUTBOX_BACKLOG

    relay = OutboxRelay(dispatch, dispatch.translate, RecordingPublisher(), name="gauge-test",
                        batch_size=1)
    counted = []
    real_backlog = relay.backlog
    monkeypatch.setattr(relay, "backlog", lambda: counted.append(1) or real_backlog())
    gauge = OUTBOX_BACKLOG.labels("dispatch")
    _order(dispatch, 1)
    _order(dispatch, 2)
    assert await relay.relay_once() == 1
    await relay._report_backlog()  # behind: counted
    assert len(counted) == 1 and gauge._value.get() == real_backlog() > 0
    assert await relay.relay_once() == 1
    await relay._report_backlog()  # behind again, within the second: not counted
    assert len(counted) == 1
    while await relay.relay_once():
        pass
    await relay._report_backlog()  # found nothing new: 0 without counting
    assert len(counted) == 1 and gauge._value.get() == 0
