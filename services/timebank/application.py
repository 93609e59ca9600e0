"""Time bank (时间银行): accounts, earning, holds for visits, gifts, redemption, the reserve and
federation between banks (commands, queries, the consumer policy and the outbox translation).

Every movement of credits is a double-entry transfer. Commands load what they change, apply the
rules and save all of it at once; a concurrent change of the same account makes the save fail on
the aggregate's version (optimistic concurrency), and the command is run again on fresh state,
so a balance is never spent twice.
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError
from prometheus_client import Counter, Gauge

from contracts.envelope import IntegrationEvent
from contracts.events.funding import (
    CreditsEarned,
    CreditsGifted,
    CreditsHoldRequested,
    CreditsRedeemed,
    CreditsReleased,
    CreditsReservationRejected,
    CreditsReserved,
    CreditsSettled,
    ReservationRejected,
    ReservationReleased,
    VisitCharged,
)
from contracts.events.orders import OrderCancelled, OrderPlaced
from contracts.events.visits import (
    ElderErased,
    VisitCancelled,
    VisitRescheduled,
    VisitScheduled,
    VisitVerified,
)
from contracts.topics import FUNDING, VISITS
from contracts.values import CaregiverKind, FundingSource
from services.runtime.double_entry import (
    Account,
    Transfer,
    TransferFacts,
    TransferState,
    open_transfer,
    post_pending,
    void_pending,
)
from services.runtime.eventstore import ServiceApplication
from services.runtime.outbox import integration_event_id
from services.runtime.personal import PersonalFields
from services.runtime.readmodel import FollowingReadModel
from services.timebank.domain.credits import (
    SOURCE_KINDS,
    Earning,
    Gift,
    Hold,
    Member,
    Redemption,
    Settlement,
    Tally,
    account_opening,
    bank_of_account,
    clearing_account,
    community_fund_account,
    grants_account,
    issuance_account,
    lapsed_account,
    redeemed_account,
    reserve_account,
    reserve_paid_account,
)
from services.timebank.domain.rules import (
    RuleError,
    TimebankRules,
    assess_earning,
    confirmation_refusal,
)
from services.timebank.domain.tasks import VolunteerTask

T = TypeVar("T")

LIABILITY_RATIO = Gauge(
    "homecare_timebank_liability_ratio",
    "Credits outstanding per minute the bank can honour (reserve + monthly volunteer capacity)",
    ["bank"],
)
RESERVE_MINUTES = Gauge(
    "homecare_timebank_reserve_minutes", "Minutes of paid care the reserve can still fund",
    ["bank"],
)


CONFLICTS_RETRIED = Counter(
    "homecare_timebank_conflicts_retried_total",
    "Commands run again because another writer changed the same account first",
)


class NotFound(LookupError):
    pass


@dataclass
class CreditBalance:
    person_id: str
    bank_id: str
    account: str
    balance_minutes: int
    held_minutes: int
    available_minutes: int
    earned_minutes: int

    @property
    def volunteer_id(self) -> str:  # the name the first version used
        return self.person_id


@dataclass
class Liability:
    bank_id: str
    outstanding_minutes: int  # credits members and the community fund hold
    held_minutes: int
    reserve_minutes: int  # paid care the reserve can still fund
    volunteer_capacity_minutes: int  # credits earned in the last 30 days: service the bank sees
    liability_ratio: float | None  # outstanding / (reserve + capacity)
    reserve_paid_last_30d: int
    grants_last_30d: int
    reserve_burn_per_day: float  # paid out per day, last 30 days
    days_until_reserve_short: float | None  # at that rate, from what is left
    reserve_short_on: str | None


class _Books:
    """The aggregates one unit of work touches, each loaded once."""

    def __init__(self, app: TimebankApplication) -> None:
        self.app = app
        self.loaded: dict[UUID, Any] = {}
        self.changed: dict[UUID, Any] = {}

    def account(self, code: str) -> Account:
        account_id = Account.create_id(code)
        if account_id not in self.loaded:
            found = self.app.get_or_none(account_id)
            self.loaded[account_id] = found or Account(code=code, **account_opening(code))
        return self.loaded[account_id]

    def get(self, aggregate_id: UUID) -> Any:
        if aggregate_id not in self.loaded:
            self.loaded[aggregate_id] = self.app.get_or_none(aggregate_id)
        return self.loaded[aggregate_id]

    def add(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            self.loaded[aggregate.id] = aggregate
            self.changed[aggregate.id] = aggregate

    def aggregates(self) -> list[Any]:
        # Accounts change through transfers: save every loaded one with pending events.
        touched = [a for a in self.loaded.values()
                   if a is not None and a.id not in self.changed and a.pending_events]
        return [*self.changed.values(), *touched]

    def transfer(self, key: str, debit_code: str, credit_code: str, amount: int, *,
                 pending: bool, facts: TransferFacts,
                 expires_at: datetime | None = None) -> Transfer:
        transfer = open_transfer(key, self.account(debit_code), self.account(credit_code),
                                 amount, pending=pending, facts=facts, expires_at=expires_at)
        self.add(transfer)
        return transfer


# Personal data, sealed per person (crypto-shredded on erasure): a member's birth date, hardship
# (a poor family's flag) and display name; elders join with their name, volunteers are persons too.
# After erasure the birth date reads as unknown and hardship as not claimed, so the age rule
# refuses to redeem for the person rather than guess.
MEMBER_PII = ("birth_date", "hardship", "display_name")
MEMBER_ERASED_AS = (("birth_date", None), ("hardship", False))
PERSONAL_DATA: dict[type | str, PersonalFields] = {
    Member.Joined: PersonalFields(  # type: ignore[attr-defined]
        "person_id", MEMBER_PII, kind="person", erased_as=MEMBER_ERASED_AS),
    Member.DetailsChanged: PersonalFields(  # type: ignore[attr-defined]
        "person_id", MEMBER_PII, kind="person", erased_as=MEMBER_ERASED_AS),
}


# The events the read model (_index) acts on; the others are not decoded to follow the log.
INDEXED_EVENTS = frozenset({
    "Transfer.Created", "Account.Opened", "Hold.Opened", "Hold.Renewed", "Hold.Redeemed",
    "Hold.Released", "Earning.Recorded", "Redemption.Placed", "Redemption.Scheduled",
    "Redemption.Closed", "VolunteerTask.Assigned", "VolunteerTask.Moved"})


class TimebankApplication(ServiceApplication):
    name = "Timebank"
    personal_data = PERSONAL_DATA
    subscriptions: dict[str, set[str]] = {
        VISITS: {"VisitScheduled", "VisitRescheduled", "VisitVerified", "VisitCancelled",
                 "ElderErased"},
        FUNDING: {"CreditsHoldRequested", "VisitCharged", "ReservationRejected",
                  "ReservationReleased"},
    }

    def __init__(self, env: dict[str, str] | None = None, rules: TimebankRules | None = None,
                 timezone: str = "Asia/Shanghai") -> None:
        super().__init__(env)
        self.rules = rules or TimebankRules.from_env({**os.environ, **(env or {})})
        self.tz = ZoneInfo(timezone)
        self._transfers_by_account: dict[UUID, list[UUID]] = defaultdict(list)
        self._accounts: dict[str, UUID] = {}  # code -> id
        self._open_holds: dict[str, datetime] = {}  # visit_id -> expires_at
        self._earned: dict[str, list[tuple[datetime, int]]] = defaultdict(list)  # bank
        self._tasks_by_volunteer: dict[str, set[str]] = defaultdict(set)
        self._open_redemptions: dict[str, date] = {}  # redemption id -> requested date
        self.index = FollowingReadModel(self, self._index, applies_to=INDEXED_EVENTS)

    # Read model ------------------------------------------------------------------------------
    def _index(self, e: Any) -> None:
        kind = type(e).__qualname__
        if kind == "Transfer.Created":
            for account_id in (e.debit_account_id, e.credit_account_id):
                self._transfers_by_account[account_id].append(e.originator_id)
        elif kind == "Account.Opened":
            self._accounts[e.code] = e.originator_id
        elif kind == "Hold.Opened" and e.held_minutes > 0:
            self._open_holds[e.visit_id] = e.expires_at
        elif kind == "Hold.Renewed":
            hold = self.repository.get(e.originator_id, version=1)
            if e.held_minutes > 0:
                self._open_holds[hold.visit_id] = e.expires_at
            else:
                self._open_holds.pop(hold.visit_id, None)
        elif kind in ("Hold.Redeemed", "Hold.Released"):
            hold = self.repository.get(e.originator_id, version=1)
            self._open_holds.pop(hold.visit_id, None)
        elif kind == "Earning.Recorded" and e.credited_minutes > 0:
            self._earned[e.bank_id].append((e.timestamp, e.credited_minutes))
        elif kind == "Redemption.Placed":
            self._open_redemptions[e.redemption_id] = e.requested_date
        elif kind in ("Redemption.Scheduled", "Redemption.Closed"):
            redemption = self.repository.get(e.originator_id, version=1)
            self._open_redemptions.pop(redemption.redemption_id, None)
        elif kind == "VolunteerTask.Assigned":
            self._tasks_by_volunteer[e.volunteer_id].add(e.originator_id)
        elif kind == "VolunteerTask.Moved":  # rare: rescheduled to someone else
            for visits in self._tasks_by_volunteer.values():
                visits.discard(e.originator_id)
            self._tasks_by_volunteer[e.volunteer_id].add(e.originator_id)

    # Unit of work with optimistic concurrency ------------------------------------------------
    def _run(self, build: Callable[[_Books], T], attempts: int = 50) -> T:
        """Build the change on fresh state and save it; on a version conflict (someone changed
        one of the same aggregates meanwhile) run it again."""
        for attempt in range(attempts):
            books = _Books(self)
            result = build(books)
            try:
                self.save(*books.aggregates())
                return result
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                CONFLICTS_RETRIED.inc()
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    # Members and accounts --------------------------------------------------------------------
    def _member(self, books: _Books, person_id: str, bank_id: str) -> Member:
        member = books.get(Member.create_id(person_id))
        if member is None:
            member = Member(person_id=person_id, bank_id=bank_id)
            books.add(member)
            books.account(member.account_code)
        return member

    def join(self, person_id: str, bank_id: str, birth_date: date | None = None,
             hardship: bool = False, display_name: str | None = None) -> Member:
        """Open (or update) a person's membership and account in a bank."""
        def build(books: _Books) -> Member:
            member = books.get(Member.create_id(person_id))
            if member is None:
                member = Member(person_id=person_id, bank_id=bank_id, birth_date=birth_date,
                                hardship=hardship, display_name=display_name)
                books.account(member.account_code)
                books.add(member)
            elif member.erased:
                raise RuleError(f"{person_id} was erased on request: their account is kept "
                                "under the id, but no details are recorded again")
            elif (member.birth_date, member.hardship, member.display_name) != (
                    birth_date or member.birth_date, hardship, display_name or member.display_name):
                member.change_details(birth_date=birth_date or member.birth_date,
                                      hardship=hardship,
                                      display_name=display_name or member.display_name,
                                      person_id=person_id)
                books.add(member)
            return member
        return self._run(build)

    def open_account(self, person_id: str, bank_id: str | None = None) -> Member:
        """Kept for the first version's callers: join the given (or default) bank."""
        found = self.get_or_none(Member.create_id(person_id))
        if found is not None:
            return found
        return self.join(person_id, bank_id or self.rules.default_bank_id)

    def erase_member(self, person_id: str, by: str, at: datetime) -> Member | None:
        """Crypto-shred a member's details (birth date, hardship, name): record who and when,
        then delete the person's key. The account, its transfers and balances stay.

        Idempotent: erasing again deletes the key again (in case that step failed before)."""
        member = self.get_or_none(Member.create_id(person_id))
        if member is not None and not member.erased:
            member.erase(by=by, at=at)
            self.save(member)
        self.erase_subject(f"person:{person_id}")
        return member

    def member(self, person_id: str) -> Member:
        found = self.get_or_none(Member.create_id(person_id))
        if found is None:
            raise NotFound(f"{person_id} is not a member of any time bank")
        return found

    def account_by_code(self, code: str) -> Account:
        found = self.get_or_none(Account.create_id(code))
        if found is None:
            raise NotFound(f"no time-bank account {code}")
        return found

    def _resolve_account(self, books: _Books, account_id: str, bank_id: str) -> str:
        """A member's account code as it is, or a bare person id resolved to their own account
        (joining the bank of the visit if the person was never seen). Only members' accounts
        are ever held: a bank's own accounts are not a person's credits."""
        account = books.get(Account.create_id(account_id))
        if account is not None and account.kind == "member":
            return account_id
        return self._member(books, account_id, bank_id).account_code

    def balance(self, person_id: str) -> CreditBalance:
        member = self.member(person_id)
        account = self.account_by_code(member.account_code)
        return CreditBalance(person_id, member.bank_id, account.code, account.balance,
                             account.debits_pending, account.available, account.credits_posted)

    def history(self, person_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Movements of a person's account, newest first, with sign and reason."""
        account = self.account_by_code(self.member(person_id).account_code)
        self.index.catch_up()
        rows = []
        for transfer_id in reversed(self._transfers_by_account[account.id][-limit:]):
            t = self.repository.get(transfer_id)
            sign = -1 if t.debit_account_id == account.id else 1
            amount = t.posted_amount if t.state is TransferState.POSTED else t.amount
            rows.append({"transfer": t.key, "state": t.state.value, "minutes": sign * amount,
                         "reason": t.reason, "visit_id": t.visit_id,
                         "at": t.created_on.isoformat()})
        return rows

    # Earning ---------------------------------------------------------------------------------
    def earning_for(self, visit_id: str) -> Earning:
        found = self.get_or_none(Earning.create_id(visit_id))
        if found is None:
            raise NotFound(f"no credits earned for visit {visit_id}")
        return found

    def earner_of(self, visit_id: str) -> str | None:
        """The volunteer credited for the visit (None when nothing was earned for it)."""
        found = self.get_or_none(Earning.create_id(visit_id))
        return found.volunteer_id if found is not None else None

    def _earn(self, books: _Books, event: VisitVerified) -> None:
        p = event.payload
        if books.get(Earning.create_id(p.visit_id)) is not None:
            return  # earned already for this visit
        visit_bank = self.rules.bank_of_area(event.service_area_id)
        member = self._member(books, p.caregiver_id, visit_bank)
        bank = member.bank_id  # credits are deposited in the volunteer's own bank (通存)
        account = books.account(member.account_code)
        day = p.started_at.astimezone(self.tz).date()
        rule = self.rules.multipliers.rule_for(p.service_type.value, day)
        common = dict(
            visit_id=p.visit_id, volunteer_id=p.caregiver_id, account_code=account.code,
            service_area_id=event.service_area_id, served_minutes=p.actual_minutes,
            multiplier_permille=rule.permille, cause_event_id=str(event.event_id),
            correlation_id=str(event.correlation_id), bank_id=bank,
            service_type=p.service_type.value, confirmation=p.confirmation.value,
            rule_version=rule.version)
        refusal = confirmation_refusal(p.confirmation.value)
        if refusal is not None:
            books.add(Earning(**common, credited_minutes=0, balance_after_minutes=account.balance,
                              not_credited_minutes=p.actual_minutes, reason=refusal))
            return
        tally = books.get(Tally.create_id(f"earned:{p.caregiver_id}:{day}"))
        if tally is None:
            tally = Tally(key=f"earned:{p.caregiver_id}:{day}")
        assessed = assess_earning(p.actual_minutes, rule.permille, tally.total, account.balance,
                                  self.rules.caps)
        facts = TransferFacts(f"credits for verified volunteer service ({rule.version})",
                              p.visit_id, str(event.event_id))
        if assessed.credited:
            books.transfer(f"earn:{p.visit_id}", issuance_account(bank), account.code,
                           assessed.credited, pending=False, facts=facts)
        if assessed.donated:
            books.transfer(f"earn:{p.visit_id}:donated", issuance_account(bank),
                           community_fund_account(bank), assessed.donated, pending=False,
                           facts=TransferFacts("earned above the balance cap: donated to the "
                                               "community fund", p.visit_id, str(event.event_id)))
        if assessed.credited or assessed.donated:
            tally.add(minutes=assessed.credited + assessed.donated, ref=p.visit_id)
            books.add(tally)
        books.add(Earning(**common, credited_minutes=assessed.credited,
                          balance_after_minutes=account.balance,
                          donated_minutes=assessed.donated,
                          not_credited_minutes=assessed.not_credited, reason=assessed.reason))

    # Routing credits between accounts, across banks through clearing accounts ----------------
    def _route_target(self, from_code: str, to_code: str) -> str:
        """Where a movement from ``from_code`` lands in the payer's own bank."""
        from_bank, to_bank = bank_of_account(from_code), bank_of_account(to_code)
        return to_code if from_bank == to_bank else clearing_account(from_bank, to_bank)

    def _bilateral_room(self, books: _Books, from_bank: str, to_bank: str) -> int:
        """How many more credits ``from_bank`` may come to owe ``to_bank`` before clearing."""
        if from_bank == to_bank:
            return 1 << 62
        owed = books.account(clearing_account(from_bank, to_bank))
        position = owed.credits_posted + owed.credits_pending - owed.debits_posted
        return max(0, self.rules.bilateral_limit_minutes - position)

    def _land(self, books: _Books, key: str, from_code: str, to_code: str, amount: int,
              facts: TransferFacts) -> None:
        """Second half of a cross-bank movement: the receiving bank pays out of its clearing
        account with the payer (which goes negative: the payer owes it)."""
        from_bank, to_bank = bank_of_account(from_code), bank_of_account(to_code)
        if from_bank != to_bank and amount > 0:
            books.transfer(f"{key}:landed", clearing_account(to_bank, from_bank), to_code,
                           amount, pending=False, facts=facts)

    def _move(self, books: _Books, key: str, from_code: str, to_code: str, amount: int,
              facts: TransferFacts) -> None:
        """A posted movement of credits, through the clearing accounts if banks differ."""
        from_bank, to_bank = bank_of_account(from_code), bank_of_account(to_code)
        if amount > self._bilateral_room(books, from_bank, to_bank):
            raise RuleError(f"bank {from_bank} would owe {to_bank} more than the bilateral limit "
                            f"of {self.rules.bilateral_limit_minutes} min before clearing")
        books.transfer(key, from_code, self._route_target(from_code, to_code), amount,
                       pending=False, facts=facts)
        self._land(books, key, from_code, to_code, amount, facts)

    # Holds for visits (the funding protocol) -------------------------------------------------
    def hold_for_visit(self, visit_id: str, account_id: str, minutes: int, service_area_id: str,
                       expires_at: datetime | None = None, *, volunteer_id: str | None = None,
                       cause_event_id: str | None = None,
                       correlation_id: str | None = None) -> Hold:
        """Hold up to ``minutes`` of an account's available credits for a visit (a command, as
        the consumer does it on CreditsHoldRequested; safe under concurrency)."""
        def build(books: _Books) -> Hold:
            return self._hold(books, visit_id, account_id, minutes, service_area_id,
                              expires_at or datetime.now(UTC) + self.rules.hold_expiry,
                              volunteer_id, cause_event_id or str(uuid4()),
                              correlation_id or str(uuid4()))
        return self._run(build)

    def _hold(self, books: _Books, visit_id: str, account_id: str, minutes: int,
              service_area_id: str, expires_at: datetime, volunteer_id: str | None,
              cause_event_id: str, correlation_id: str, renew: bool = False) -> Hold:
        existing = books.get(Hold.create_id(visit_id))
        if existing is not None and not (
                renew and existing.state != "redeemed"
                and existing.cause_event_id != cause_event_id):
            return existing  # one hold per visit: a repeated request gets the same answer
        visit_bank = self.rules.bank_of_area(service_area_id)
        key = f"hold:{visit_id}"
        if existing is not None:
            # A new request for a visit held before (the ledger re-funds a rescheduled visit):
            # give back what is still held, then answer afresh under a new transfer.
            code, target = existing.account_code, existing.credit_code
            if volunteer_id is None and existing.kind == "volunteer":
                target = redeemed_account(visit_bank)  # now served by a paid caregiver
            if existing.state == "held":
                self._void_hold(books, existing, "renewed for a rescheduled visit",
                                cause_event_id)
            key = f"hold:{visit_id}:{getattr(existing, 'renewals', 0) + 2}"
        else:
            code = self._resolve_account(books, account_id, visit_bank)
            if volunteer_id is not None:
                target = self._member(books, volunteer_id, visit_bank).account_code
            else:
                target = redeemed_account(visit_bank)
        account = books.account(code)
        from_bank = bank_of_account(code)
        available = max(0, account.available)
        held = min(minutes, available,
                   self._bilateral_room(books, from_bank, bank_of_account(target)))
        reason = "held" if held == minutes else "partly held: not enough credits available"
        if held == 0:
            reason = ("no credits available" if available == 0 else
                      f"bank {from_bank} is at its bilateral limit with "
                      f"{bank_of_account(target)}")
        if held > 0:
            books.transfer(key, code, self._route_target(code, target), held, pending=True,
                           facts=TransferFacts("credits held for a visit", visit_id,
                                               cause_event_id, FundingSource.TIME_CREDITS),
                           expires_at=expires_at)
        if existing is not None:
            existing.renew(requested_minutes=minutes, held_minutes=held,
                           available_minutes=available, reason=reason, transfer_key=key,
                           expires_at=expires_at, cause_event_id=cause_event_id,
                           correlation_id=correlation_id,
                           kind="ledger" if volunteer_id is None else None,
                           credit_code=target if target != existing.credit_code else None)
            books.add(existing)
            return existing
        hold = Hold(visit_id=visit_id, kind="volunteer" if volunteer_id else "ledger",
                    account_code=code, requested_minutes=minutes, held_minutes=held,
                    available_minutes=available, reason=reason, transfer_key=key,
                    credit_code=target, visit_bank_id=visit_bank, expires_at=expires_at,
                    service_area_id=service_area_id, cause_event_id=cause_event_id,
                    correlation_id=correlation_id, volunteer_id=volunteer_id)
        books.add(hold)
        return hold

    def hold_for(self, visit_id: str) -> Hold:
        found = self.get_or_none(Hold.create_id(visit_id))
        if found is None:
            raise NotFound(f"no credits held for visit {visit_id}")
        return found

    def _open_hold(self, books: _Books, visit_id: str) -> tuple[Hold, Transfer] | None:
        hold = books.get(Hold.create_id(visit_id))
        if hold is None or hold.state != "held":
            return None
        return hold, books.get(Transfer.create_id(hold.transfer_key))

    def _redeem(self, books: _Books, visit_id: str, minutes: int, cause: str,
                correlation: str, paid_to: str | None = None) -> None:
        """Post ``minutes`` (at most what is held) of a visit's hold, release the rest."""
        found = self._open_hold(books, visit_id)
        if found is None:
            return
        hold, transfer = found
        minutes = min(minutes, hold.held_minutes)
        target = paid_to or hold.credit_code
        debit = books.account(hold.account_code)
        credit = books.account(self._route_target(hold.account_code, hold.credit_code))
        if minutes == 0:
            void_pending(transfer, debit, credit, reason="nothing charged", cause_event_id=cause)
            hold.release(reason="nothing charged", cause_event_id=cause,
                         correlation_id=correlation)
            books.add(hold)
            return
        facts = TransferFacts("credits redeemed for a verified visit", visit_id, cause,
                              FundingSource.TIME_CREDITS)
        if target != hold.credit_code:
            to_bank = bank_of_account(target)
            room = self._bilateral_room(books, bank_of_account(hold.account_code), to_bank)
            if to_bank == bank_of_account(hold.credit_code):
                room += hold.held_minutes  # voiding this hold frees its own share
            if minutes > room:
                target = hold.credit_code  # the other bank is at its limit: pay as booked
        if target == hold.credit_code:
            post_pending(transfer, debit, credit, minutes, cause_event_id=cause)
            self._land(books, hold.transfer_key, hold.account_code, target, minutes, facts)
        else:  # served by someone else than planned: release the hold, pay who served
            void_pending(transfer, debit, credit, reason="served by another volunteer",
                         cause_event_id=cause)
            self._move(books, f"{hold.transfer_key}:to:{target}", hold.account_code, target,
                       minutes, facts)
        if hold.kind == "ledger":
            # The ledger paid the provider from the reserve's funding account: the reserve's
            # own books show the same minutes paid out.
            bank = hold.visit_bank_id
            books.transfer(f"reserve-paid:{visit_id}", reserve_account(bank),
                           reserve_paid_account(bank), minutes, pending=False,
                           facts=TransferFacts("reserve paid a provider for a redemption",
                                               visit_id, cause, FundingSource.RESERVE))
        hold.redeem(minutes=minutes, released_minutes=hold.held_minutes - minutes,
                    cause_event_id=cause, correlation_id=correlation, paid_to=target)
        books.add(hold)

    def _void_hold(self, books: _Books, hold: Hold, reason: str, cause: str) -> None:
        transfer = books.get(Transfer.create_id(hold.transfer_key))
        void_pending(transfer, books.account(hold.account_code),
                     books.account(self._route_target(hold.account_code, hold.credit_code)),
                     reason=reason, cause_event_id=cause)

    def _release(self, books: _Books, visit_id: str, reason: str, cause: str,
                 correlation: str) -> None:
        found = self._open_hold(books, visit_id)
        if found is None:
            return  # nothing held, or settled already: releasing is idempotent
        hold, _ = found
        self._void_hold(books, hold, reason, cause)
        hold.release(reason=reason, cause_event_id=cause, correlation_id=correlation)
        books.add(hold)

    def release_hold(self, visit_id: str, reason: str) -> None:
        self._run(lambda books: self._release(books, visit_id, reason, str(uuid4()),
                                              str(uuid4())))

    def expire_holds(self, now: datetime | None = None) -> list[str]:
        """The time bank's own safety net: release holds past their expiry."""
        now = now or datetime.now(UTC)
        self.index.catch_up()
        expired = [v for v, at in list(self._open_holds.items()) if at <= now]
        for visit_id in expired:
            self.release_hold(visit_id, "expired")
        return expired

    def refresh_gauges(self) -> None:
        """Keep the liability and reserve gauges current for /metrics."""
        for bank_id in self.banks():
            self.liability(bank_id)

    def periodic_tasks(self) -> list[tuple[float, Callable[[], Any]]]:
        """Run by the host: our own hold expiry (a safety net behind the ledger's) and gauges."""
        return [(60.0, self.expire_holds), (60.0, self.refresh_gauges),
                (600.0, self.clear_yesterday), (3600.0, self.drop_stale_redemptions)]

    def clear_yesterday(self) -> list[Settlement]:
        """Daily clearing between banks: the run named after yesterday (local time) happens
        once, at the first tick after midnight, and nets everything posted until then."""
        yesterday = datetime.now(self.tz).date() - timedelta(days=1)
        return self.clear(yesterday.isoformat())

    # Gifts -----------------------------------------------------------------------------------
    def give(self, from_person: str, minutes: int, to_person: str | None = None,
             note: str | None = None, gift_id: str | None = None,
             on: date | None = None) -> Gift:
        """Give credits to a relative (``to_person``) or to the community fund (None).
        Limits per gift and per month; only available credits (never what is held)."""
        gift_id = gift_id or str(uuid4())
        on = on or datetime.now(self.tz).date()
        limits = self.rules.gifts

        def build(books: _Books) -> Gift:
            existing = books.get(Gift.create_id(gift_id))
            if existing is not None:
                return existing
            if minutes <= 0:
                raise RuleError("a gift is a positive number of minutes")
            if minutes > limits.max_per_gift_minutes:
                raise RuleError(f"at most {limits.max_per_gift_minutes} min per gift")
            giver = books.get(Member.create_id(from_person))
            if giver is None:
                raise NotFound(f"{from_person} is not a member of any time bank")
            key = f"gifts:{from_person}:{on:%Y-%m}"
            tally = books.get(Tally.create_id(key)) or Tally(key=key)
            if tally.total + minutes > limits.max_per_month_minutes:
                raise RuleError(f"at most {limits.max_per_month_minutes} min of gifts a month; "
                                f"{tally.total} given this month")
            if to_person is None:
                to_code = community_fund_account(giver.bank_id)
            else:
                if to_person == from_person:
                    raise RuleError("a gift goes to someone else")
                to_code = self._member(books, to_person, giver.bank_id).account_code
            account = books.account(giver.account_code)
            if account.available < minutes:
                raise RuleError(f"{account.available} min available (held credits cannot be "
                                f"given); {minutes} asked")
            self._move(books, f"gift:{gift_id}", giver.account_code, to_code, minutes,
                       TransferFacts(f"gift{': ' + note if note else ''}"))
            tally.add(minutes=minutes, ref=gift_id)
            gift = Gift(gift_id=gift_id, from_person=from_person,
                        from_account=giver.account_code, to_person=to_person, to_account=to_code,
                        minutes=minutes, note=note, service_area_id=giver.bank_id,
                        correlation_id=str(uuid4()))
            books.add(tally, gift)
            return gift
        return self._run(build)

    def gift(self, gift_id: str) -> Gift:
        found = self.get_or_none(Gift.create_id(gift_id))
        if found is None:
            raise NotFound(f"no gift {gift_id}")
        return found

    # Redemption: an order for care paid with credits -----------------------------------------
    def redeem(self, redeemer_id: str, elder_id: str, service_type: str, minutes: int,
               requested_date: date, service_area_id: str, *, redemption_id: str | None = None,
               beneficiary_birth_date: date | None = None, hardship: bool | None = None,
               notes: str | None = None) -> Redemption:
        """Place an order in dispatch (through the outbox) paid with the redeemer's credits, for
        the redeemer or someone they care for; age-gated on the person who gets the care."""
        redemption_id = redemption_id or str(uuid4())

        def build(books: _Books) -> Redemption:
            existing = books.get(Redemption.create_id(redemption_id))
            if existing is not None:
                return existing
            if minutes <= 0:
                raise RuleError("redeem a positive number of minutes")
            redeemer = books.get(Member.create_id(redeemer_id))
            if redeemer is None:
                raise NotFound(f"{redeemer_id} is not a member of any time bank")
            beneficiary = books.get(Member.create_id(elder_id))
            birth = beneficiary_birth_date or (beneficiary.birth_date if beneficiary else None)
            poor = hardship if hardship is not None else bool(beneficiary and beneficiary.hardship)
            refusal = self.rules.redemption_age.refusal(birth, poor, requested_date)
            if refusal is not None:
                raise RuleError(refusal)
            account = books.account(redeemer.account_code)
            # Credits promised to orders not yet scheduled count as spent: a hundred orders at
            # once cannot promise the same minutes twice (the tally is versioned).
            earmarks = self._earmarks(books, redeemer.account_code)
            if account.available - earmarks.total < minutes:
                raise RuleError(f"{account.available} min available, {earmarks.total} of them "
                                f"promised to orders not yet scheduled; {minutes} asked")
            earmarks.add(minutes=minutes, ref=redemption_id)
            books.add(earmarks)
            redemption = Redemption(
                redemption_id=redemption_id, order_id=f"tb-{redemption_id}",
                redeemer_id=redeemer_id, account_code=redeemer.account_code, elder_id=elder_id,
                service_type=service_type, minutes=minutes, requested_date=requested_date,
                service_area_id=service_area_id, correlation_id=str(uuid4()), notes=notes)
            books.add(redemption)
            return redemption
        return self._run(build)

    def _earmarks(self, books: _Books, account_code: str) -> Tally:
        key = f"earmarked:{account_code}"
        return books.get(Tally.create_id(key)) or Tally(key=key)

    def redemption(self, redemption_id: str) -> Redemption:
        found = self.get_or_none(Redemption.create_id(redemption_id))
        if found is None:
            raise NotFound(f"no redemption {redemption_id}")
        return found

    def redeemer_of(self, redemption_id: str) -> str | None:
        """Whose credits pay for the redemption (None when there is no such redemption)."""
        found = self.get_or_none(Redemption.create_id(redemption_id))
        return found.redeemer_id if found is not None else None

    def _settle_earmark(self, books: _Books, order_id: str, visit_id: str | None,
                        reason: str, cancelled_by: str | None = None) -> None:
        """The order of a redemption was scheduled (its hold now carries the credits) or will
        never be: the credits promised to it are free again."""
        if not order_id.startswith("tb-"):
            return
        redemption = books.get(Redemption.create_id(order_id.removeprefix("tb-")))
        if redemption is None or redemption.state != "placed":
            return
        if visit_id is not None:
            redemption.schedule(visit_id=visit_id)
        else:
            redemption.close(reason=reason, cancelled_by=cancelled_by)
        earmarks = self._earmarks(books, redemption.account_code)
        earmarks.add(minutes=-redemption.minutes, ref=redemption.redemption_id)
        books.add(redemption, earmarks)

    def cancel_redemption(self, redemption_id: str, reason: str, by: str) -> Redemption:
        """The member withdraws a redemption: the time bank cancels the order it placed
        (OrderCancelled on homecare.orders); credits promised to it are free at once, and a
        hold taken meanwhile is released when dispatch cancels the visit."""
        def build(books: _Books) -> Redemption:
            redemption = books.get(Redemption.create_id(redemption_id))
            if redemption is None:
                raise NotFound(f"no redemption {redemption_id}")
            if redemption.state == "placed":
                self._settle_earmark(books, redemption.order_id, None, reason, by)
            elif redemption.state == "scheduled":
                redemption.close(reason=reason, cancelled_by=by)
                books.add(redemption)
            return redemption
        return self._run(build)

    def drop_stale_redemptions(self, today: date | None = None) -> list[str]:
        """Orders never scheduled by the day after the requested date free their credits."""
        today = today or datetime.now(self.tz).date()
        self.index.catch_up()
        stale = [r for r, day in list(self._open_redemptions.items())
                 if day < today - timedelta(days=1)]
        for redemption_id in stale:
            self._run(lambda books, r=redemption_id: self._settle_earmark(
                books, f"tb-{r}", None, "never scheduled"))
        return stale

    # Reserve (储备机制) -----------------------------------------------------------------------
    def grant(self, bank_id: str, minutes: int, reference: str) -> Transfer:
        """A grant funds the reserve with minutes of paid care (once per reference)."""
        if minutes <= 0:
            raise RuleError("a grant is a positive number of minutes")

        def build(books: _Books) -> Transfer:
            existing = books.get(Transfer.create_id(f"grant:{bank_id}:{reference}"))
            if existing is not None:
                return existing
            return books.transfer(f"grant:{bank_id}:{reference}", grants_account(bank_id),
                                  reserve_account(bank_id), minutes, pending=False,
                                  facts=TransferFacts(f"grant {reference} to the reserve",
                                                      funding_source=FundingSource.RESERVE))
        return self._run(build)

    def lapse(self, person_id: str, minutes: int, reason: str, reference: str) -> Transfer:
        """Credits lapse (e.g. by the scheme's expiry rule): they leave circulation, recorded."""
        def build(books: _Books) -> Transfer:
            existing = books.get(Transfer.create_id(f"lapse:{reference}"))
            if existing is not None:
                return existing
            member = books.get(Member.create_id(person_id))
            if member is None:
                raise NotFound(f"{person_id} is not a member of any time bank")
            return books.transfer(f"lapse:{reference}", member.account_code,
                                  lapsed_account(member.bank_id), minutes, pending=False,
                                  facts=TransferFacts(f"lapsed: {reason}"))
        return self._run(build)

    def correct(self, transfer_key: str, reason: str) -> Transfer:
        """Reverse a posted movement (e.g. credits for a visit found not to have happened):
        a new transfer the other way, never an edit; once per transfer."""
        def build(books: _Books) -> Transfer:
            existing = books.get(Transfer.create_id(f"correction:{transfer_key}"))
            if existing is not None:
                return existing
            original = books.get(Transfer.create_id(transfer_key))
            if original is None:
                raise NotFound(f"no transfer {transfer_key}")
            if original.state is not TransferState.POSTED or original.posted_amount == 0:
                raise RuleError(f"transfer {transfer_key} is {original.state.value}: only "
                                "posted movements are corrected")
            debit = books.get(original.credit_account_id)
            credit = books.get(original.debit_account_id)
            return books.transfer(f"correction:{transfer_key}", debit.code, credit.code,
                                  original.posted_amount, pending=False,
                                  facts=TransferFacts(f"correction: {reason}",
                                                      original.visit_id))
        return self._run(build)

    def _balance_of(self, code: str) -> Account | None:
        return self.get_or_none(Account.create_id(code))

    def liability(self, bank_id: str, now: datetime | None = None) -> Liability:
        """Credits outstanding against what can honour them, and when the reserve runs short
        at the last 30 days' rates. Also sets the prometheus gauges."""
        now = now or datetime.now(UTC)
        self.index.catch_up()
        since = now - timedelta(days=30)
        outstanding = held = 0
        for code in list(self._accounts):
            if bank_of_account(code) != bank_id or not (
                    code.startswith("member:") or code == community_fund_account(bank_id)):
                continue
            account = self._balance_of(code)
            if account is not None:
                outstanding += account.balance
                held += account.debits_pending
        reserve = self._balance_of(reserve_account(bank_id))
        reserve_minutes = reserve.balance if reserve else 0
        capacity = sum(m for at, m in self._earned[bank_id] if at >= since)
        paid = self._posted_since(reserve_paid_account(bank_id), since, credit=True)
        granted = self._posted_since(reserve_account(bank_id), since, credit=True)
        denominator = max(0, reserve_minutes) + capacity
        ratio = outstanding / denominator if denominator else None
        # Grants come as irregular lump sums (budgets): the projection is the reserve left
        # divided by what it paid out per day over the last 30 days.
        burn = paid / 30
        days = (max(0, reserve_minutes) / burn) if burn > 0 else None
        short_on = (now + timedelta(days=days)).date().isoformat() if days is not None else None
        LIABILITY_RATIO.labels(bank_id).set(ratio if ratio is not None else float("inf"))
        RESERVE_MINUTES.labels(bank_id).set(reserve_minutes)
        return Liability(bank_id, outstanding, held, reserve_minutes, capacity, ratio, paid,
                         granted, round(burn, 2), None if days is None else round(days, 1),
                         short_on)

    def _posted_since(self, code: str, since: datetime, *, credit: bool) -> int:
        account = self._balance_of(code)
        if account is None:
            return 0
        total = 0
        for transfer_id in self._transfers_by_account[account.id]:
            t = self.repository.get(transfer_id)
            side = t.credit_account_id if credit else t.debit_account_id
            if side == account.id and t.state is TransferState.POSTED and t.created_on >= since:
                total += t.posted_amount
        return total

    # Federation (通存通兑) ------------------------------------------------------------------
    def banks(self) -> list[str]:
        self.index.catch_up()
        return sorted({bank_of_account(code) for code in self._accounts})

    def positions(self) -> list[dict[str, Any]]:
        """What each bank owes each other bank now (posted and held), with the limit."""
        self.index.catch_up()
        rows = []
        for code in sorted(self._accounts):
            parts = code.split(":")
            if len(parts) == 4 and parts[2] == "clearing":
                account = self._balance_of(code)
                if account is None:
                    continue
                rows.append({"bank_id": parts[1], "owes_bank_id": parts[3],
                             "posted_minutes": account.balance,
                             "held_minutes": account.credits_pending,
                             "limit_minutes": self.rules.bilateral_limit_minutes})
        return rows

    def clear(self, period: str) -> list[Settlement]:
        """Net each pair of banks' positions and settle them (once per period and pair)."""
        self.index.catch_up()
        pairs = {tuple(sorted((p["bank_id"], p["owes_bank_id"]))) for p in self.positions()}
        settled = []
        for a, b in sorted(pairs):
            def build(books: _Books, a: str = a, b: str = b) -> Settlement | None:
                if books.get(Settlement.create_id(period, a, b)) is not None:
                    return None
                net = books.account(clearing_account(a, b)).balance  # what a owes b
                if net == 0:
                    return None
                payer, payee = (a, b) if net > 0 else (b, a)
                key = f"settle:{period}:{a}:{b}"
                books.transfer(key, clearing_account(payer, payee),
                               clearing_account(payee, payer), abs(net), pending=False,
                               facts=TransferFacts(f"clearing {period}: {payer} settles "
                                                   f"with {payee}"))
                settlement = Settlement(period=period, payer_bank_id=payer, payee_bank_id=payee,
                                        minutes=abs(net), transfer_key=key,
                                        correlation_id=str(uuid4()))
                books.add(settlement)
                return settlement
            result = self._run(build)
            if result is not None:
                settled.append(result)
        return settled

    def credit_totals(self) -> dict[str, int]:
        """Per bank: credits held in its books (everything but sources and sinks)."""
        self.index.catch_up()
        totals: dict[str, int] = defaultdict(int)
        for code in list(self._accounts):
            account = self._balance_of(code)
            if account is not None and account.kind not in SOURCE_KINDS:
                totals[bank_of_account(code)] += account.balance
        return dict(totals)

    def trial_balance(self) -> int:
        """Sum of all posted balances; zero unless the books are broken."""
        self.index.catch_up()
        return sum(a.balance for code in list(self._accounts)
                   if (a := self._balance_of(code)) is not None)

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        books = _Books(self)
        cause, correlation = str(event.event_id), str(event.correlation_id)
        self._follow_task(books, event)
        if isinstance(event, ElderErased):
            # The elder asked dispatch to forget them: shred their key here too. The key goes
            # first; the Erased event is saved with the message's tracking record (a redelivery
            # deletes the key again, harmlessly).
            p = event.payload
            self.erase_subject(f"person:{p.elder_id}")
            member = books.get(Member.create_id(p.elder_id))
            if member is not None and not member.erased:
                member.erase(by=p.erased_by, at=p.erased_at)
                books.add(member)
        elif isinstance(event, VisitVerified):
            p = event.payload
            if p.caregiver_kind is CaregiverKind.VOLUNTEER:
                found = self._open_hold(books, p.visit_id)
                if found is not None and found[0].kind == "volunteer":
                    # A redemption served by a volunteer: a true time exchange.
                    volunteer = self._member(books, p.caregiver_id,
                                             self.rules.bank_of_area(event.service_area_id))
                    self._redeem(books, p.visit_id, p.actual_minutes, cause, correlation,
                                 paid_to=volunteer.account_code)
                else:
                    self._earn(books, event)
        elif isinstance(event, VisitScheduled):
            p = event.payload
            self._settle_earmark(books, p.order_id, p.visit_id, "scheduled")
            if p.caregiver_kind is CaregiverKind.VOLUNTEER and p.use_time_credits:
                self._hold(books, p.visit_id, p.time_credit_account_id or p.elder_id,
                           p.planned_minutes, event.service_area_id,
                           max(event.occurred_at + self.rules.hold_expiry,
                               p.planned_end + timedelta(days=2)),
                           p.caregiver_id, cause, correlation)
        elif isinstance(event, CreditsHoldRequested):
            p = event.payload
            # Our own expiry is a safety net behind the ledger's: a day later.
            self._hold(books, p.visit_id, p.account_id, p.minutes, event.service_area_id,
                       p.expires_at + timedelta(days=1), None, cause, correlation, renew=True)
        elif isinstance(event, VisitCharged):
            p = event.payload
            minutes = sum(leg.minutes for leg in p.legs
                          if leg.source is FundingSource.TIME_CREDITS)
            self._redeem(books, p.visit_id, minutes, cause, correlation)
        elif isinstance(event, VisitCancelled):
            self._release(books, event.payload.visit_id, "cancelled", cause, correlation)
        elif isinstance(event, ReservationRejected):
            self._release(books, event.payload.visit_id, "visit not funded", cause, correlation)
        elif isinstance(event, ReservationReleased) and event.payload.reason in (
                "cancelled", "expired"):
            self._release(books, event.payload.visit_id, event.payload.reason, cause,
                          correlation)
        processing.collect_events(*books.aggregates())

    def _follow_task(self, books: _Books, event: IntegrationEvent) -> None:
        """Keep the volunteer's own list of tasks (for the volunteer page)."""
        if isinstance(event, VisitScheduled):
            p = event.payload
            if p.caregiver_kind is CaregiverKind.VOLUNTEER and books.get(
                    VolunteerTask.create_id(p.visit_id)) is None:
                books.add(VolunteerTask(
                    visit_id=p.visit_id, volunteer_id=p.caregiver_id, elder_id=p.elder_id,
                    service_type=p.service_type.value, planned_start=p.planned_start,
                    planned_end=p.planned_end, planned_minutes=p.planned_minutes,
                    service_area_id=event.service_area_id, paid_with_credits=p.use_time_credits))
            return
        if not isinstance(event, VisitRescheduled | VisitVerified | VisitCancelled):
            return  # nothing else changes a task: no need to look for one
        visit_id = event.payload.visit_id
        task = books.get(VolunteerTask.create_id(visit_id))
        if task is None or task.state != "assigned":
            return
        if isinstance(event, VisitRescheduled):
            p = event.payload
            task.move(volunteer_id=p.caregiver_id, planned_start=p.planned_start,
                      planned_end=p.planned_end, planned_minutes=p.planned_minutes)
        elif isinstance(event, VisitVerified):
            task.close(state="done")
        else:
            task.close(state="cancelled")
        books.add(task)

    def tasks_of(self, volunteer_id: str) -> list[VolunteerTask]:
        """A volunteer's tasks, soonest first (open ones before closed ones)."""
        self.index.catch_up()
        tasks = [self.repository.get(i) for i in self._tasks_by_volunteer.get(volunteer_id, ())]
        tasks = [t for t in tasks if t.volunteer_id == volunteer_id]
        return sorted(tasks, key=lambda t: (t.state != "assigned", t.planned_start))

    # Outbox translation ----------------------------------------------------------------------
    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        kind = type(domain_event).__qualname__
        e = domain_event
        if kind == "Earning.Recorded":
            if e.credited_minutes <= 0:
                return
            yield CreditsEarned(
                event_id=integration_event_id(e, "CreditsEarned"), occurred_at=e.timestamp,
                correlation_id=e.correlation_id, causation_id=e.cause_event_id,
                service_area_id=e.service_area_id,
                payload={"account_id": e.account_code, "volunteer_id": e.volunteer_id,
                         "visit_id": e.visit_id, "served_minutes": e.served_minutes,
                         "credited_minutes": e.credited_minutes,
                         "multiplier_permille": e.multiplier_permille,
                         "balance_after_minutes": e.balance_after_minutes})
        elif kind in ("Hold.Opened", "Hold.Renewed"):
            hold = self.repository.get(e.originator_id, version=1)
            common = {"occurred_at": e.timestamp, "correlation_id": e.correlation_id,
                      "causation_id": e.cause_event_id, "service_area_id": hold.service_area_id}
            if e.held_minutes > 0:
                yield CreditsReserved(
                    event_id=integration_event_id(e, "CreditsReserved"), **common,
                    payload={"reservation_id": str(e.originator_id), "visit_id": hold.visit_id,
                             "account_id": hold.account_code, "minutes": e.held_minutes,
                             "expires_at": e.expires_at})
            else:
                yield CreditsReservationRejected(
                    event_id=integration_event_id(e, "CreditsReservationRejected"), **common,
                    payload={"visit_id": hold.visit_id, "account_id": hold.account_code,
                             "requested_minutes": e.requested_minutes,
                             "available_minutes": e.available_minutes, "reason": e.reason})
        elif kind in ("Hold.Redeemed", "Hold.Released"):
            hold = self.repository.get(e.originator_id, version=1)
            common = {"occurred_at": e.timestamp, "correlation_id": e.correlation_id,
                      "causation_id": e.cause_event_id, "service_area_id": hold.service_area_id}
            ids = {"reservation_id": str(e.originator_id), "visit_id": hold.visit_id,
                   "account_id": hold.account_code}
            if kind == "Hold.Redeemed":
                yield CreditsRedeemed(event_id=integration_event_id(e, "CreditsRedeemed"),
                                      **common, payload={**ids, "minutes": e.minutes})
                if e.released_minutes:
                    yield CreditsReleased(
                        event_id=integration_event_id(e, "CreditsReleased"), **common,
                        payload={**ids, "minutes": e.released_minutes,
                                 "reason": "verified_remainder"})
            else:
                yield CreditsReleased(event_id=integration_event_id(e, "CreditsReleased"),
                                      **common, payload={**ids, "minutes": hold.held_minutes,
                                                         "reason": e.reason})
        elif kind == "Gift.Given":
            yield CreditsGifted(
                event_id=integration_event_id(e, "CreditsGifted"), occurred_at=e.timestamp,
                correlation_id=e.correlation_id, service_area_id=e.service_area_id,
                payload={"gift_id": e.gift_id, "from_account_id": e.from_account,
                         "to_account_id": e.to_account, "minutes": e.minutes, "note": e.note})
        elif kind == "Settlement.Recorded":
            yield CreditsSettled(
                event_id=integration_event_id(e, "CreditsSettled"), occurred_at=e.timestamp,
                correlation_id=e.correlation_id, service_area_id=e.payer_bank_id,
                payload={"settlement_id": str(e.originator_id), "period": e.period,
                         "payer_bank_id": e.payer_bank_id, "payee_bank_id": e.payee_bank_id,
                         "minutes": e.minutes})
        elif kind == "Redemption.Closed" and e.cancelled_by is not None:
            placed = self.repository.get(e.originator_id, version=1)
            yield OrderCancelled(
                event_id=integration_event_id(e, "OrderCancelled"), occurred_at=e.timestamp,
                correlation_id=placed.correlation_id, service_area_id=placed.service_area_id,
                payload={"order_id": placed.order_id, "elder_id": placed.elder_id,
                         "reason": e.reason, "cancelled_by": f"timebank:{e.cancelled_by}"})
        elif kind == "Redemption.Placed":
            yield OrderPlaced(
                event_id=integration_event_id(e, "OrderPlaced"), occurred_at=e.timestamp,
                correlation_id=e.correlation_id, service_area_id=e.service_area_id,
                payload={"order_id": e.order_id, "elder_id": e.elder_id,
                         "service_type": e.service_type, "source": "timebank_redemption",
                         "priority": "paid", "emergency": False,
                         "requested_date": e.requested_date, "duration_minutes": e.minutes,
                         "use_time_credits": True, "time_credit_account_id": e.account_code,
                         "notes": e.notes, "placed_by": f"timebank:{e.redeemer_id}"})
