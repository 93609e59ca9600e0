"""The time bank application on an in-memory store: earning, the funding protocol, gifts,
redemption, the reserve and federation, fed with contract events as the consumer would."""

from datetime import date, timedelta

import pytest
from prometheus_client import REGISTRY

from contracts.events.visits import VisitRescheduled
from services.runtime.double_entry import LedgerError
from services.timebank.application import NotFound
from services.timebank.domain.credits import community_fund_account
from services.timebank.domain.rules import (
    NANJING_LIKE,
    EarningCaps,
    GiftLimits,
    RuleError,
)

from .conftest import START, Events, make_app, published


def _types(published):
    return [e.type for e in published]


# Earning -------------------------------------------------------------------------------------

def test_confirmed_volunteer_visit_earns_with_the_service_multiplier():
    """Under a scheme paying double for body care, 40 minutes of bathing earn 80 credits."""
    app = make_app(multipliers=NANJING_LIKE)
    out = Events(app).feed(Events.verified("V1", "vol", 40, service="bathing"))
    assert _types(out) == ["CreditsEarned"]
    assert out[0].payload.credited_minutes == 80 and out[0].payload.multiplier_permille == 2000
    assert app.balance("vol").balance_minutes == 80
    assert app.earning_for("V1").rule_version == "body-care-2024"


def test_unconfirmed_visit_earns_nothing_and_says_why(app, events):
    """A visit signed on paper only (no elder code, no family proxy) is recorded, not credited."""
    out = events.feed(Events.verified("V1", "vol", 30, confirmation="signature"))
    assert out == []
    earning = app.earning_for("V1")
    assert earning.credited_minutes == 0 and "not confirmed" in earning.reason
    assert app.balance("vol").balance_minutes == 0


def test_a_visit_earns_once_even_if_verified_twice(app, events):
    """A second VisitVerified for the same visit (a new event id) adds nothing."""
    events.feed(Events.verified("V1", "vol", 30))
    assert events.feed(Events.verified("V1", "vol", 30)) == []
    assert app.balance("vol").balance_minutes == 30


def test_caps_per_day_and_balance_with_donation():
    """Day cap 60: the second visit of the day is cut to the cap; above the balance cap the
    rest is donated to the community fund."""
    app = make_app(caps=EarningCaps(per_day_minutes=60, balance_cap_minutes=80))
    events = Events(app)
    events.feed(Events.verified("V1", "vol", 50))
    events.feed(Events.verified("V2", "vol", 50))  # same day: only 10 more
    assert app.balance("vol").balance_minutes == 60
    assert app.earning_for("V2").not_credited_minutes == 40
    events.feed(Events.verified("V3", "vol", 50, start=START + timedelta(days=1)))
    assert app.balance("vol").balance_minutes == 80
    assert app.earning_for("V3").donated_minutes == 30
    assert app.account_by_code(community_fund_account("A")).balance == 30


# The funding protocol with the ledger --------------------------------------------------------

def _earned(app, events, person="elder", minutes=100, area="a1"):
    events.feed(Events.verified(f"earn-{person}", person, minutes, area=area))


def test_hold_request_holds_what_is_available_and_the_charge_posts_then_releases(app, events):
    """R=90 asked, 60 available: 60 held; the ledger charges 40 on credits: 40 redeemed, 20
    released; the reserve's books show the 40 paid out."""
    _earned(app, events, minutes=60)
    out = events.feed(Events.hold_requested("V9", "elder", 90))
    assert _types(out) == ["CreditsReserved"] and out[0].payload.minutes == 60
    assert out[0].payload.account_id == "member:A:elder"
    assert app.balance("elder").available_minutes == 0
    out = events.feed(Events.charged("V9", 40, other_minutes=30))
    assert _types(out) == ["CreditsRedeemed", "CreditsReleased"]
    assert [e.payload.minutes for e in out] == [40, 20]
    balance = app.balance("elder")
    assert (balance.balance_minutes, balance.held_minutes) == (20, 0)
    assert app.liability("A").reserve_minutes == -40  # nothing granted: a shortfall shows
    assert app.trial_balance() == 0


def test_hold_request_with_nothing_available_is_rejected(app, events):
    """No credits: CreditsReservationRejected with requested and available minutes."""
    app.join("elder", "A")
    out = events.feed(Events.hold_requested("V9", "elder", 30))
    assert _types(out) == ["CreditsReservationRejected"]
    assert (out[0].payload.requested_minutes, out[0].payload.available_minutes) == (30, 0)


