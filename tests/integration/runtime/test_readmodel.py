"""A read model that follows the log (services/runtime/readmodel.py), beside the aggregate
cache's watch of the same log, on SQLite and PostgreSQL: two application objects on one store
stand for two processes of a service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.runtime.aggregate_cache import unit_of_work
from services.runtime.readmodel import FollowingReadModel
from tests.integration.runtime.test_aggregate_cache import Counter, Counters

pytestmark = pytest.mark.integration


class Named(Counters):
    """Counters with a read model of the names started."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env=env)
        self.names: list[str] = []
        self.index = FollowingReadModel(self, self._index)

    def _index(self, event: object) -> None:
        if type(event).__qualname__ == "Counter.Started":
            self.names.append(event.name)  # type: ignore[attr-defined]


@pytest.fixture
def replicas(persistence: dict[str, str]) -> Iterator[tuple[Named, Named]]:
    first, second = Named(env=persistence), Named(env=persistence)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _touch(app: Named) -> None:
    """Any aggregate read: the unit's check of the log."""
    app.get_or_none(Counter(name="nobody").id)


def test_inside_a_unit_the_read_model_takes_what_the_watch_read(replicas):
    """Another process's counter, committed before the unit: the watch's check of the log
    (one query) brings it to the read model too, which then asks the store nothing."""
    a, b = replicas
    with unit_of_work():
        _touch(a)
        a.index.catch_up()
    b.save(Counter(name="theirs"))
    reads = a.index.reads
    with unit_of_work():
        _touch(a)
        a.index.catch_up()
        a.index.catch_up()
    assert a.names == ["theirs"] and a.index.reads == reads


def test_a_write_of_this_process_is_read_back_at_once(replicas):
    """After this process saves, the read model reads the log again before answering
    (read-your-writes), inside the unit as outside it."""
    a, _ = replicas
    with unit_of_work():
        _touch(a)
        a.index.catch_up()
        reads = a.index.reads
        a.save(Counter(name="mine"))
        a.index.catch_up()
        assert a.names == ["mine"] and a.index.reads == reads + 1


def test_outside_a_unit_every_catch_up_reads_the_log(replicas):
    """A script or a test with no unit of work sees every commit at once, as before."""
    a, b = replicas
    _touch(a)
    b.save(Counter(name="theirs"))
    a.index.catch_up()
    assert a.names == ["theirs"]
    b.save(Counter(name="later"))
    a.index.catch_up()
    assert a.names == ["theirs", "later"]
