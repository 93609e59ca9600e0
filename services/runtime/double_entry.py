"""Double-entry bookkeeping in integer units, modelled on TigerBeetle's accounts and transfers.

Both the labor-hours ledger (minutes, fen) and the time bank (credit minutes) keep their books
this way, so the primitive lives once here. It is pure domain code: aggregates and rules, no I/O.

- An :class:`Account` keeps four running sums, as TigerBeetle does: debits and credits, each
  pending (held) and posted. Balances are never stored, only derived, so they cannot drift.
- A :class:`Transfer` moves an amount from one account (debit) to another (credit). It is either
  posted at once or pending (a hold, phase one), later posted (for at most the held amount; the
  rest is released) or voided (phase two). Transfers are immutable facts: a correction is a new
  reversing transfer, never an edit.
- Every transfer touches exactly two accounts with the same amount, so the sum of all balances is
  zero at all times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import stable_id


class LedgerError(ValueError):
    """A rule of the books would be broken; nothing was changed."""


class InsufficientFunds(LedgerError):
    """The debit would take an account below what it holds (e.g. entitlement below zero)."""


class TransferState(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class Account(Aggregate):
    """One account of the books; its id derives from its code (``elder:E1:entitlement:2026-11``)."""

    @staticmethod
    def create_id(code: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("account", code)

    @event("Opened")
    def __init__(
        self,
        code: str,
        unit: str = "minute",
        debits_must_not_exceed_credits: bool = False,
        credits_must_not_exceed_debits: bool = False,
        owner_id: str | None = None,
        kind: str = "",
    ) -> None:
        self.code = code
        self.unit = unit
        self.debits_must_not_exceed_credits = debits_must_not_exceed_credits
        self.credits_must_not_exceed_debits = credits_must_not_exceed_debits
        self.owner_id = owner_id
        self.kind = kind
        self.debits_pending = 0
        self.debits_posted = 0
        self.credits_pending = 0
        self.credits_posted = 0

    # Derived balances ------------------------------------------------------------------------
    @property
    def balance(self) -> int:
        """Posted credit balance (credits minus debits)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What may still be debited: posted credits less posted and held debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    def can_debit(self, amount: int) -> bool:
        return not self.debits_must_not_exceed_credits or amount <= self.available

    def can_credit(self, amount: int) -> bool:
        if not self.credits_must_not_exceed_debits:
            return True
        return self.credits_posted + self.credits_pending + amount <= self.debits_posted

    # Changes, only ever called through Transfer ----------------------------------------------
    @event("Changed")
    def _change(
        self,
        transfer_id: UUID,
        debits_pending: int = 0,
        debits_posted: int = 0,
        credits_pending: int = 0,
        credits_posted: int = 0,
    ) -> None:
        self.debits_pending += debits_pending
        self.debits_posted += debits_posted
        self.credits_pending += credits_pending
        self.credits_posted += credits_posted


@dataclass(frozen=True)
class TransferFacts:
    """Why a transfer happened: every posting names the visit and the event that caused it."""

    reason: str
    visit_id: str | None = None
    cause_event_id: str | None = None
    funding_source: str | None = None


class Transfer(Aggregate):
    """A movement between two accounts; its id is derived from its cause, so it happens once."""

    @staticmethod
    def create_id(key: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("transfer", key)

    @event("Created")
    def __init__(
        self,
        key: str,
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: int,
        pending: bool,
        reason: str,
        visit_id: str | None = None,
        cause_event_id: str | None = None,
        funding_source: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        self.key = key
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount = amount
        self.state = TransferState.PENDING if pending else TransferState.POSTED
        self.posted_amount = 0 if pending else amount
        self.reason = reason
        self.visit_id = visit_id
        self.cause_event_id = cause_event_id
        self.funding_source = funding_source
        self.expires_at = expires_at
        self.resolved_by: str | None = None

    @event("Posted")
    def _post(self, amount: int, cause_event_id: str | None) -> None:
        self.state = TransferState.POSTED
        self.posted_amount = amount
        self.resolved_by = cause_event_id

    @event("Voided")
    def _void(self, reason: str, cause_event_id: str | None) -> None:
        self.state = TransferState.VOIDED
        self.resolved_by = cause_event_id
        self.void_reason = reason


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError(f"amounts are integers, got {amount!r}")
    if amount <= 0:
        raise LedgerError(f"a transfer moves a positive amount, got {amount}")


def open_transfer(
    key: str,
    debit: Account,
    credit: Account,
    amount: int,
    *,
    pending: bool,
    facts: TransferFacts,
    expires_at: datetime | None = None,
) -> Transfer:
    """Create a transfer and apply it to both accounts, or raise and change nothing."""
    _check_amount(amount)
    if debit.id == credit.id:
        raise LedgerError("a transfer needs two different accounts")
    if debit.unit != credit.unit:
        raise LedgerError(f"cannot move {debit.unit} into an account kept in {credit.unit}")
    if not debit.can_debit(amount):
        raise InsufficientFunds(
            f"{debit.code} has {debit.available} {debit.unit}s available, {amount} needed"
        )
    if not credit.can_credit(amount):
        raise LedgerError(f"{credit.code} may not be credited beyond its debits")
    transfer = Transfer(
        key=key,
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount=amount,
        pending=pending,
        reason=facts.reason,
        visit_id=facts.visit_id,
        cause_event_id=facts.cause_event_id,
        funding_source=facts.funding_source,
        expires_at=expires_at,
    )
    if pending:
        debit._change(transfer_id=transfer.id, debits_pending=amount)
        credit._change(transfer_id=transfer.id, credits_pending=amount)
    else:
        debit._change(transfer_id=transfer.id, debits_posted=amount)
        credit._change(transfer_id=transfer.id, credits_posted=amount)
    return transfer


def post_pending(
    transfer: Transfer,
    debit: Account,
    credit: Account,
    amount: int,
    *,
    cause_event_id: str | None = None,
) -> None:
    """Phase two: post ``amount`` (at most what is held) and release the rest."""
    if transfer.state is not TransferState.PENDING:
        raise LedgerError(f"transfer {transfer.key} is {transfer.state}, not pending")
    if amount < 0 or amount > transfer.amount:
        raise LedgerError(
            f"cannot post {amount} against a hold of {transfer.amount}; a larger amount needs a "
            "second reservation"
        )
    held = transfer.amount
    debit._change(transfer_id=transfer.id, debits_pending=-held, debits_posted=amount)
    credit._change(transfer_id=transfer.id, credits_pending=-held, credits_posted=amount)
    transfer._post(amount=amount, cause_event_id=cause_event_id)


def void_pending(
    transfer: Transfer,
    debit: Account,
    credit: Account,
    *,
    reason: str,
    cause_event_id: str | None = None,
) -> None:
    """Phase two: release the whole hold."""
    if transfer.state is not TransferState.PENDING:
        raise LedgerError(f"transfer {transfer.key} is {transfer.state}, not pending")
    held = transfer.amount
    debit._change(transfer_id=transfer.id, debits_pending=-held)
    credit._change(transfer_id=transfer.id, credits_pending=-held)
    transfer._void(reason=reason, cause_event_id=cause_event_id)
