"""Blacklisted providers, reversals, month closing, statements and the civil-affairs summary."""

from datetime import UTC, datetime

import pytest

from services.ledger.application import MonthClosed
from services.ledger.domain.books import entitlement_account, provider_payable_account
from services.runtime.double_entry import LedgerError

from .conftest import AREA, scheduled, verified

pytestmark = pytest.mark.integration
OCT = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)


async def test_a_blacklisted_providers_charge_is_blocked_then_posted_on_reinstatement(ledger):
    """Postings to a blacklisted provider are refused and shown as blocked, not lost; when the
    provider is reinstated they are posted and announced."""
    ledger.app.blacklist_provider("P-1", "falsified visit records")
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 50))
    charge = ledger.app.charge_for("V1")
    assert charge.blocked and charge.transfer_ids == []
    assert ledger.app.account_by_code(provider_payable_account("P-1", AREA)).balance == 0
    assert [c.visit_id for c in ledger.app.blocked_charges("P-1")] == ["V1"]
    assert ledger.published("VisitCharged") == []
    ledger.app.reinstate_provider("P-1", "appeal upheld")
    assert ledger.app.account_by_code(provider_payable_account("P-1", AREA)).balance == 50
    assert ledger.app.blocked_charges("P-1") == []
    assert ledger.published("VisitCharged")[0].payload.charged_minutes == 50


async def test_a_reversal_is_a_new_posting_and_restores_the_entitlement(ledger):
    """Correcting a charge posts reversing transfers; the original postings stay as they were."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 60))
    before = len(ledger.app.postings(entitlement_account("E-1", "2026-11")))
    ledger.app.reverse_charge("V1", "visit did not take place", "auditor-1")
    postings = ledger.app.postings(entitlement_account("E-1", "2026-11"))
    assert len(postings) == before + 1
    assert ledger.app.balance("E-1", "2026-11").available_minutes == 240
    with pytest.raises(LedgerError, match="reversed already"):
        ledger.app.reverse_charge("V1", "again", "auditor-1")
    assert ledger.app.trial_balance() == {"minute": 0}


async def test_closing_a_month_fixes_its_statements_and_lapses_unused_entitlement(ledger):
    """October closed: statement per provider at the contracted rate; E-1's unused October
    entitlement lapses back to the city; a late October visit goes on November's statement."""
    await ledger.feed(scheduled("V1", 60, start=OCT))
    await ledger.feed(verified("V1", 60, start=OCT))
    await ledger.feed(scheduled("V2", 30, elder="E-2", start=OCT, provider="P-2"))
    await ledger.feed(verified("V2", 30, elder="E-2", start=OCT, provider="P-2"))
    await ledger.feed(scheduled("V3", 60, start=OCT))  # not verified before the close
    closed = ledger.app.close_month(AREA, "2026-10", "finance-1")
    by_provider = {s["provider_id"]: s for s in closed.statements}
    assert by_provider["P-1"]["minutes"] == 60 and by_provider["P-1"]["amount_fen"] == 3000
    assert by_provider["P-2"]["amount_fen"] == 1500
    # E-1: 240 - 60 used - 60 held = 120 lapse; E-2: 480 - 30 = 450; E-3 never opened October.
    assert closed.lapsed_minutes == 120 + 450
    # The sub-district's settlement with each provider is posted in fen.
    settled = ledger.app.account_by_code(f"provider:P-1:settled:{AREA}")
    assert (settled.unit, settled.balance) == ("fen", 3000)
    assert ledger.app.trial_balance()["fen"] == 0
    with pytest.raises(MonthClosed):
        ledger.app.close_month(AREA, "2026-10", "finance-1")

    await ledger.feed(verified("V3", 45, start=OCT))  # late: carried by November
    late = ledger.app.charge_for("V3")
    assert (late.service_month, late.charged_month) == ("2026-10", "2026-11")
    assert ledger.app.statements(AREA, "2026-10") == closed.statements
    november = ledger.app.statements(AREA, "2026-11")
    assert [line["visit_id"] for line in november[0]["lines"]] == ["V3"]
    assert ledger.app.trial_balance() == {"minute": 0, "fen": 0}


async def test_civil_affairs_summary_reports_use_by_category_and_who_used_nothing(ledger):
    """Entitled elders by category with their utilisation, and those who used nothing."""
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 60))
    summary = ledger.app.civil_affairs_summary(AREA, "2026-11")
    assert summary["by_category"]["low"]["elders"] == 2  # E-1 and E-3 (aged 90+)
    assert summary["by_category"]["low"]["used_minutes"] == 60
    assert summary["by_category"]["high"]["utilisation_percent"] == 0
    assert summary["entitled_elders_who_used_nothing"] == ["E-2", "E-3"]


async def test_elder_history_lists_every_posting_with_its_cause(ledger):
    """The elder's history names the visit and the event behind each charge posting."""
    await ledger.feed(scheduled("V1", 60))
    event = verified("V1", 55)
    await ledger.feed(event)
    rows = ledger.app.history("E-1")
    charge_rows = [t for _, t in rows if t.visit_id == "V1" and t.state == "posted"]
    assert charge_rows and charge_rows[0].resolved_by == str(event.event_id)
    assert any("monthly entitlement" in t.reason for _, t in rows)
