"""Double-entry primitives: every transfer balances, limits hold, two-phase holds resolve once."""

import pytest

from services.runtime.double_entry import (
    Account,
    InsufficientFunds,
    LedgerError,
    TransferFacts,
    TransferState,
    open_transfer,
    post_pending,
    void_pending,
)

FACTS = TransferFacts(reason="test", visit_id="V-1", cause_event_id="ev-1")


def _accounts() -> tuple[Account, Account, Account]:
    fund = Account(code="funding:city:test")
    elder = Account(code="elder:E:entitlement:2026-11", debits_must_not_exceed_credits=True)
    provider = Account(code="provider:P:payable:A")
    return fund, elder, provider


def test_posted_transfer_moves_the_amount_and_balances_sum_to_zero():
    """A posted transfer debits one account and credits the other by the same amount."""
    fund, elder, provider = _accounts()
    open_transfer("grant", fund, elder, 480, pending=False, facts=FACTS)
    open_transfer("charge", elder, provider, 60, pending=False, facts=FACTS)
    assert (fund.balance, elder.balance, provider.balance) == (-480, 420, 60)
    assert fund.balance + elder.balance + provider.balance == 0


def test_entitlement_never_goes_negative():
    """An account that may not be overdrawn refuses a debit beyond its balance; nothing changes."""
    fund, elder, provider = _accounts()
    open_transfer("grant", fund, elder, 30, pending=False, facts=FACTS)
    with pytest.raises(InsufficientFunds, match="30 minutes available, 31 needed"):
        open_transfer("charge", elder, provider, 31, pending=False, facts=FACTS)
    assert elder.balance == 30 and provider.balance == 0


def test_pending_hold_counts_against_available_and_posts_at_most_the_hold():
    """A hold reduces what is available; posting less releases the rest; posting more is refused."""
    fund, elder, provider = _accounts()
    open_transfer("grant", fund, elder, 120, pending=False, facts=FACTS)
    hold = open_transfer("hold", elder, provider, 90, pending=True, facts=FACTS)
    assert elder.available == 30 and elder.balance == 120
    with pytest.raises(LedgerError, match="second reservation"):
        post_pending(hold, elder, provider, 91)
    post_pending(hold, elder, provider, 75)
    assert hold.state is TransferState.POSTED
    assert (elder.balance, elder.available, elder.debits_pending) == (45, 45, 0)
    assert provider.balance == 75 and provider.credits_pending == 0


def test_void_releases_the_whole_hold_and_cannot_be_repeated():
    """Voiding a hold gives everything back; a resolved hold cannot be resolved again."""
    fund, elder, provider = _accounts()
    open_transfer("grant", fund, elder, 60, pending=False, facts=FACTS)
    hold = open_transfer("hold", elder, provider, 60, pending=True, facts=FACTS)
    void_pending(hold, elder, provider, reason="cancelled")
    assert elder.available == 60 and provider.credits_pending == 0
    with pytest.raises(LedgerError, match="not pending"):
        void_pending(hold, elder, provider, reason="again")


@pytest.mark.parametrize("amount", [0, -5, 1.5, True])
def test_amounts_are_positive_integers(amount):
    """Ledgers count in integers only; zero, negative, float or bool amounts are refused."""
    fund, elder, _ = _accounts()
    with pytest.raises(LedgerError):
        open_transfer("bad", fund, elder, amount, pending=False, facts=FACTS)


def test_transfer_id_is_derived_from_its_key():
    """The same cause yields the same transfer id, which is what makes redelivery collide."""
    fund, elder, _ = _accounts()
    first = open_transfer("charge:V-1", fund, elder, 5, pending=False, facts=FACTS)
    fund2, elder2, _ = _accounts()
    second = open_transfer("charge:V-1", fund2, elder2, 5, pending=False, facts=FACTS)
    assert first.id == second.id