@pytest.mark.parametrize("make_event", [
    lambda: Events.cancelled("V9"),
    lambda: Events.released("V9", "expired"),
    lambda: Events.released("V9", "cancelled"),
])
def test_cancellation_or_release_voids_the_hold_once(app, events, make_event):
    """VisitCancelled and ReservationReleased(cancelled|expired) give the credits back; a second
    copy changes nothing."""
    _earned(app, events, minutes=50)
    events.feed(Events.hold_requested("V9", "elder", 30))
    out = events.feed(make_event())
    assert _types(out) == ["CreditsReleased"] and out[0].payload.minutes == 30
    assert events.feed(make_event()) == []
    assert app.balance("elder").available_minutes == 50
    assert events.feed(Events.charged("V9", 30)) == []  # nothing left to charge


def test_verified_remainder_release_does_not_void_the_hold(app, events):
    """ReservationReleased(verified_remainder) is about the ledger's own rest, not ours."""
    _earned(app, events, minutes=50)
    events.feed(Events.hold_requested("V9", "elder", 30))
    assert events.feed(Events.released("V9", "verified_remainder")) == []
    assert app.balance("elder").held_minutes == 30


def test_own_expiry_releases_stale_holds(app, events):
    """The time bank's safety net: a hold past its expiry is released."""
    _earned(app, events, minutes=50)
    events.feed(Events.hold_requested("V9", "elder", 30))
    assert app.expire_holds(START) == []
    assert app.expire_holds(START + timedelta(days=3)) == ["V9"]
    assert app.hold_for("V9").state == "released"
    assert app.balance("elder").available_minutes == 50


# Volunteer-served redemption -----------------------------------------------------------------

def test_volunteer_served_redemption_moves_credits_to_the_volunteer(app, events):
    """A true time exchange: the redeemer's credits go to the volunteer who served; no new
    credits are issued."""
    _earned(app, events, person="redeemer", minutes=100)
    out = events.feed(Events.scheduled("V5", "helper", "redeemer", 45))
    assert _types(out) == ["CreditsReserved"]
    out = events.feed(Events.verified("V5", "helper", 40))
    assert _types(out) == ["CreditsRedeemed", "CreditsReleased"]
    assert app.balance("redeemer").balance_minutes == 60
    assert app.balance("helper").balance_minutes == 40
    assert sum(app.credit_totals().values()) == 100  # nothing created


def test_volunteer_served_redemption_released_on_cancellation(app, events):
    """Cancelled before it happens: the redeemer keeps every credit."""
    _earned(app, events, person="redeemer", minutes=100)
    events.feed(Events.scheduled("V5", "helper", "redeemer", 45))
    events.feed(Events.cancelled("V5"))
    assert app.balance("redeemer").available_minutes == 100


# Gifts ---------------------------------------------------------------------------------------

def test_gift_to_family_and_to_the_community_fund_is_recorded(app, events):
    """Gifts move available credits; each is a CreditsGifted with both accounts."""
    _earned(app, events, person="vol", minutes=100)
    gift = app.give("vol", 30, "mum", note="for mum", gift_id="G1")
    assert app.balance("mum").balance_minutes == 30
    app.give("vol", 10, None, gift_id="G2")
    assert app.account_by_code(community_fund_account("A")).balance == 10
    (gifted,) = published(app, gift.id)
    assert gifted.type == "CreditsGifted" and gifted.payload.minutes == 30
    assert (gifted.payload.from_account_id, gifted.payload.to_account_id) == (
        "member:A:vol", "member:A:mum")
    assert app.gift("G1").note == "for mum"
    assert app.balance("vol").balance_minutes == 60


def test_gift_limits_and_held_credits(app, events):
    """No gift above the per-gift or monthly limit, and never from credits held for a visit."""
    app = make_app(gifts=GiftLimits(max_per_gift_minutes=40, max_per_month_minutes=50))
    events = Events(app)
    _earned(app, events, person="vol", minutes=100)
    with pytest.raises(RuleError, match="per gift"):
        app.give("vol", 41, "mum")
    app.give("vol", 40, "mum", on=date(2026, 11, 1))
    with pytest.raises(RuleError, match="a month"):
        app.give("vol", 20, "mum", on=date(2026, 11, 2))
    events.feed(Events.hold_requested("V9", "vol", 55))
    with pytest.raises(RuleError, match="held"):
        app.give("vol", 10, "mum", on=date(2026, 12, 1))
    assert app.balance("vol").balance_minutes == 60


