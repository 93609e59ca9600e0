"""Time credits (时间银行): accounts, members and the records of what happened to credits.

Every movement of credits is a double-entry transfer (services/runtime/double_entry.py); the
aggregates here are the records a person asks about (an earning, a hold, a gift, a redemption,
a settlement between banks). Account codes carry the bank (one bank per district):

- ``member:<bank>:<person>``: a volunteer's or elder's credits (never below zero);
- ``bank:<bank>:issued``: where earned credits come from (its negative balance is what the
  bank has issued); ``bank:<bank>:grants`` funds the reserve; ``bank:<bank>:lapsed`` takes
  credits that lapse;
- ``bank:<bank>:community_fund``: donations (gifts and what earning above the cap would add);
- ``bank:<bank>:reserve``: the guarantee fund (储备机制), in minutes of paid care it can buy;
  ``bank:<bank>:reserve:redeemed`` takes credits redeemed for care by paid caregivers and
  ``bank:<bank>:reserve:paid_out`` what the reserve paid for them;
- ``bank:<bank>:clearing:<other>``: what this bank owes ``other`` (通存通兑) until clearing.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import stable_id

# Accounts whose balance is credits someone holds (all others are sources or sinks).
SOURCE_KINDS = frozenset({"issuance", "grants", "lapsed"})


def member_account(bank_id: str, person_id: str) -> str:
    return f"member:{bank_id}:{person_id}"


def issuance_account(bank_id: str) -> str:
    """Where credits come from: the bank's liability to its members."""
    return f"bank:{bank_id}:issued"


def grants_account(bank_id: str) -> str:
    return f"bank:{bank_id}:grants"


def lapsed_account(bank_id: str) -> str:
    return f"bank:{bank_id}:lapsed"


def community_fund_account(bank_id: str) -> str:
    return f"bank:{bank_id}:community_fund"


def reserve_account(bank_id: str) -> str:
    return f"bank:{bank_id}:reserve"


def redeemed_account(bank_id: str) -> str:
    return f"bank:{bank_id}:reserve:redeemed"


def reserve_paid_account(bank_id: str) -> str:
    return f"bank:{bank_id}:reserve:paid_out"


def clearing_account(bank_id: str, other_bank_id: str) -> str:
    return f"bank:{bank_id}:clearing:{other_bank_id}"


# How each account is opened: (kind, debits may not exceed credits).
def account_opening(code: str) -> dict[str, Any]:
    parts = code.split(":")
    if parts[0] == "member":
        return {"kind": "member", "debits_must_not_exceed_credits": True,
                "owner_id": ":".join(parts[2:])}
    kinds = {"issued": "issuance", "grants": "grants", "lapsed": "lapsed",
             "community_fund": "community_fund", "reserve": "reserve", "clearing": "clearing"}
    kind = kinds.get(parts[2], parts[2]) if len(parts) > 2 else "other"
    if parts[2:4] == ["reserve", "redeemed"]:
        kind = "redeemed"
    elif parts[2:4] == ["reserve", "paid_out"]:
        kind = "reserve_paid"
    # The community fund gives only what it has; the reserve may be overdrawn (the ledger has
    # already paid the provider), which the liability query shows as a shortfall.
    return {"kind": kind, "debits_must_not_exceed_credits": kind == "community_fund",
            "owner_id": parts[1]}


def bank_of_account(code: str) -> str:
    return code.split(":")[1]


