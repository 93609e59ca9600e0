"""Property-based: whatever happens (service, gifts, holds, charges, cancellations, grants,
lapses, clearing), credits = verified volunteer minutes x multipliers (capped) + grants - lapses,
across banks always, and per bank plus exactly what clearing settled between the banks (from an
independent model of the cross-bank flows); no balance goes negative."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.runtime.double_entry import LedgerError
from services.timebank.domain.rules import (
    NANJING_LIKE,
    EarningCaps,
    GiftLimits,
    RuleError,
)

from .conftest import START, Events, make_app

PEOPLE = {"p0": "A", "p1": "A", "p2": "B", "p3": "B", "p4": "C"}
AREA_OF_BANK = {"A": "a1", "B": "b1", "C": "c1"}
DAY_CAP = 120

person = st.sampled_from(sorted(PEOPLE))
bank = st.sampled_from(sorted(AREA_OF_BANK))
operation = st.one_of(
    st.tuples(st.just("serve"), person, st.integers(0, 150), st.sampled_from(
        ["cleaning", "bathing"]), st.integers(0, 2), st.booleans(), bank),
    st.tuples(st.just("grant"), bank, st.integers(1, 500)),
    st.tuples(st.just("lapse"), person, st.integers(1, 100)),
    st.tuples(st.just("gift"), person, st.one_of(person, st.none()), st.integers(1, 100)),
    st.tuples(st.just("hold"), person, st.integers(1, 200), bank,
              st.sampled_from(["charge", "cancel", "expire", "leave"]), st.integers(0, 200)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25))
def test_credits_are_conserved_and_never_negative(operations):
    """The books balance by construction; this checks the business totals against an
    independent model of what should have been created and destroyed."""
    app = make_app(multipliers=NANJING_LIKE,
                   caps=EarningCaps(per_day_minutes=DAY_CAP, balance_cap_minutes=300),
                   gifts=GiftLimits(max_per_gift_minutes=80, max_per_month_minutes=10_000),
                   bilateral_limit_minutes=250)
    events = Events(app)
    created: dict[str, int] = defaultdict(int)  # per bank: earned + grants - lapses
    day_total: dict[tuple[str, int], int] = defaultdict(int)
    for p, b in PEOPLE.items():
        app.join(p, b, birth_date=date(1950, 1, 1))
        # Everyone starts with a morning's service, so gifts and holds have credits to move.
        events.feed(Events.verified(f"start-{p}", p, 100, area=AREA_OF_BANK[b],
                                    start=START - timedelta(days=1)))
        created[b] += 100
    # Credits one bank's members moved into another bank since the last clearing, and what
    # clearing then moved between the banks' books.
    unsettled: dict[tuple[str, str], int] = defaultdict(int)
    settled: dict[str, int] = defaultdict(int)

    def clear(period: str) -> None:
        before = sum(app.credit_totals().values())
        app.clear(period)
        assert all(p["posted_minutes"] == 0 for p in app.positions())
        for a, b in {tuple(sorted(pair)) for pair in unsettled}:
            net = unsettled.pop((a, b), 0) - unsettled.pop((b, a), 0)
            settled[a] -= net
            settled[b] += net
        # Per bank: what was created there, moved by clearing (credits in flight stay in the
        # books of the member's bank until then); across banks, clearing changes nothing.
        totals = app.credit_totals()
        assert sum(totals.values()) == before
        for b in AREA_OF_BANK:
            assert totals.get(b, 0) == created[b] + settled[b], b

    for n, op in enumerate([*operations, ("clear",)]):  # always a clearing at the end
        kind = op[0]
        if kind == "serve":
            _, who, minutes, service, day, confirmed, where = op
            permille = 2000 if service == "bathing" else 1000
            events.feed(Events.verified(
                f"V{n}", who, minutes, area=AREA_OF_BANK[where], service=service,
                confirmation="elder_code" if confirmed else "none",
                start=START + timedelta(days=day)))
            if confirmed:
                credit = min(minutes * permille // 1000, DAY_CAP - day_total[who, day])
                day_total[who, day] += credit
                created[PEOPLE[who]] += credit
        elif kind == "grant":
            app.grant(op[1], op[2], f"g{n}")
            created[op[1]] += op[2]
        elif kind == "lapse":
            try:
                app.lapse(op[1], op[2], "test", f"l{n}")
                created[PEOPLE[op[1]]] -= op[2]
            except LedgerError:
                pass  # more than available: nothing lapses
        elif kind == "gift":
            with contextlib.suppress(RuleError, LedgerError):  # a refused gift changes nothing
                app.give(op[1], op[3], op[2], gift_id=f"G{n}")
                if op[2] is not None and PEOPLE[op[1]] != PEOPLE[op[2]]:
                    unsettled[PEOPLE[op[1]], PEOPLE[op[2]]] += op[3]
        elif kind == "hold":
            _, who, minutes, where, then, charged = op
            area = AREA_OF_BANK[where]
            answer = events.feed(Events.hold_requested(f"H{n}", who, minutes, area=area))
            held = answer[0].payload.minutes if answer[0].type == "CreditsReserved" else 0
            if then == "charge":
                events.feed(Events.charged(f"H{n}", charged, area=area))
                if PEOPLE[who] != where:
                    unsettled[PEOPLE[who], where] += min(charged, held)
            elif then == "cancel":
                events.feed(Events.cancelled(f"H{n}", area=area))
            elif then == "expire":
                app.expire_holds(START + timedelta(days=30))
        else:
            clear(f"period-{n}")

        for p in PEOPLE:
            balance = app.balance(p)
            assert balance.balance_minutes >= 0 and balance.available_minutes >= 0
    assert sum(app.credit_totals().values()) == sum(created.values())
    assert app.trial_balance() == 0