# Redemption ----------------------------------------------------------------------------------

def test_redemption_places_an_order_paid_with_credits(app, events):
    """Redeeming for a 70-year-old parent places OrderPlaced(source=timebank_redemption) with the
    redeemer's account."""
    _earned(app, events, person="vol", minutes=100)
    app.join("mum", "A", birth_date=date(1956, 3, 1))
    redemption = app.redeem("vol", "mum", "cleaning", 60, date(2026, 11, 25), "a1",
                            redemption_id="R1")
    (order,) = published(app, redemption.id)
    assert order.type == "OrderPlaced" and order.topic == "homecare.orders"
    assert order.payload.source == "timebank_redemption" and order.payload.use_time_credits
    assert order.payload.time_credit_account_id == "member:A:vol"
    assert order.payload.duration_minutes == 60 and order.payload.elder_id == "mum"


def test_redemption_is_age_gated_and_needs_credits(app, events):
    """A 40-year-old cannot redeem for themselves; nobody redeems more than they have."""
    _earned(app, events, person="vol", minutes=100)
    app.join("vol", "A", birth_date=date(1986, 1, 1))
    with pytest.raises(RuleError, match="age"):
        app.redeem("vol", "vol", "cleaning", 30, date(2026, 11, 25), "a1")
    with pytest.raises(RuleError, match="available"):
        app.redeem("vol", "mum", "cleaning", 300, date(2026, 11, 25), "a1",
                   beneficiary_birth_date=date(1940, 1, 1))
    with pytest.raises(NotFound):
        app.redeem("nobody", "mum", "cleaning", 30, date(2026, 11, 25), "a1")


# Reserve -------------------------------------------------------------------------------------

def test_liability_ratio_and_projection_of_the_reserve(app, events):
    """Grants fund the reserve; paid redemptions draw on it; the projection says when it runs
    short at the last 30 days' payout rate."""
    _earned(app, events, minutes=300)
    app.grant("A", 100, "city-2026")
    events.feed(Events.hold_requested("V9", "elder", 200))
    events.feed(Events.charged("V9", 200))
    liability = app.liability("A")
    assert liability.reserve_minutes == -100
    assert liability.outstanding_minutes == 100
    assert liability.volunteer_capacity_minutes == 300
    assert liability.liability_ratio == pytest.approx(100 / 300)
    app.refresh_gauges()
    assert REGISTRY.get_sample_value("homecare_timebank_liability_ratio",
                                     {"bank": "A"}) == pytest.approx(100 / 300)
    app.grant("A", 600, "top-up")
    projected = app.liability("A")
    assert projected.reserve_minutes == 500
    # 200 paid in 30 days: 6.67 a day; 500 left lasts 75 days.
    assert projected.days_until_reserve_short == pytest.approx(75.0)
    assert projected.reserve_short_on is not None
    assert app.grant("A", 600, "top-up").amount == 600  # same reference: once only
    assert app.liability("A").reserve_minutes == 500


# Federation ----------------------------------------------------------------------------------

def test_member_redeems_in_another_bank_and_clearing_settles(app, events):
    """A member of bank A redeems care in bank B: A comes to owe B; clearing nets the pair and
    resets both positions; no credit is created or lost."""
    _earned(app, events, minutes=100, area="a1")
    events.feed(Events.hold_requested("V9", "elder", 70, area="b1"))
    assert {p["bank_id"]: p["held_minutes"] for p in app.positions()}["A"] == 70
    events.feed(Events.charged("V9", 70, area="b1"))
    owed = {(p["bank_id"], p["owes_bank_id"]): p["posted_minutes"] for p in app.positions()}
    assert owed == {("A", "B"): 70, ("B", "A"): -70}
    before = sum(app.credit_totals().values())
    settlements = app.clear("2026-11")
    assert [(s.payer_bank_id, s.payee_bank_id, s.minutes) for s in settlements] == [
        ("A", "B", 70)]
    assert all(p["posted_minutes"] == 0 for p in app.positions())
    assert sum(app.credit_totals().values()) == before
    assert app.clear("2026-11") == []  # once per period
    (settled,) = published(app, settlements[0].id)
    assert settled.type == "CreditsSettled"
    assert (settled.payload.payer_bank_id, settled.payload.minutes) == ("A", 70)


