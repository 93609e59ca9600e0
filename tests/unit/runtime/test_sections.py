"""Exclusive sections within one process (services/runtime/sections.py): one holder per name at
a time, bounded waits, re-entry, and fresh reads inside. Across processes on PostgreSQL:
tests/integration/runtime/test_sections.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.runtime.aggregate_cache import fresh_as_of, unit_of_work
from services.runtime.sections import ExclusiveSections, SectionBusy


def test_threads_in_one_section_take_turns_and_other_sections_run_beside() -> None:
    """Eight threads entering "bookings:A" never overlap inside it, while a thread in
    "bookings:B" runs at the same time as one of them."""
    sections = ExclusiveSections(None)
    inside: dict[str, int] = {"A": 0, "B": 0}
    most = {"A": 0}
    overlapped_b = threading.Event()
    guard = threading.Lock()

    def enter(area: str) -> None:
        with sections.hold(f"bookings:{area}"):
            with guard:
                inside[area] += 1
                most["A"] = max(most["A"], inside["A"])
                if inside["A"] and inside["B"]:
                    overlapped_b.set()
            time.sleep(0.01)
            with guard:
                inside[area] -= 1

    with ThreadPoolExecutor(max_workers=9) as pool:
        list(pool.map(enter, ["A"] * 4 + ["B"] + ["A"] * 4))
    assert most["A"] == 1
    assert overlapped_b.is_set()


def test_a_section_held_past_the_wait_answers_busy_and_is_free_afterwards() -> None:
    """A second thread waits at most ``wait_s`` and gets SectionBusy (nothing done, try again);
    once the holder leaves, the section can be entered."""
    sections = ExclusiveSections(None, wait_s=0.05)
    entered, leave = threading.Event(), threading.Event()

    def hold_long() -> None:
        with sections.hold("bookings:A"):
            entered.set()
            leave.wait(5)

    holder = threading.Thread(target=hold_long)
    holder.start()
    entered.wait(5)
    started = time.monotonic()
    with pytest.raises(SectionBusy, match="bookings:A is busy"), sections.hold("bookings:A"):
        pass
    assert 0.04 <= time.monotonic() - started < 1.0
    leave.set()
    holder.join(5)
    with sections.hold("bookings:A"):
        pass


def test_the_holding_thread_enters_again_without_waiting_for_itself() -> None:
    """Work inside a section that calls other work taking the same section (a week of orders,
    each placed in the area's section) does not deadlock."""
    sections = ExclusiveSections(None, wait_s=0.05)
    with sections.hold("bookings:A"), sections.hold("bookings:A"):
        pass
    with sections.hold("bookings:A"):  # and it was released at the end
        pass


def test_a_section_left_by_an_error_is_released() -> None:
    """An exception inside leaves the section free for the next caller."""
    sections = ExclusiveSections(None, wait_s=0.05)
    with pytest.raises(RuntimeError), sections.hold("bookings:A"):
        raise RuntimeError("the placement failed")
    with sections.hold("bookings:A"):
        pass


def test_reads_inside_a_section_are_as_fresh_as_the_moment_it_was_entered() -> None:
    """Inside a unit of work that started earlier, a section's reads must still see what was
    committed before the section was entered (what another placement just booked); after the
    section, the unit's own moment applies again."""
    sections = ExclusiveSections(None)
    with unit_of_work():
        unit_started = fresh_as_of()
        time.sleep(0.01)
        before_entering = time.monotonic()
        with sections.hold("bookings:A"):
            assert fresh_as_of() >= before_entering > unit_started
        assert fresh_as_of() == unit_started
