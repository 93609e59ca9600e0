"""Two-phase reservations on a real store: hold in funding order, post, release, expire."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.ledger.domain.books import entitlement_account, provider_payable_account
from services.runtime.consumer import Outcome

from .conftest import (
    AREA,
    cancelled,
    credits_rejected,
    credits_reserved,
    rescheduled,
    scheduled,
    verified,
)

pytestmark = pytest.mark.integration
ENT = entitlement_account("E-1", "2026-11")
PAYABLE = provider_payable_account("P-1", AREA)


async def test_scheduled_visit_holds_entitlement_and_announces_it(ledger):
    """VisitScheduled -> a pending hold on the month's entitlement -> HoursReserved."""
    await ledger.feed(scheduled("V1", 60))
    balance = ledger.app.balance("E-1", "2026-11")
    assert (balance.held_minutes, balance.available_minutes, balance.used_minutes) == (60, 180, 0)
    (reserved,) = ledger.published("HoursReserved")
    assert [(leg.source, leg.minutes) for leg in reserved.payload.legs] == [("entitlement", 60)]
    assert ledger.app.account_by_code(PAYABLE).credits_pending == 60


async def test_verification_posts_the_actual_minutes_and_releases_the_rest(ledger):
    """45 of 60 held minutes are posted; 15 go back to the entitlement (verified remainder)."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 45))
    balance = ledger.app.balance("E-1", "2026-11")
    assert (balance.used_minutes, balance.held_minutes, balance.available_minutes) == (45, 0, 195)
    (charged,) = ledger.published("VisitCharged")
    assert charged.payload.charged_minutes == 45
    (released,) = ledger.published("ReservationReleased")
    assert (released.payload.reason, released.payload.released_minutes) == (
        "verified_remainder", 15)
    assert ledger.app.account_by_code(PAYABLE).balance == 45


async def test_more_minutes_than_held_are_never_posted(ledger):
    """A visit held for 60 that lasted 80: 60 posted, 20 recorded as unfunded for review."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 80))
    charge = ledger.app.charge_for("V1")
    assert (charge.charged_minutes, charge.unfunded_minutes) == (60, 20)
    assert ledger.app.balance("E-1", "2026-11").used_minutes == 60


async def test_beyond_entitlement_uses_a_package_then_out_of_pocket_if_agreed(ledger):
    """200 + 60 + 60 minutes against 240 entitled and a 30-minute package: the third visit takes
    the last 40 entitled... then the package, then out of pocket because the elder agreed."""
    ledger.app.buy_package("E-1", "PK-1", 30, 1500, date(2026, 12, 31), "daughter")
    await ledger.feed(scheduled("V1", 200))
    await ledger.feed(scheduled("V2", 100, oop=True))
    legs = ledger.published("HoursReserved")[-1].payload.legs
    assert [(leg.source, leg.minutes) for leg in legs] == [
        ("entitlement", 40), ("family_package", 30), ("out_of_pocket", 30)]


async def test_unfundable_visit_is_rejected_and_its_holds_voided(ledger):
    """Nobody is promised hours that do not exist: 300 minutes against 240 without the elder's
    agreement to pay is rejected, and the partial entitlement hold is released."""
    await ledger.feed(scheduled("V1", 300))
    (rejected,) = ledger.published("ReservationRejected")
    assert rejected.payload.available_minutes == 240
    assert "60 of 300 minutes cannot be funded" in rejected.payload.reason
    assert ledger.app.balance("E-1", "2026-11").held_minutes == 0


async def test_time_credits_come_second_and_the_ledger_waits_for_the_time_bank(ledger):
    """With credits chosen, the minutes beyond entitlement are asked of the time bank; its
    answer completes the reservation; the credits leg is charged from the reserve."""
    await ledger.feed(scheduled("V0", 200))
    await ledger.feed(scheduled("V1", 90, credits=True))
    (asked,) = ledger.published("CreditsHoldRequested")
    assert (asked.payload.minutes, asked.payload.account_id) == (50, "E-1")
    assert ledger.app.reservation_for("V1").state == "awaiting_credits"
    await ledger.feed(credits_reserved("V1", 50))
    legs = ledger.published("HoursReserved")[-1].payload.legs
    assert [(leg.source, leg.minutes) for leg in legs] == [("entitlement", 40),
                                                          ("time_credits", 50)]
    await ledger.feed(verified("V1", 70))
    charged = ledger.published("VisitCharged")[-1]
    assert [(leg.source, leg.minutes) for leg in charged.payload.legs] == [
        ("entitlement", 40), ("time_credits", 30)]
    assert ledger.app.account_by_code("funding:timebank_reserve:yiwu").balance == -30


async def test_credits_refused_falls_through_to_rejection_without_agreement(ledger):
    """The time bank has nothing: without out-of-pocket agreement the visit is not funded."""
    await ledger.feed(scheduled("V0", 240))
    await ledger.feed(scheduled("V1", 60, credits=True))
    await ledger.feed(credits_rejected("V1", 60))
    assert ledger.published("ReservationRejected")[-1].payload.visit_id == "V1"


async def test_cancellation_voids_the_hold_and_a_second_cancellation_changes_nothing(ledger):
    """VisitCancelled releases the hold (ReservationReleased 'cancelled'); repeated: no-op."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(cancelled("V1"))
    await ledger.feed(cancelled("V1"))
    releases = ledger.published("ReservationReleased")
    assert [(r.payload.reason, r.payload.released_minutes) for r in releases] == [
        ("cancelled", 60)]
    assert ledger.app.balance("E-1", "2026-11").available_minutes == 240


async def test_cancellation_arriving_before_the_schedule_wins(ledger):
    """Reordered delivery: a cancellation seen first means the later schedule holds nothing."""
    await ledger.feed(cancelled("V1"))
    await ledger.feed(scheduled("V1", 60))
    assert ledger.published("HoursReserved") == []
    assert ledger.app.balance("E-1", "2026-11").held_minutes == 0


async def test_holds_expire_when_never_resolved(ledger):
    """A hold past its expiry is released by the sweep; a fresh one is kept."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(scheduled("V2", 30))
    later = datetime.now(UTC) + timedelta(days=400)
    assert ledger.app.expire_holds(now=later) == 2
    assert ledger.app.expire_holds(now=later) == 0
    assert {r.payload.reason for r in ledger.published("ReservationReleased")} == {"expired"}
    assert ledger.app.balance("E-1", "2026-11").held_minutes == 0


async def test_rescheduled_visit_is_reserved_again_for_its_new_length(ledger):
    """A 60-minute visit made 90 minutes long: the old hold is voided, 90 held instead."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(rescheduled("V1", 90))
    assert ledger.app.balance("E-1", "2026-11").held_minutes == 90
    assert ledger.app.reservation_for("V1").attempt == 2


async def test_duplicated_events_change_nothing(ledger):
    """The same schedule and verification delivered twice: one hold, one charge."""
    for event in (scheduled("V1", 60), verified("V1", 60)):
        assert await ledger.feed(event) is Outcome.PROCESSED
        assert await ledger.feed(event) is Outcome.DUPLICATE
    assert len(ledger.published("VisitCharged")) == 1
    assert ledger.app.balance("E-1", "2026-11").used_minutes == 60
    assert ledger.app.trial_balance() == {"minute": 0}


async def test_volunteer_visits_are_left_to_the_time_bank(ledger):
    """No hold and no charge in the ledger for a volunteer's visit."""
    await ledger.feed(scheduled("V1", 60, kind="volunteer"))
    assert ledger.published() == []
