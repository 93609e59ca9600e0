"""Cached aggregates kept fresh by following the notification log
(services/runtime/aggregate_cache.py), on SQLite and PostgreSQL: two application objects on one
store stand for two processes of a service (replicas) writing the same aggregates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from services.runtime.aggregate_cache import ABSENT, unit_of_work
from services.runtime.eventstore import ServiceApplication

pytestmark = pytest.mark.integration


class Counter(Aggregate):
    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Counted")
    def add(self, n: int) -> None:
        self.count += n


class Counters(ServiceApplication):
    env = {"AGGREGATE_CACHE_MAXSIZE": "100"}
    cached_aggregates = (Counter,)


class CountingRecorder:
    """Counts the queries the repository makes for aggregates' events."""

    def __init__(self, app: Counters) -> None:
        self.reads = 0
        store = app.repository.event_store
        original = store.get

        def get(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.reads += 1
            return original(*args, **kwargs)

        store.get = get  # type: ignore[method-assign]


@pytest.fixture
def replicas(persistence: dict[str, str]) -> Iterator[tuple[Counters, Counters]]:
    first, second = Counters(env=persistence), Counters(env=persistence)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_a_unit_of_work_reads_its_cached_aggregates_without_asking_the_store_again(replicas):
    """Within one unit, reading cached aggregates again costs no query for their events (the
    library's fast-forward made one per read); the log is checked once for the whole unit."""
    app, _ = replicas
    counters = [Counter(name=str(i)) for i in range(5)]
    app.save(*counters)
    queries = CountingRecorder(app)
    watch = app.repository.watch
    with unit_of_work():
        for _ in range(3):
            assert [app.repository.get(c.id).name for c in counters] == list("01234")
    assert queries.reads == 5  # each read once from the store (the first check starts clean)
    checks = watch.checks
    with unit_of_work():
        for _ in range(3):
            assert [app.peek(c.id).count for c in counters] == [0] * 5
    assert queries.reads == 5 and watch.checks == checks + 1


def test_another_process_s_change_is_seen_by_the_next_unit_of_work(replicas):
    """Replica B changes a counter that replica A has cached: A's next unit of work reads
    the log, evicts its copy and reads the new state from the store."""
    a, b = replicas
    counter = Counter(name="c")
    a.save(counter)
    with unit_of_work():
        assert a.repository.get(counter.id).count == 0  # cached in A
    changed = b.repository.get(counter.id)
    changed.add(5)
    b.save(changed)
    with unit_of_work():
        assert a.repository.get(counter.id).count == 5
        assert a.peek(counter.id).version == 2


def test_a_command_on_a_state_changed_elsewhere_fails_once_and_the_retry_succeeds(replicas):
    """A stale cached state (B wrote after A's unit checked the log) makes A's save fail with
    a conflict, which evicts it: the retry reads the current state and adds to it."""
    a, b = replicas
    counter = Counter(name="c")
    a.save(counter)
    with unit_of_work():
        stale = a.repository.get(counter.id)
        elsewhere = b.repository.get(counter.id)
        elsewhere.add(1)
        b.save(elsewhere)
        stale.add(10)
        with pytest.raises(IntegrityError):
            a.save(stale)
        retry = a.repository.get(counter.id)
        retry.add(10)
        a.save(retry)
    with unit_of_work():
        assert b.repository.get(counter.id).count == 11


def _read_from_the_store(app: Counters, aggregate_id: object) -> tuple[int | None, object]:
    """Once the app's watch follows the log: its position, then the aggregate's state read
    from the store and not cached yet (what a check may overtake before cache_read)."""
    watch = app.repository.watch
    with unit_of_work():
        app.peek(aggregate_id)  # the first check: the log is followed from here
    watch.cache.evict(aggregate_id)
    position = watch.position
    return position, app.repository._reconstruct_aggregate(aggregate_id, None,
                                                           project_aggregate)


def test_a_state_read_while_a_check_passed_newer_events_is_not_cached(replicas):
    """A reads a counter from the store while (between its read and caching it) a check
    reads past B's newer event: that state is handed out but not cached, so the next unit
    reads the store again instead of trusting it for good."""
    a, b = replicas
    counter = Counter(name="c")
    b.save(counter)
    watch = a.repository.watch
    position, state_read = _read_from_the_store(a, counter.id)
    changed = b.repository.get(counter.id)
    changed.add(2)
    b.save(changed)
    watch.check(float("inf"))  # a check reads B's event (nothing cached to evict)
    watch.cache_read(counter.id, state_read, position)
    assert watch.cache.peek(counter.id) is None
    with unit_of_work():
        assert a.peek(counter.id).count == 2


def test_a_state_read_while_a_check_passed_only_other_events_is_cached(replicas):
    """Under load other requests' checks move the watch during most reads. A state read
    while a check read past events of other aggregates only (or of this one, no newer than
    the state) is cached: the next read does not ask the store."""
    a, b = replicas
    counter, other = Counter(name="c"), Counter(name="o")
    b.save(counter, other)
    watch = a.repository.watch
    position, state_read = _read_from_the_store(a, counter.id)
    changed = b.repository.get(other.id)
    changed.add(1)
    b.save(changed)
    watch.check(float("inf"))  # a check reads past the other counter's event
    assert watch.position != position
    watch.cache_read(counter.id, state_read, position)
    assert watch.cache.peek(counter.id) is state_read
    reads = CountingRecorder(a)
    with unit_of_work():
        assert a.peek(counter.id).count == 0
    assert reads.reads == 0


def test_a_state_read_before_the_watch_forgot_what_it_read_is_not_cached(replicas,
                                                                        monkeypatch):
    """The watch remembers the latest notification of a bounded number of aggregates; once it
    has started afresh, a read begun before cannot be compared and is not cached."""
    a, b = replicas
    monkeypatch.setattr(a.repository.watch, "RECENT_LIMIT", 1)
    counter = Counter(name="c")
    b.save(counter)
    watch = a.repository.watch
    position, state_read = _read_from_the_store(a, counter.id)
    for name in ("x", "y", "z"):
        b.save(Counter(name=name))
        watch.check(float("inf"))
    watch.cache_read(counter.id, state_read, position)
    assert watch.cache.peek(counter.id) is None


def test_an_older_state_never_replaces_a_newer_one_in_the_cache(replicas):
    """Two saves of one aggregate may cache their states in the other order; the cache keeps
    the newer."""
    app, _ = replicas
    counter = Counter(name="c")
    app.save(counter)
    older = app.repository.get(counter.id)
    newer = app.repository.get(counter.id)
    newer.add(1)
    app.save(newer)
    app.repository.cache.put(counter.id, older)
    assert app.repository.cache.peek(counter.id).version == 2


def test_without_a_unit_of_work_every_read_checks_the_log(replicas):
    """Outside a unit (a script, a test), a read is as fresh as the library's fast-forward:
    B's change is seen by A's very next read."""
    a, b = replicas
    counter = Counter(name="c")
    a.save(counter)
    assert a.peek(counter.id).count == 0
    changed = b.repository.get(counter.id)
    changed.add(3)
    b.save(changed)
    assert a.peek(counter.id).count == 3



def test_an_aggregate_not_in_the_store_is_asked_for_once_per_unit_of_work(replicas):
    """Looking up what does not exist (a charge not made yet) is cached as absent: the second
    lookup in a unit costs no query. Created by this process, it is found at once; created
    by another, from the next unit on."""
    a, b = replicas
    mine, theirs = Counter(name="mine"), Counter(name="theirs")
    queries = CountingRecorder(a)
    with unit_of_work():
        assert a.get_or_none(mine.id) is None and a.get_or_none(theirs.id) is None
        reads = queries.reads
        assert a.get_or_none(mine.id) is None and a.get_or_none(theirs.id) is None
        assert queries.reads == reads
        a.save(mine)
        assert a.get_or_none(mine.id).name == "mine"
        b.save(theirs)
    with unit_of_work():
        assert a.get_or_none(theirs.id).name == "theirs"


def test_an_absence_read_while_a_check_passed_the_creation_is_not_cached(replicas):
    """The absence read before another process created the aggregate must not outlive the
    check that saw the creation (the same rule as for a stale state)."""
    a, b = replicas
    counter = Counter(name="c")
    watch = a.repository.watch
    with unit_of_work():
        a.get_or_none(Counter(name="warm-up").id)  # the watch has started following
    position = watch.position
    b.save(counter)
    watch.check(float("inf"))  # a check, meanwhile, reads past the creation
    watch.cache_read(counter.id, ABSENT, position)  # the absence, read before it
    with unit_of_work():
        assert a.get_or_none(counter.id).name == "c"


def test_a_state_saved_with_later_events_is_kept_for_the_relay_at_each_version(replicas):
    """Two events of one aggregate saved together: the state right after the first (what
    the relay translates it by) is kept too, built from the cached state before the save,
    not replayed from the store; it equals the replayed state."""
    app, _ = replicas
    counter = Counter(name="c")
    app.save(counter)
    with unit_of_work():
        changing = app.repository.get(counter.id)
    changing.add(2)
    changing.add(5)
    app.save(changing)
    kept = app.saved_state(counter.id, 2)
    assert kept is not None and (kept.version, kept.count) == (2, 2)
    replayed = app.repository.get(counter.id, version=2)
    assert (replayed.version, replayed.count, replayed.name) == (2, 2, "c")
    assert app.saved_state(counter.id, 3).count == 7
    created_and_counted = Counter(name="d")
    created_and_counted.add(1)
    app.save(created_and_counted)
    assert app.saved_state(created_and_counted.id, 1).count == 0
