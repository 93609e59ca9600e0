"""Exclusive sections across processes sharing one PostgreSQL store (services/runtime/
sections.py, AdvisoryLocks in pgstore.py): two application objects on one store stand for two
replicas. Within one process: tests/unit/runtime/test_sections.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from services.runtime.eventstore import ServiceApplication
from services.runtime.pgstore import section_lock_key
from services.runtime.sections import ExclusiveSections, SectionBusy, exclusive_sections

pytestmark = pytest.mark.integration


@pytest.fixture
def replicas(persistence) -> Iterator[tuple[ExclusiveSections, ExclusiveSections]]:
    apps = [ServiceApplication(env=persistence) for _ in range(2)]
    sections = [exclusive_sections(app, wait_s=0.3) for app in apps]
    if sections[0].across_processes is None:
        pytest.skip("a store only one process opens (SQLite) needs no lock across processes")
    yield sections[0], sections[1]
    for app, section in zip(apps, sections, strict=True):
        section.close()
        app.close()


def test_a_section_held_by_one_replica_keeps_the_other_out_until_it_ends(replicas):
    """While one replica is inside "bookings:A", the other waits; it enters as soon as the
    first leaves. Another section ("bookings:B") is free all along."""
    first, second = replicas
    second.wait_s = 5.0
    entered, leave = threading.Event(), threading.Event()
    left_at: list[float] = []

    def hold() -> None:
        with first.hold("bookings:A"):
            entered.set()
            leave.wait(5)
            left_at.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(5)
        with second.hold("bookings:B"):
            pass  # not blocked by A
        threading.Timer(0.2, leave.set).start()
        with second.hold("bookings:A"):
            entered_at = time.monotonic()
        assert left_at and entered_at >= left_at[0]
    finally:
        leave.set()
        holder.join(5)


def test_a_replica_waits_at_most_the_wait_and_is_told_it_is_busy(replicas):
    """Held elsewhere past ``wait_s``: SectionBusy (a 503 over HTTP, a retry in a consumer),
    after about the wait, and the section's session is fit to be used again."""
    first, second = replicas
    with first.hold("bookings:A"):
        started = time.monotonic()
        with pytest.raises(SectionBusy, match="busy in another process"), \
                second.hold("bookings:A"):
            pass
        assert 0.25 <= time.monotonic() - started < 3.0
    with second.hold("bookings:A"):
        pass


def test_a_replica_that_dies_inside_a_section_frees_it(replicas, postgres_server,
                                                       postgres_env):
    """The lock goes with the holder's session: when its backend ends (the process killed, the
    connection cut), the other replica enters. The holder's section still ends quietly, and
    its dead connection is not kept for the next section."""
    first, second = replicas
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with first.hold("bookings:A"):
            entered.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(5)
        key = section_lock_key(first.across_processes.schema, "bookings:A")
        high, low = divmod(key % 2**64, 2**32)  # how pg_locks shows a bigint key
        with postgres_server.connect(postgres_env["POSTGRES_DBNAME"]) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid = %s AND objid = %s AND objsubid = 1",
                (high, low)).fetchall()
        assert ended == [(True,)]
        second.wait_s = 5.0
        with second.hold("bookings:A"):
            pass
    finally:
        leave.set()
        holder.join(5)
    locks = first.across_processes
    assert locks is not None and locks._idle == []
    with first.hold("bookings:A"):
        pass


def test_a_kept_session_the_server_ended_is_replaced_without_an_error(replicas,
                                                                      postgres_server,
                                                                      postgres_env):
    """Between two sections, the server ends the session kept for the next one (a restart, a
    terminated backend): the next section opens a new session instead of failing."""
    first, _ = replicas
    locks = first.across_processes
    assert locks is not None
    with first.hold("bookings:A"):
        pass
    (kept,) = locks._idle
    with postgres_server.connect(postgres_env["POSTGRES_DBNAME"]) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (kept.info.backend_pid,))
    with first.hold("bookings:A"):
        pass
    assert kept.closed and locks._idle and locks._idle[0] is not kept