def test_bilateral_limit_caps_what_one_bank_may_owe_another():
    """With a limit of 50, a cross-bank hold of 70 holds 50, and a cross-bank gift above the
    room left is refused."""
    app = make_app(bilateral_limit_minutes=50)
    events = Events(app)
    _earned(app, events, minutes=100, area="a1")
    out = events.feed(Events.hold_requested("V9", "elder", 70, area="b1"))
    assert out[0].payload.minutes == 50
    app.join("dad", "B")
    with pytest.raises(RuleError, match="bilateral limit"):
        app.give("elder", 10, "dad")


# Volunteer tasks -----------------------------------------------------------------------------

def test_volunteer_tasks_follow_the_visit_lifecycle(app, events):
    """Scheduled to a volunteer: listed as assigned; rescheduled to another: moves to them;
    verified: done; an employee's visit is not a volunteer task."""
    events.feed(Events.scheduled("V1", "vol", "E-1", 30))
    events.feed(Events.scheduled("V2", "vol", "E-2", 30))
    assert [t.visit_id for t in app.tasks_of("vol")] == ["V1", "V2"]
    events.feed(VisitRescheduled(service_area_id="a1", payload={
        "visit_id": "V2", "order_id": "O-V2", "elder_id": "E-2", "caregiver_id": "other",
        "planned_start": START, "planned_end": START + timedelta(minutes=40),
        "planned_minutes": 40}))
    assert [t.visit_id for t in app.tasks_of("other")] == ["V2"]
    events.feed(Events.verified("V1", "vol", 30))
    assert [(t.visit_id, t.state) for t in app.tasks_of("vol")] == [("V1", "done")]
    events.feed(Events.verified("V3", "emp", 30, kind="employee"))
    assert app.tasks_of("emp") == []


def test_a_second_hold_request_for_a_rescheduled_visit_renews_the_hold(app, events):
    """The ledger re-funds a rescheduled visit by asking again: the old hold is given back and
    the new answer holds the new minutes; the same request delivered again changes nothing."""
    _earned(app, events, minutes=100)
    events.feed(Events.hold_requested("V9", "elder", 60))
    again = Events.hold_requested("V9", "elder", 90)
    out = events.feed(again)
    assert _types(out) == ["CreditsReserved"] and out[0].payload.minutes == 90
    assert app.balance("elder").held_minutes == 90
    assert events.feed(again) == []  # a copy of the same request: nothing new
    out = events.feed(Events.charged("V9", 80))
    assert [e.payload.minutes for e in out] == [80, 10]
    assert app.balance("elder").balance_minutes == 20
    assert app.trial_balance() == 0


def test_correction_reverses_an_earning_by_a_new_transfer(app, events):
    """Credits for a visit found not to have happened are taken back by a reversing transfer
    (the original stays); a second correction of the same transfer changes nothing; credits
    already given away cannot be taken back below zero."""
    events.feed(Events.verified("V1", "vol", 40))
    events.feed(Events.verified("V2", "vol", 30))
    reversal = app.correct("earn:V1", "visit disputed: elder was in hospital")
    assert reversal.amount == 40 and app.balance("vol").balance_minutes == 30
    assert app.correct("earn:V1", "again").id == reversal.id
    assert app.balance("vol").balance_minutes == 30
    app.give("vol", 30, None)
    with pytest.raises(LedgerError):
        app.correct("earn:V2", "disputed")
    events.feed(Events.verified("V3", "vol", 20))
    events.feed(Events.hold_requested("V9", "vol", 20))
    with pytest.raises(RuleError, match="pending"):
        app.correct("hold:V9", "a hold is released, not corrected")
    with pytest.raises(NotFound):
        app.correct("earn:nowhere", "x")


def test_daily_clearing_runs_once_per_day(app, events):
    """The host's periodic clearing names the run after yesterday: a second tick the same day
    settles nothing more."""
    _earned(app, events, minutes=100, area="a1")
    app.join("dad", "B")
    app.give("elder", 25, "dad")
    (settled,) = app.clear_yesterday()
    assert (settled.payer_bank_id, settled.payee_bank_id, settled.minutes) == ("A", "B", 25)
    app.give("elder", 5, "dad")
    assert app.clear_yesterday() == []
    assert {(p["bank_id"], p["posted_minutes"]) for p in app.positions()} == {
        ("A", 5), ("B", -5)}


