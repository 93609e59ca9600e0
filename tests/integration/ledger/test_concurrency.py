"""50 visits of one elder reserved at the same time against 8 hours: exactly the ones that fit."""

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts

from .conftest import scheduled

pytestmark = pytest.mark.integration


def test_fifty_concurrent_reservations_fund_exactly_eight_hours(persistence):
    """Eight writers race to reserve 50 one-hour visits for an elder entitled to 8 hours (E-2).
    Optimistic concurrency on the entitlement account makes losers retry: 8 are held in full,
    42 rejected, and the account is never overdrawn."""
    if persistence["PERSISTENCE_MODULE"].endswith("sqlite"):
        pytest.skip("concurrent writers are a PostgreSQL matter; SQLite serialises writers")
    setup = LedgerApplication(env=persistence)
    setup.register_elder("E-2", "A1", ElderFacts(birth_date=date(1950, 1, 1), dibao=True,
                                                 disability_qualifies=True))
    writers = [LedgerApplication(env=persistence) for _ in range(8)]
    try:
        def reserve(i: int) -> str:
            return writers[i % 8].reserve(scheduled(f"V{i:02d}", 60, elder="E-2")).state

        with ThreadPoolExecutor(max_workers=8) as pool:
            states = list(pool.map(reserve, range(50)))
        assert states.count("held") == 8 and states.count("rejected") == 42
        balance = setup.balance("E-2", "2026-11")
        assert (balance.held_minutes, balance.available_minutes) == (480, 0)
    finally:
        for app in [setup, *writers]:
            app.close()
