"""Per-subject data keys (services/runtime/keystore.py) on SQLite and PostgreSQL, two key stores
on one store standing for two replicas: what a replica keeps in memory, and how late it learns
of an erasure made by the other."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.runtime.eventstore import ServiceApplication
from services.runtime.keystore import SubjectErased, SubjectKeys, subject_keys_for

pytestmark = pytest.mark.integration


class Counting:
    """Counts a key store's queries by kind."""

    def __init__(self, keys: SubjectKeys) -> None:
        self.selects = self.erasure_counts = 0
        select, erasures = keys._select, keys._erasures

        def counted_select(subject: str) -> bytes | None:
            self.selects += 1
            return select(subject)

        def counted_erasures() -> int:
            self.erasure_counts += 1
            return erasures()

        keys._select = counted_select  # type: ignore[method-assign]
        keys._erasures = counted_erasures  # type: ignore[method-assign]


@pytest.fixture
def replicas(persistence) -> Iterator[tuple[SubjectKeys, SubjectKeys]]:
    apps = [ServiceApplication(env=persistence) for _ in range(2)]
    keys = [subject_keys_for(app.factory, app.factory.cipher(), "keystore_test") for app in apps]
    for k in keys:
        k.cache_seconds = 0.2
    yield keys[0], keys[1]
    for app in apps:
        app.close()


def test_a_replica_learns_of_an_erasure_by_the_other_within_the_interval(replicas):
    """Replica B keeps elder:E-1's key after reading it; once A erases her, B still has the key
    for at most ``cache_seconds`` and then has none (and cannot make one again)."""
    a, b = replicas
    key = a.key_or_create("elder:E-1")
    assert b.key("elder:E-1") == key
    assert a.delete("elder:E-1")
    assert a.key("elder:E-1") is None  # at once where it was erased
    time.sleep(0.25)
    assert b.key("elder:E-1") is None
    with pytest.raises(SubjectErased):
        b.key_or_create("elder:E-1")


def test_keys_are_kept_past_the_interval_when_nobody_was_erased(replicas):
    """Without erasures a kept key is not read again: after the interval one query (how many
    erasures) answers for every key held, not one query per key."""
    a, b = replicas
    subjects = [f"elder:E-{i}" for i in range(5)]
    for subject in subjects:
        a.key_or_create(subject)
        b.key(subject)
    counted = Counting(b)
    time.sleep(0.25)
    for _ in range(3):
        for subject in subjects:
            assert b.key(subject) is not None
    assert (counted.selects, counted.erasure_counts) == (0, 1)


def test_an_erasure_of_someone_else_makes_the_replica_read_its_keys_again(replicas):
    """Any erasure empties a replica's keys at its next look (erasures are rare): the keys of
    those not erased are read again, and still open what they sealed."""
    a, b = replicas
    kept = a.key_or_create("elder:E-2")
    a.key_or_create("elder:E-3")
    assert b.key("elder:E-2") == kept
    a.delete("elder:E-3")
    counted = Counting(b)
    time.sleep(0.25)
    assert b.key("elder:E-2") == kept
    assert counted.selects == 1


def test_a_replica_keeps_at_most_cache_size_keys(replicas):
    """The least recently used keys go first when more subjects than ``cache_size`` are read."""
    a, _ = replicas
    a.cache_size = 3
    for i in range(5):
        a.key_or_create(f"elder:E-{i}")
    a.key("elder:E-2")
    assert list(a._cache) == ["elder:E-3", "elder:E-4", "elder:E-2"]


def test_a_new_subject_costs_one_insert_and_two_reads(replicas):
    """Making a key: one read finds none, the insert (which never replaces a tombstone), one
    read back."""
    a, _ = replicas
    counted = Counting(a)
    a.key_or_create("elder:E-9")
    assert counted.selects == 2