class Member(Aggregate):
    """A person with a time-bank account: volunteer, elder, relative (any person id).

    Birth date, hardship and display name are personal data: the application seals them with
    the person's own key, which an erasure deletes (they then read as None, False and
    "[erased]")."""

    @staticmethod
    def create_id(person_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-member", person_id)

    @event("Joined")
    def __init__(self, person_id: str, bank_id: str, birth_date: date | None = None,
                 hardship: bool = False, display_name: str | None = None) -> None:
        self.person_id = person_id
        self.bank_id = bank_id
        self.account_code = member_account(bank_id, person_id)
        self.birth_date = birth_date
        self.hardship = hardship
        self.display_name = display_name
        self.erased_at: datetime | None = None
        self.erased_by: str | None = None

    @event("DetailsChanged")
    def change_details(self, birth_date: date | None, hardship: bool,
                       display_name: str | None, person_id: str | None = None) -> None:
        # person_id: the event names whose details these are, so they are sealed with that
        # person's key (None in events stored before details were sealed).
        self.birth_date = birth_date
        self.hardship = hardship
        self.display_name = display_name

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    @event("Erased")
    def erase(self, by: str, at: datetime) -> None:
        """The person's details erased on request: who and when, nothing about the person.
        The account and every transfer stay (balances are kept under the id)."""
        self.erased_at, self.erased_by = at, by
        self.birth_date, self.hardship, self.display_name = None, False, "[erased]"


class Tally(Aggregate):
    """A running total under a key (minutes earned by a person on a day, gifted in a month).
    Being an aggregate, concurrent additions conflict and are retried, so caps hold."""

    @staticmethod
    def create_id(key: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-tally", key)

    @event("Opened")
    def __init__(self, key: str) -> None:
        self.key = key
        self.total = 0

    @event("Added")
    def add(self, minutes: int, ref: str) -> None:
        self.total += minutes


class Earning(Aggregate):
    """Credits earned (or refused, with the reason) for one verified visit, at most once."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("earning", visit_id)

    @event("Recorded")
    def __init__(self, visit_id: str, volunteer_id: str, account_code: str, service_area_id: str,
                 served_minutes: int, credited_minutes: int, multiplier_permille: int,
                 balance_after_minutes: int, cause_event_id: str, correlation_id: str,
                 bank_id: str = "", service_type: str = "", confirmation: str = "",
                 rule_version: str = "", donated_minutes: int = 0,
                 not_credited_minutes: int = 0, reason: str = "ok") -> None:
        self.visit_id = visit_id
        self.volunteer_id = volunteer_id
        self.account_code = account_code
        self.service_area_id = service_area_id
        self.served_minutes = served_minutes
        self.credited_minutes = credited_minutes
        self.multiplier_permille = multiplier_permille
        self.balance_after_minutes = balance_after_minutes
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.bank_id = bank_id
        self.service_type = service_type
        self.confirmation = confirmation
        self.rule_version = rule_version
        self.donated_minutes = donated_minutes
        self.not_credited_minutes = not_credited_minutes
        self.reason = reason


class Hold(Aggregate):
    """Credits held for one visit (a pending transfer), then redeemed or released.

    ``kind`` is ``ledger`` when the ledger asked for the hold (a paid caregiver serves; the
    reserve pays) and ``volunteer`` when a volunteer serves (credits go to the volunteer).
    A hold of nothing is a rejection: ``held_minutes == 0`` and ``reason`` says why.
    """

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-hold", visit_id)

    @event("Opened")
    def __init__(self, visit_id: str, kind: str, account_code: str, requested_minutes: int,
                 held_minutes: int, available_minutes: int, reason: str, transfer_key: str,
                 credit_code: str, visit_bank_id: str, expires_at: datetime,
                 service_area_id: str, cause_event_id: str, correlation_id: str,
                 volunteer_id: str | None = None) -> None:
        self.visit_id = visit_id
        self.kind = kind
        self.account_code = account_code
        self.requested_minutes = requested_minutes
        self.held_minutes = held_minutes
        self.available_minutes = available_minutes
        self.reason = reason
        self.transfer_key = transfer_key
        self.credit_code = credit_code
        self.visit_bank_id = visit_bank_id
        self.expires_at = expires_at
        self.service_area_id = service_area_id
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.volunteer_id = volunteer_id
        self.state = "held" if held_minutes > 0 else "rejected"
        self.redeemed_minutes = 0
        self.released_minutes = 0

    @property
    def reservation_id(self) -> str:
        return str(self.id)

    @event("Renewed")
    def renew(self, requested_minutes: int, held_minutes: int, available_minutes: int,
              reason: str, transfer_key: str, expires_at: datetime, cause_event_id: str,
              correlation_id: str, kind: str | None = None,
              credit_code: str | None = None) -> None:
        """The ledger asked again for the same visit (it was rescheduled): the old hold was
        voided in the same unit of work and this is the new answer."""
        self.requested_minutes = requested_minutes
        self.held_minutes = held_minutes
        self.available_minutes = available_minutes
        self.reason = reason
        self.transfer_key = transfer_key
        self.expires_at = expires_at
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.state = "held" if held_minutes > 0 else "rejected"
        self.redeemed_minutes = 0
        self.released_minutes = 0
        self.renewals = getattr(self, "renewals", 0) + 1
        if kind is not None:  # a volunteer's visit given to a paid caregiver: the ledger asks
            self.kind = kind
            self.volunteer_id = None
        if credit_code is not None:
            self.credit_code = credit_code

    @event("Redeemed")
    def redeem(self, minutes: int, released_minutes: int, cause_event_id: str,
               correlation_id: str, paid_to: str) -> None:
        self.state = "redeemed"
        self.redeemed_minutes = minutes
        self.released_minutes = released_minutes
        self.paid_to = paid_to
        self.resolved_cause = cause_event_id
        self.resolved_correlation = correlation_id

    @event("Released")
    def release(self, reason: str, cause_event_id: str, correlation_id: str) -> None:
        self.state = "released"
        self.released_minutes = self.held_minutes
        self.release_reason = reason
        self.resolved_cause = cause_event_id
        self.resolved_correlation = correlation_id


class Gift(Aggregate):
    """Credits given to a relative or donated to the community fund (the record of a gift)."""

    @staticmethod
    def create_id(gift_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-gift", gift_id)

    @event("Given")
    def __init__(self, gift_id: str, from_person: str, from_account: str, to_person: str | None,
                 to_account: str, minutes: int, note: str | None, service_area_id: str,
                 correlation_id: str) -> None:
        self.gift_id = gift_id
        self.from_person = from_person
        self.from_account = from_account
        self.to_person = to_person
        self.to_account = to_account
        self.minutes = minutes
        self.note = note
        self.service_area_id = service_area_id
        self.correlation_id = correlation_id


class Redemption(Aggregate):
    """A member asked for care paid with credits: an order placed in dispatch."""

    @staticmethod
    def create_id(redemption_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-redemption", redemption_id)

    @event("Placed")
    def __init__(self, redemption_id: str, order_id: str, redeemer_id: str, account_code: str,
                 elder_id: str, service_type: str, minutes: int, requested_date: date,
                 service_area_id: str, correlation_id: str, notes: str | None = None) -> None:
        self.redemption_id = redemption_id
        self.order_id = order_id
        self.redeemer_id = redeemer_id
        self.account_code = account_code
        self.elder_id = elder_id
        self.service_type = service_type
        self.minutes = minutes
        self.requested_date = requested_date
        self.service_area_id = service_area_id
        self.correlation_id = correlation_id
        self.notes = notes
        self.state = "placed"  # earmarked until dispatch schedules it (or it is dropped)
        self.visit_id: str | None = None

    @event("Scheduled")
    def schedule(self, visit_id: str) -> None:
        self.state = "scheduled"  # from now on the visit's hold carries the credits
        self.visit_id = visit_id

    @event("Closed")
    def close(self, reason: str, cancelled_by: str | None = None) -> None:
        """No longer waiting for dispatch: cancelled by the member (the time bank withdraws
        its order) or never scheduled."""
        self.state = "closed"
        self.close_reason = reason
        self.cancelled_by = cancelled_by


class Settlement(Aggregate):
    """One clearing between two banks: the net position moved and both positions reset."""

    @staticmethod
    def create_id(period: str, payer_bank_id: str, payee_bank_id: str,  # type: ignore[override]
                  **_: object) -> UUID:
        return stable_id("timebank-settlement", period, *sorted((payer_bank_id, payee_bank_id)))

    @event("Recorded")
    def __init__(self, period: str, payer_bank_id: str, payee_bank_id: str, minutes: int,
                 transfer_key: str, correlation_id: str) -> None:
        self.period = period
        self.payer_bank_id = payer_bank_id
        self.payee_bank_id = payee_bank_id
        self.minutes = minutes
        self.transfer_key = transfer_key
        self.correlation_id = correlation_id