def test_a_hold_request_can_only_hold_a_members_credits(app, events):
    """Naming a bank's own account (which may go negative) holds nothing of it: the id is taken
    as a person who has no credits."""
    _earned(app, events, minutes=50)
    out = events.feed(Events.hold_requested("V9", "bank:A:issued", 30))
    assert _types(out) == ["CreditsReservationRejected"]
    assert app.account_by_code("bank:A:issued").debits_pending == 0


def test_redemption_served_by_another_volunteer_pays_who_served(app, events):
    """Booked with one volunteer, served by another: the credits go to the one who served,
    and nothing is issued on top."""
    _earned(app, events, person="redeemer", minutes=100)
    events.feed(Events.scheduled("V5", "booked", "redeemer", 30))
    out = events.feed(Events.verified("V5", "stand-in", 30))
    assert _types(out) == ["CreditsRedeemed"]
    assert app.balance("stand-in").balance_minutes == 30
    assert app.balance("booked").balance_minutes == 0
    assert app.balance("redeemer").balance_minutes == 70
    assert sum(app.credit_totals().values()) == 100


def test_volunteer_booking_moved_to_a_paid_caregiver_is_held_for_the_reserve(app, events):
    """A volunteer redemption rescheduled to an employee: the ledger asks for the credits; the
    old hold is given back and the new one pays the reserve's books, not the volunteer."""
    _earned(app, events, person="redeemer", minutes=100)
    events.feed(Events.scheduled("V5", "helper", "redeemer", 40))
    out = events.feed(Events.hold_requested("V5", "redeemer", 40))
    assert _types(out) == ["CreditsReserved"] and app.hold_for("V5").kind == "ledger"
    events.feed(Events.charged("V5", 40))
    assert app.balance("helper").balance_minutes == 0
    assert app.balance("redeemer").balance_minutes == 60
    assert app.account_by_code("bank:A:reserve:redeemed").balance == 40


def test_credits_promised_to_unscheduled_orders_cannot_be_promised_again(app, events):
    """Two redemptions of 60 from 100 credits: the second is refused while the first order
    waits; once dispatch schedules it (its hold takes over) or it is cancelled or never
    scheduled, the promise is lifted."""
    _earned(app, events, person="vol", minutes=100)
    day = date(2026, 11, 25)
    first = app.redeem("vol", "mum", "cleaning", 60, day, "a1", redemption_id="R1",
                       beneficiary_birth_date=date(1950, 1, 1))
    with pytest.raises(RuleError, match="promised"):
        app.redeem("vol", "mum", "cleaning", 60, day, "a1", redemption_id="R2",
                   beneficiary_birth_date=date(1950, 1, 1))
    scheduled = Events.scheduled("V-R1", "helper", "mum", 60, account="member:A:vol")
    scheduled = scheduled.model_copy(update={"payload": scheduled.payload.model_copy(
        update={"order_id": first.order_id})})
    events.feed(scheduled)  # a volunteer takes it: the hold now carries the 60
    assert app.redemption("R1").state == "scheduled"
    assert app.balance("vol").held_minutes == 60
    with pytest.raises(RuleError):
        app.redeem("vol", "mum", "cleaning", 60, day, "a1", redemption_id="R2",
                   beneficiary_birth_date=date(1950, 1, 1))
    app.redeem("vol", "mum", "cleaning", 40, day, "a1", redemption_id="R3",
               beneficiary_birth_date=date(1950, 1, 1))
    app.cancel_redemption("R3", "not needed any more", by="vol")
    assert app.redemption("R3").state == "closed"
    (cancelled,) = [e for e in published(app, app.redemption("R3").id)
                    if e.type == "OrderCancelled"]
    assert (cancelled.topic, cancelled.payload.order_id) == ("homecare.orders", "tb-R3")
    app.redeem("vol", "mum", "cleaning", 40, day, "a1", redemption_id="R4",
               beneficiary_birth_date=date(1950, 1, 1))
    app.cancel_redemption("R1", "mum is in hospital", by="vol")  # scheduled: order withdrawn
    assert [e.type for e in published(app, first.id)][-1] == "OrderCancelled"
    assert app.drop_stale_redemptions(day) == []
    assert app.drop_stale_redemptions(day + timedelta(days=2)) == ["R4"]
    app.redeem("vol", "mum", "cleaning", 40, day, "a1", redemption_id="R5",
               beneficiary_birth_date=date(1950, 1, 1))
