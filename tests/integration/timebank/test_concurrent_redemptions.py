"""100 concurrent redemptions of one balance on PostgreSQL: nobody spends a credit twice.

Each thread asks the application to hold 60 minutes of the same account for its own visit. The
account aggregate is versioned: when two holds read the same version, one save fails and that
command runs again on fresh state, so the held total never exceeds the balance.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from services.runtime.double_entry import InsufficientFunds, TransferFacts
from services.timebank.application import TimebankApplication
from services.timebank.domain.rules import EarningCaps, GiftLimits, RuleError, TimebankRules

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_app(postgres_server, postgres_env):
    schema = f"tb_{uuid.uuid4().hex[:10]}"
    with postgres_server.connect(postgres_env["POSTGRES_DBNAME"]) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", **postgres_env,
           "POSTGRES_SCHEMA": schema, "POSTGRES_POOL_SIZE": "10", "POSTGRES_MAX_OVERFLOW": "10"}
    app = TimebankApplication(env, rules=TimebankRules(
        caps=EarningCaps(per_day_minutes=None, balance_cap_minutes=None),
        gifts=GiftLimits(max_per_gift_minutes=60, max_per_month_minutes=100_000)))
    yield app
    app.close()


def test_hundred_concurrent_holds_never_spend_more_than_the_balance(pg_app):
    """Balance 630: ten holds of 60, one of the last 30, 89 rejections; nothing negative."""
    app = pg_app
    app.join("elder", "A")
    app._run(lambda books: books.transfer("seed", "bank:A:issued", "member:A:elder", 630,
                                          pending=False, facts=TransferFacts("seed")))
    expires = datetime.now(UTC) + timedelta(days=1)

    def redeem(i: int) -> int:
        return app.hold_for_visit(f"V{i}", "elder", 60, "A", expires).held_minutes

    with ThreadPoolExecutor(max_workers=100) as pool:
        held = list(pool.map(redeem, range(100)))
    assert sum(held) == 630
    assert sorted(held, reverse=True)[:11] == [60] * 10 + [30]
    assert held.count(0) == 89
    balance = app.balance("elder")
    assert (balance.balance_minutes, balance.held_minutes, balance.available_minutes) == (
        630, 630, 0)
    # The holds recorded agree with the account (read back from the store).
    stored = [app.hold_for(f"V{i}").held_minutes for i in range(100)]
    assert stored == held


def test_holds_and_gifts_racing_for_one_balance_spend_it_at_most_once(pg_app):
    """50 holds and 50 gifts of 60 minutes each race for 900 minutes: what was held plus what was
    given is exactly the balance, and every refused gift said why."""
    app = pg_app
    app.join("vol", "A")
    app.join("son", "A")
    app._run(lambda books: books.transfer("seed", "bank:A:issued", "member:A:vol", 900,
                                          pending=False, facts=TransferFacts("seed")))
    expires = datetime.now(UTC) + timedelta(days=1)
    retried_before = REGISTRY.get_sample_value("homecare_timebank_conflicts_retried_total")

    def spend(i: int) -> tuple[str, int]:
        if i % 2:
            return "held", app.hold_for_visit(f"V{i}", "vol", 60, "A", expires).held_minutes
        try:
            return "given", app.give("vol", 60, "son", gift_id=f"G{i}").minutes
        except (RuleError, InsufficientFunds):
            return "refused", 0

    with ThreadPoolExecutor(max_workers=100) as pool:
        outcomes = list(pool.map(spend, range(100)))
    spent = sum(minutes for _, minutes in outcomes)
    given = sum(m for kind, m in outcomes if kind == "given")
    assert spent == 900
    vol, son = app.balance("vol"), app.balance("son")
    assert (vol.available_minutes, vol.held_minutes) == (0, spent - given)
    assert son.balance_minutes == given
    retried = REGISTRY.get_sample_value("homecare_timebank_conflicts_retried_total")
    assert retried > retried_before  # they really did collide, and were run again


def test_hundred_concurrent_redemption_orders_never_promise_more_than_the_balance(pg_app):
    """100 members' app taps at once, each redeeming 60 of the same 630 minutes for a parent:
    ten orders are placed (600 promised), ninety are refused with the reason."""
    from datetime import date

    app = pg_app
    app.join("vol", "A")
    app.join("mum", "A", birth_date=date(1950, 1, 1))
    app._run(lambda books: books.transfer("seed", "bank:A:issued", "member:A:vol", 630,
                                          pending=False, facts=TransferFacts("seed")))

    def redeem(i: int) -> str:
        try:
            app.redeem("vol", "mum", "cleaning", 60, date(2026, 11, 25), "A",
                       redemption_id=f"R{i}")
            return "placed"
        except RuleError as refused:
            assert "promised" in str(refused)
            return "refused"

    with ThreadPoolExecutor(max_workers=100) as pool:
        outcomes = list(pool.map(redeem, range(100)))
    assert outcomes.count("placed") == 10 and outcomes.count("refused") == 90
    placed = [i for i, o in enumerate(outcomes) if o == "placed"]
    assert all(app.redemption(f"R{i}").state == "placed" for i in placed)
    assert app.balance("vol").available_minutes == 630  # promised, not yet held
