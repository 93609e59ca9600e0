"""The ledger's personal data of an elder (entitlement facts) sealed with the elder's own key,
kept nowhere else, and what an erasure leaves: every account and total, nothing about the person.

Runs the real application and consumer on eventsourcing's in-memory store; the same sealing on
SQLite and PostgreSQL, over the broker, is tests/integration/test_erasure.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from contracts.events.visits import ElderErased
from services.ledger.application import LedgerApplication
from services.ledger.domain.books import ERASED_FACTS, ElderProfile
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.consumer import Outcome
from services.runtime.double_entry import LedgerError, Transfer
from services.runtime.personal import ERASED, MARK
from tests.integration.ledger.conftest import AREA, LedgerHarness, scheduled, verified

MONTH = "2026-11"  # the month of the conftest's visits
AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _app() -> LedgerApplication:
    # With the aggregate cache, as a ledger process may run: an erasure reaches cached profiles.
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo",
                                 "AGGREGATE_CACHE_MAXSIZE": "100"})
    app.register_elder("E-1", AREA, ElderFacts(birth_date=date(1935, 6, 1), dibao=True,
                                              disability_qualifies=True))
    app.register_elder("E-2", AREA, ElderFacts(birth_date=date(1930, 1, 1)))
    return app


def stored(app: LedgerApplication, aggregate_id: Any) -> list[dict[str, Any]]:
    """The stored state of every event of the aggregate (no store key in memory)."""
    return [json.loads(e.state) for e in app.recorder.select_events(aggregate_id)]


async def _charged(app: LedgerApplication) -> LedgerHarness:
    harness = LedgerHarness(app)
    for visit, minutes in (("V1", 60), ("V2", 45)):
        assert await harness.feed(scheduled(visit, 60)) is Outcome.PROCESSED
        assert await harness.feed(verified(visit, minutes)) is Outcome.PROCESSED
    return harness


def erased_event(elder: str = "E-1") -> ElderErased:
    return ElderErased(service_area_id=AREA, payload={
        "elder_id": elder, "erased_by": "admin:zhang", "erased_at": AT})


async def test_facts_and_grant_reasons_are_sealed_per_elder_in_the_stored_events():
    """ElderProfile.Registered and FactsChanged hold the facts sealed (no birth date, no 低保 in
    the stored state); the grant transfer says the category and rule set, never the facts; the
    application reads the facts back whole, and each elder has a key of their own."""
    app = _app()
    app.register_elder("E-1", AREA, ElderFacts(birth_date=date(1935, 6, 1), dibao=True,
                                              disability_qualifies=True, lives_locally=True,
                                              nursing_subsidy_minutes=30))
    await _charged(app)
    profile_id = ElderProfile.create_id("E-1")
    states = stored(app, profile_id)
    assert [set(s["facts"]) for s in states] == [{MARK}, {MARK}]
    assert states[1]["elder_id"] == "E-1"  # FactsChanged names whose facts they are
    text = json.dumps(states, ensure_ascii=False)
    assert "1935" not in text and "dibao" not in text
    grant = stored(app, Transfer.create_id(f"grant:E-1:{MONTH}"))[0]
    assert grant["reason"] == "monthly entitlement (high) [yiwu/2019]"
    assert app.get_profile("E-1").elder_facts().birth_date == date(1935, 6, 1)
    assert "低保" in app.balance("E-1", MONTH).entitlement_reason  # recomputed from the facts
    assert {"elder:E-1", "elder:E-2"} <= set(app.subject_keys.subjects())


async def test_erasure_keeps_every_total_and_hides_the_facts():
    """After erase_elder: the facts read "[erased]" (the stored events no longer open); the
    month's balance still shows what was granted and used (reason and
    category "erased"), the trial balance is unchanged and zero, the month closes; a month
    not granted before gets nothing; new facts for the erased elder are refused; E-2 intact."""
    app = _app()
    await _charged(app)
    before = app.trial_balance()
    balance_before = app.balance("E-1", MONTH)
    assert balance_before.entitlement_category == "high"

    profile = app.erase_elder("E-1", by="admin:zhang", at=AT)
    assert profile is not None and profile.erased and profile.erased_by == "admin:zhang"
    assert "elder:E-1" not in app.subject_keys.subjects()
    app.erase_elder("E-1", by="admin:zhang", at=AT)  # again: harmless

    again = app.get_profile("E-1")
    assert again.facts == ERASED_FACTS and again.erased_at == AT
    registered = next(e for e in app.events.get(again.id)
                      if type(e).__qualname__ == "ElderProfile.Registered")
    assert registered.facts == ERASED_FACTS
    assert app.trial_balance() == before and sum(before.values()) == 0
    balance = app.balance("E-1", MONTH)
    assert (balance.entitled_minutes, balance.used_minutes, balance.available_minutes) == (
        balance_before.entitled_minutes, 105, balance_before.available_minutes)
    assert (balance.entitlement_reason, balance.entitlement_category) == (ERASED, "erased")
    assert app.entitlement_for("E-1", "2026-12").minutes == 0
    assert [s["elder_id"] for s in app.statements(AREA, MONTH)[0]["lines"]] == ["E-1", "E-1"]
    app.close_month(AREA, MONTH, by="ops")
    assert sum(app.trial_balance().values()) == 0
    with pytest.raises(LedgerError, match="erased"):
        app.register_elder("E-1", AREA, ElderFacts(birth_date=date(1935, 6, 1)))
    assert app.get_profile("E-2").elder_facts().birth_date == date(1930, 1, 1)


async def test_the_consumer_erases_on_elder_erased_once():
    """ElderErased through the idempotent consumer records ElderProfile.Erased (who, when) and
    shreds the key; the same message again changes nothing; an elder the ledger never knew is
    no error."""
    app = _app()
    harness = await _charged(app)
    message = erased_event()
    assert await harness.feed(message) is Outcome.PROCESSED
    profile = app.get_profile("E-1")
    assert (profile.erased_by, profile.erased_at, profile.facts) == ("admin:zhang", AT,
                                                                     ERASED_FACTS)
    assert "elder:E-1" not in app.subject_keys.subjects()
    version = profile.version
    await harness.feed(message)
    assert app.get_profile("E-1").version == version
    assert await harness.feed(erased_event("E-404")) is Outcome.UNCHANGED
    assert sum(app.trial_balance().values()) == 0
