"""Ledger: entitlements, two-phase reservations, double-entry postings and monthly settlement."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import IntegrityError

from contracts.envelope import IntegrationEvent
from contracts.events.funding import CreditsReservationRejected, CreditsReserved
from contracts.events.visits import (
    ElderErased,
    VisitCancelled,
    VisitRescheduled,
    VisitScheduled,
    VisitVerified,
)
from contracts.topics import FUNDING, VISITS
from contracts.values import CaregiverKind, FundingSource
from services.ledger.domain.books import (
    ERASED_FACTS,
    Charge,
    ElderProfile,
    FamilyPackage,
    Provider,
    RuleBookRecord,
    city_funding_account,
    entitlement_account,
    family_cash_account,
    month_of,
    next_month,
    out_of_pocket_account,
    package_revenue_account,
    package_sales_account,
    provider_payable_account,
    provider_settled_account,
    subdistrict_settlement_account,
    timebank_reserve_account,
)
from services.ledger.domain.entitlement import (
    ElderFacts,
    Entitlement,
    EntitlementRuleSet,
    RuleBook,
    load_rule_book,
)
from services.ledger.domain.reservations import (
    CancelledBeforeScheduled,
    Reservation,
    ReservationState,
    Source,
    Verification,
    split_actual,
    take_in_order,
)
from services.ledger.domain.settlement import MonthClose, Statement, build_statements
from services.ledger.translation import translate
from services.runtime.double_entry import (
    Account,
    LedgerError,
    Transfer,
    TransferFacts,
    TransferState,
    open_transfer,
    post_pending,
    void_pending,
)
from services.runtime.eventstore import ServiceApplication
from services.runtime.personal import ERASED, PersonalFields
from services.runtime.readmodel import FollowingReadModel


class NotFound(LookupError):
    pass


# Sensitive personal data, sealed per elder (crypto-shredded when dispatch erases the elder):
# the facts entitlement is computed from (birth date, 低保, disability ...). They are kept in
# ElderProfile only: a grant's transfer says the category and rule set, not the facts behind
# them (the balance recomputes that reason from the facts while they exist). So an erasure
# reaches every ledger process, cached aggregates too, by the ElderProfile.Erased event.
PERSONAL_DATA: dict[type | str, PersonalFields] = {
    ElderProfile.Registered: PersonalFields(  # type: ignore[attr-defined]
        "elder_id", ("facts",), kind="elder", erased=ERASED_FACTS),
    ElderProfile.FactsChanged: PersonalFields(  # type: ignore[attr-defined]
        "elder_id", ("facts",), kind="elder", erased=ERASED_FACTS),
}


# The events the read model (_index) acts on; the others are not decoded to follow the log.
INDEXED_EVENTS = frozenset({
    "Transfer.Created", "Account.Opened", "FamilyPackage.Bought", "ElderProfile.Registered",
    "Charge.Made", "Charge.Unblocked", "Reservation.Requested", "Reservation.Renewed",
    "Reservation.Rejected", "Reservation.Charged", "Reservation.Released"})


class UnknownElder(LookupError):
    """A visit names an elder the ledger has no profile for: never guess who pays."""


class MonthClosed(LedgerError):
    """The month is closed: its statements are fixed."""


@dataclass
class Balance:
    elder_id: str
    month: str
    entitled_minutes: int
    used_minutes: int
    held_minutes: int
    available_minutes: int
    out_of_pocket_minutes: int
    package_minutes: int
    entitlement_reason: str
    entitlement_category: str
    rule_set: str


class _Books:
    """The accounts and transfers touched by one unit of work, each loaded once."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.accounts: dict[UUID, Account] = {}
        self.transfers: dict[UUID, Transfer] = {}
        self.opened: set[UUID] = set()

    def account(self, code: str, **opening: Any) -> Account:
        account_id = Account.create_id(code)
        if account_id not in self.accounts:
            try:
                self.accounts[account_id] = self.app.repository.get(account_id)
            except AggregateNotFoundError:
                self.accounts[account_id] = Account(code=code, **opening)
                self.opened.add(account_id)
        return self.accounts[account_id]

    def by_id(self, account_id: UUID) -> Account:
        if account_id not in self.accounts:
            self.accounts[account_id] = self.app.repository.get(account_id)
        return self.accounts[account_id]

    def transfer(self, key: str) -> Transfer:
        transfer_id = Transfer.create_id(key)
        if transfer_id not in self.transfers:
            self.transfers[transfer_id] = self.app.repository.get(transfer_id)
        return self.transfers[transfer_id]

    def open(self, key: str, debit: Account, credit: Account, amount: int, *, pending: bool,
             facts: TransferFacts, expires_at: datetime | None = None) -> Transfer:
        transfer = open_transfer(key, debit, credit, amount, pending=pending, facts=facts,
                                 expires_at=expires_at)
        self.transfers[transfer.id] = transfer
        return transfer

    def aggregates(self) -> list[Any]:
        return [*self.accounts.values(), *self.transfers.values()]


class LedgerApplication(ServiceApplication):
    name = "Ledger"
    # Aggregates read again and again (a provider's payable account takes an event for every
    # hold and posting, a visit's reservation and holds are read again when it is charged)
    # come from a cache that follows the notification log, so several ledger processes stay
    # correct. Sized for a day of a city's visits (4-5 aggregates each, scheduled hours before
    # they are charged): at 5,000 the pipeline bench read most of them from the store again
    # (221-225 visits/s; 20,000: 266-289/s, 8 MB more resident at 2,000 visits). Set
    # LEDGER_AGGREGATE_CACHE_MAXSIZE to change it.
    env = {"AGGREGATE_CACHE_MAXSIZE": "20000"}
    subscriptions: dict[str, set[str]] = {
        VISITS: {"VisitScheduled", "VisitRescheduled", "VisitCancelled", "VisitVerified",
                 "ElderErased"},
        FUNDING: {"CreditsReserved", "CreditsReservationRejected"},
    }
    personal_data = PERSONAL_DATA

    def __init__(self, env: dict[str, str] | None = None, timezone: str = "Asia/Shanghai",
                 rules: RuleBook | None = None, region: str = "yiwu") -> None:
        super().__init__(env)
        self.tz = ZoneInfo(timezone)
        self.region = region
        self._seed_rules = rules or load_rule_book(region=region)
        self._lock = threading.Lock()
        self._transfers_by_account: dict[UUID, list[UUID]] = defaultdict(list)
        self._packages_by_elder: dict[str, list[str]] = defaultdict(list)
        self._elders_by_area: dict[str, set[str]] = defaultdict(set)
        self._charge_visits: dict[UUID, str] = {}
        self._charges_by_area: dict[str, set[str]] = defaultdict(set)
        self._open_reservations: dict[UUID, str] = {}
        self._blocked_by_provider: dict[str, set[str]] = defaultdict(set)
        self._accounts_by_owner: dict[str, list[UUID]] = defaultdict(list)
        self.index = FollowingReadModel(self, self._index, applies_to=INDEXED_EVENTS)

    # Read model ------------------------------------------------------------------------------
    def _index(self, e: Any) -> None:
        name = type(e).__qualname__
        if name == "Transfer.Created":
            for account_id in (e.debit_account_id, e.credit_account_id):
                self._transfers_by_account[account_id].append(e.originator_id)
        elif name == "Account.Opened" and e.owner_id:
            self._accounts_by_owner[e.owner_id].append(e.originator_id)
        elif name == "FamilyPackage.Bought":
            self._packages_by_elder[e.elder_id].append(e.package_id)
        elif name == "ElderProfile.Registered":
            self._elders_by_area[e.service_area_id].add(e.elder_id)
        elif name == "Charge.Made":
            self._charge_visits[e.originator_id] = e.visit_id
            self._charges_by_area[e.service_area_id].add(e.visit_id)
            if e.blocked:
                self._blocked_by_provider[e.provider_id].add(e.visit_id)
        elif name == "Charge.Unblocked":
            visit_id = self._charge_visits[e.originator_id]
            for blocked in self._blocked_by_provider.values():
                blocked.discard(visit_id)
        elif name in ("Reservation.Requested", "Reservation.Renewed"):
            self._open_reservations[e.originator_id] = getattr(e, "visit_id", "")
        elif name in ("Reservation.Rejected", "Reservation.Charged", "Reservation.Released"):
            self._open_reservations.pop(e.originator_id, None)

    # Rules -----------------------------------------------------------------------------------
    @property
    def rules(self) -> RuleBook:
        record = self.get_or_none(RuleBookRecord.create_id(self.region))
        return RuleBook.from_json(record.book) if record else self._seed_rules

    def add_rule_version(self, version: dict[str, Any], added_by: str) -> RuleBook:
        """A new version of the region's rules, in force from its effective date."""
        new = EntitlementRuleSet.from_json(self.region, version)
        book = self.rules.with_version(new)
        record = self.get_or_none(RuleBookRecord.create_id(self.region))
        if record is None:
            record = RuleBookRecord(region=self.region, book=self._seed_rules.to_json())
        record.add_version(book=book.to_json(), added_by=added_by)
        self.save(record)
        return book

    def entitlement_for(self, elder_id: str, month: str) -> Entitlement:
        return self._entitled(self.get_profile(elder_id), month)

    def _entitled(self, profile: ElderProfile, month: str) -> Entitlement:
        """The elder's entitlement for the month, from their facts.

        An erased elder's facts are gone: a month granted before the erasure keeps the minutes
        granted (the books say how many), its reason and category read as erased; a month not
        granted before gets nothing (dispatch takes no new orders for an erased elder)."""
        start = date.fromisoformat(month + "-01")
        if not profile.erased:
            return self.rules.entitlement(profile.elder_facts(), start)
        grant = self.get_or_none(Transfer.create_id(f"grant:{profile.elder_id}:{month}"))
        return Entitlement(grant.amount if grant is not None else 0, ERASED,
                           self.rules.in_force(start).name, "erased")

    # Elders, providers, packages ---------------------------------------------------------------
    def register_elder(self, elder_id: str, service_area_id: str,
                       facts: ElderFacts) -> ElderProfile:
        stored = facts.to_json()
        profile = self.get_or_none(ElderProfile.create_id(elder_id))
        if profile is None:
            profile = ElderProfile(elder_id=elder_id, service_area_id=service_area_id,
                                   facts=stored)
        elif profile.erased:
            raise LedgerError(f"elder {elder_id} was erased on request; the ledger keeps their "
                              "accounts under the id, not new facts")
        elif profile.facts != stored:
            profile.change_facts(facts=stored, elder_id=elder_id)
        self.save(profile)
        return profile

    def get_profile(self, elder_id: str) -> ElderProfile:
        profile = self.get_or_none(ElderProfile.create_id(elder_id))
        if profile is None:
            raise NotFound(f"the ledger has no elder {elder_id}")
        return profile

    def _provider(self, provider_id: str) -> Provider:
        return self.get_or_none(Provider.create_id(provider_id)) or Provider(provider_id)

    def blacklist_provider(self, provider_id: str, reason: str) -> Provider:
        provider = self._provider(provider_id)
        provider.blacklist(reason=reason)
        self.save(provider)
        return provider

    def reinstate_provider(self, provider_id: str, reason: str) -> Provider:
        """Lift the blacklist and post the charges that were blocked meanwhile."""
        provider = self._provider(provider_id)
        provider.reinstate(reason=reason)
        self.save(provider)
        self.index.catch_up()
        for visit_id in sorted(self._blocked_by_provider.get(provider_id, set())):
            self._retry_on_conflict(lambda v=visit_id: self._post_blocked(v))
        return provider

    def is_blacklisted(self, provider_id: str) -> bool:
        provider = self.get_or_none(Provider.create_id(provider_id))
        return bool(provider and provider.blacklisted)

    def buy_package(self, elder_id: str, package_id: str, minutes: int, price_fen: int,
                    expires_on: date, bought_by: str) -> FamilyPackage:
        """The family buys an hour package: minutes into the package account, money paid."""
        self.get_profile(elder_id)
        if self.get_or_none(FamilyPackage.create_id(package_id)) is not None:
            return self.repository.get(FamilyPackage.create_id(package_id))
        if minutes <= 0 or price_fen < 0:
            raise LedgerError("a package has positive minutes and a price of at least 0 fen")
        package = FamilyPackage(package_id=package_id, elder_id=elder_id, minutes=minutes,
                                price_fen=price_fen, expires_on=expires_on, bought_by=bought_by)
        books = _Books(self)
        account = books.account(package.account_code, debits_must_not_exceed_credits=True,
                                owner_id=elder_id, kind="package")
        books.open(f"package:{package_id}:minutes",
                   books.account(package_sales_account(self.region), kind="funding"),
                   account, minutes, pending=False,
                   facts=TransferFacts(f"hour package bought by {bought_by}",
                                       funding_source=FundingSource.FAMILY_PACKAGE))
        if price_fen:
            books.open(f"package:{package_id}:payment",
                       books.account(family_cash_account(elder_id), unit="fen", kind="cash"),
                       books.account(package_revenue_account(self.region), unit="fen",
                                     kind="revenue"),
                       price_fen, pending=False,
                       facts=TransferFacts(f"payment for hour package {package_id}"))
        self.save(package, *books.aggregates())
        return package

    def packages_of(self, elder_id: str) -> list[FamilyPackage]:
        self.index.catch_up()
        return [self.repository.get(FamilyPackage.create_id(p))
                for p in self._packages_by_elder.get(elder_id, [])]

    # Entitlement accounts -----------------------------------------------------------------------
    def _entitlement_account(self, books: _Books, profile: ElderProfile, month: str) -> Account:
        """The elder's account for the month, granted from the city's fund when first opened."""
        account = books.account(entitlement_account(profile.elder_id, month),
                                debits_must_not_exceed_credits=True,
                                owner_id=profile.elder_id, kind="entitlement")
        if account.id in books.opened:
            entitled = self._entitled(profile, month)
            if entitled.minutes > 0 and not profile.erased:
                books.open(f"grant:{profile.elder_id}:{month}",
                           books.account(city_funding_account(self.region), kind="funding"),
                           account, entitled.minutes, pending=False,
                           facts=TransferFacts(
                               f"monthly entitlement ({entitled.category}) "
                               f"[{entitled.rule_set}]", funding_source=FundingSource.ENTITLEMENT))
        return account

    # Reservations: phase one -------------------------------------------------------------------
    def _local_month(self, at: datetime) -> str:
        return month_of(at.astimezone(self.tz).date())

    def _payable(self, books: _Books, provider_id: str, area: str) -> Account:
        return books.account(provider_payable_account(provider_id, area),
                             kind="provider_payable", owner_id=provider_id)

    def _reserve(self, event: VisitScheduled) -> list[Any]:
        p = event.payload
        if p.caregiver_kind is CaregiverKind.VOLUNTEER or p.provider_id is None:
            return []  # volunteers: the time bank funds and credits them
        if self.get_or_none(Reservation.create_id(p.visit_id)) is not None:
            return []  # reserved already (a second VisitScheduled for the same visit)
        if self.get_or_none(CancelledBeforeScheduled.create_id(p.visit_id)) is not None:
            return []  # cancelled before it was scheduled (events arrived out of order)
        if self.get_or_none(Charge.create_id(p.visit_id)) is not None:
            return []  # verified before its schedule arrived (out of order): charged already
        profile = self._profile_for(p.elder_id, p.visit_id)
        reservation = Reservation(
            visit_id=p.visit_id, elder_id=p.elder_id, provider_id=p.provider_id,
            service_area_id=event.service_area_id, service_type=p.service_type,
            month=self._local_month(p.planned_start), requested_minutes=p.planned_minutes,
            use_time_credits=p.use_time_credits,
            credit_account_id=p.time_credit_account_id or (
                p.elder_id if p.use_time_credits else None),
            out_of_pocket_agreed=p.out_of_pocket_agreed,
            expires_at=self._expiry(p.planned_end), cause_event_id=str(event.event_id),
            correlation_id=str(event.correlation_id))
        books = _Books(self)
        self._hold_entitlement(books, profile, reservation)
        return [reservation, *books.aggregates()]

    def _expiry(self, planned_end: datetime) -> datetime:
        start = max(planned_end, datetime.now(UTC))
        return start + timedelta(hours=self.rules.hold_ttl_hours)

    def _profile_for(self, elder_id: str, visit_id: str) -> ElderProfile:
        profile = self.get_or_none(ElderProfile.create_id(elder_id))
        if profile is None:
            raise UnknownElder(f"visit {visit_id} names elder {elder_id}, "
                               "who is not registered in the ledger")
        return profile

    def _hold(self, books: _Books, res: Reservation, source: FundingSource, debit: Account,
              minutes: int) -> None:
        key = f"hold:{res.visit_id}:{res.attempt}:{source.value}:{debit.code}"
        books.open(key, debit, self._payable(books, res.provider_id, res.service_area_id),
                   minutes, pending=True, expires_at=res.expires_at,
                   facts=TransferFacts(f"hold for visit {res.visit_id}", res.visit_id,
                                       res.cause_event_id, source))
        res.add_leg(source=source.value, account=debit.code, minutes=minutes, transfer_key=key)

    def _hold_entitlement(self, books: _Books, profile: ElderProfile, res: Reservation) -> None:
        entitlement = self._entitlement_account(books, profile, res.month)
        take = min(res.requested_minutes, max(0, entitlement.available))
        if take:
            self._hold(books, res, FundingSource.ENTITLEMENT, entitlement, take)
        left = res.requested_minutes - take
        if left > 0 and res.use_time_credits:
            res.await_credits(minutes=left)  # -> CreditsHoldRequested; answered by the time bank
            return
        self._hold_the_rest(books, res)

    def _hold_the_rest(self, books: _Books, res: Reservation) -> None:
        """After entitlement and credits: packages (soonest expiry first), then out of pocket."""
        visit_day = date.fromisoformat(res.month + "-01")
        sources = []
        for package in sorted(self.packages_of(res.elder_id), key=lambda p: p.expires_on):
            if package.expires_on >= visit_day:
                account = books.account(package.account_code)
                sources.append(Source(FundingSource.FAMILY_PACKAGE, account.code,
                                      account.available))
        if res.out_of_pocket_agreed:
            sources.append(Source(FundingSource.OUT_OF_POCKET,
                                  out_of_pocket_account(res.elder_id), None))
        left = res.requested_minutes - res.held_minutes
        for source, minutes in take_in_order(left, sources):
            opening = {"kind": "receivable", "owner_id": res.elder_id}
            self._hold(books, res, source.source, books.account(source.account, **opening),
                       minutes)
        if res.held_minutes < res.requested_minutes:
            self._void_holds(books, res, reason="rejected")
            res.reject(reason=self._shortfall_reason(res), available_minutes=res.held_minutes)
        else:
            res.complete()

    @staticmethod
    def _shortfall_reason(res: Reservation) -> str:
        short = res.requested_minutes - res.held_minutes
        parts = [f"{short} of {res.requested_minutes} minutes cannot be funded"]
        if not res.out_of_pocket_agreed:
            parts.append("the elder has not agreed to pay out of pocket")
        return "; ".join(parts)

    def _void_holds(self, books: _Books, res: Reservation, reason: str,
                    cause: str | None = None) -> int:
        voided = 0
        for leg in res.legs:
            if not leg["transfer_key"]:
                continue  # held by the time bank, released there
            transfer = books.transfer(leg["transfer_key"])
            if transfer.state is TransferState.PENDING:
                void_pending(transfer, books.by_id(transfer.debit_account_id),
                             books.by_id(transfer.credit_account_id), reason=reason,
                             cause_event_id=cause)
                voided += transfer.amount
        return voided

    def _credits_answered(self, visit_id: str, minutes: int, account_id: str | None,
                          time_bank_reservation_id: str | None) -> list[Any]:
        res = self.get_or_none(Reservation.create_id(visit_id))
        if res is None or res.state is not ReservationState.AWAITING_CREDITS:
            return []  # cancelled or answered meanwhile: the time bank releases on its side
        if minutes > 0:
            res.add_leg(source=FundingSource.TIME_CREDITS.value, account=account_id or "",
                        minutes=min(minutes, res.credits_asked), transfer_key=None,
                        time_bank_reservation_id=time_bank_reservation_id)
        books = _Books(self)
        self._hold_the_rest(books, res)
        if res.verified_early is not None:
            # Verified while the answer was awaited: charge now, with the credits answered.
            return self._settle(books, res, Verification.from_json(res.verified_early))
        return [res, *books.aggregates()]

    # Phase two ----------------------------------------------------------------------------------
    def _release(self, visit_id: str, reason: str, cause: str | None) -> list[Any]:
        res = self.get_or_none(Reservation.create_id(visit_id))
        if res is None:
            return []
        if not res.open:
            return []
        books = _Books(self)
        released = self._void_holds(books, res, reason=reason, cause=cause)
        res.release(reason=reason, released_minutes=released)
        return [res, *books.aggregates()]

    def _cancelled(self, event: VisitCancelled) -> list[Any]:
        res = self.get_or_none(Reservation.create_id(event.payload.visit_id))
        if res is None:
            marker = self.get_or_none(CancelledBeforeScheduled.create_id(event.payload.visit_id))
            if marker is None:
                return [CancelledBeforeScheduled(visit_id=event.payload.visit_id)]
            return []
        if res.charge_waits:
            # Verified, then cancelled (dispatch cancels only visits not started): the visit
            # took place, so it is charged, without the credits the time bank now releases.
            return self._credits_answered(event.payload.visit_id, 0, None, None)
        return self._release(event.payload.visit_id, "cancelled", str(event.event_id))

    def _rescheduled(self, event: VisitRescheduled) -> list[Any]:
        p = event.payload
        res = self.get_or_none(Reservation.create_id(p.visit_id))
        if res is None or res.state not in (ReservationState.HELD, ReservationState.REJECTED):
            return []
        month = self._local_month(p.planned_start)
        if month == res.month and p.planned_minutes == res.requested_minutes:
            return []  # same minutes, same month: the holds stand
        books = _Books(self)
        self._void_holds(books, res, reason="rescheduled", cause=str(event.event_id))
        res.renew(requested_minutes=p.planned_minutes, month=month,
                  expires_at=self._expiry(p.planned_end))
        self._hold_entitlement(books, self._profile_for(res.elder_id, res.visit_id), res)
        return [res, *books.aggregates()]

    def expire_holds(self, now: datetime | None = None) -> int:
        """Release every hold whose time ran out; returns how many reservations expired."""
        now = now or datetime.now(UTC)
        self.index.catch_up()
        expired = 0
        for reservation_id in list(self._open_reservations):
            res = self.repository.get(reservation_id)
            if not res.open or res.expires_at > now:
                continue
            charge = self.get_or_none(Charge.create_id(res.visit_id))
            if charge is not None and charge.blocked:
                continue  # a blocked charge keeps its holds until the provider is reinstated
            self._retry_on_conflict(lambda r=res: self.save(*self._expire(r.visit_id)))
            expired += 1
        return expired

    def _expire(self, visit_id: str) -> list[Any]:
        """An expired reservation is released; one whose visit was verified while the time
        bank's answer was awaited is charged instead, as if the time bank had held nothing."""
        res = self.get_or_none(Reservation.create_id(visit_id))
        if res is not None and res.charge_waits:
            return self._credits_answered(visit_id, 0, None, None)
        return self._release(visit_id, "expired", None)

    def periodic_tasks(self) -> list[tuple[float, Callable[[], Any]]]:
        return [(60.0, self.expire_holds)]

    # Charging -------------------------------------------------------------------------------------
    def _charged_month(self, area: str, month: str) -> str:
        while self.get_or_none(MonthClose.create_id(area, month)) is not None:
            month = next_month(month)
        return month

    def _charge(self, event: VisitVerified) -> list[Any]:
        p = event.payload
        if p.caregiver_kind is CaregiverKind.VOLUNTEER or p.provider_id is None:
            return []
        if self.get_or_none(Charge.create_id(p.visit_id)) is not None:
            return []  # charged already
        profile = self._profile_for(p.elder_id, p.visit_id)  # an unknown elder fails here
        verification = Verification(
            visit_id=p.visit_id, elder_id=p.elder_id, provider_id=p.provider_id,
            service_area_id=event.service_area_id, service_type=p.service_type,
            started_at=p.started_at, actual_minutes=p.actual_minutes,
            cause_event_id=str(event.event_id), correlation_id=str(event.correlation_id))
        res = self.get_or_none(Reservation.create_id(p.visit_id))
        if res is not None and res.state is ReservationState.AWAITING_CREDITS:
            if res.verified_early is None:
                # The time bank has not answered yet: the credits it may hold are part of
                # this visit's funding, so the charge waits for the answer (or the expiry).
                res.note_verification(verification=verification.to_json())
                return [res]
            return []  # verified already, the charge still waits
        books = _Books(self)
        return self._settle(books, res, verification, profile)

    def _settle(self, books: _Books, res: Reservation | None, v: Verification,
                profile: ElderProfile | None = None) -> list[Any]:
        """Charge a verified visit: the held legs if the reservation holds the minutes, else
        what is free now from entitlement and packages; minutes beyond that are unfunded.
        ``profile``: the elder's, when the caller has just read it (it holds sealed personal
        facts and is never cached: each read is a query and a decryption)."""
        profile = profile or self._profile_for(v.elder_id, v.visit_id)
        service_month = self._local_month(v.started_at)
        blocked = self.is_blacklisted(v.provider_id)
        if res is not None and res.state is ReservationState.HELD:
            legs = [dict(leg) for leg in res.legs]
        else:
            # Never reserved (or reservation rejected, released): fund what is free now from
            # entitlement and packages; the rest is unfunded, for review.
            if res is not None and res.open:
                self._void_holds(books, res, reason="superseded by charge", cause=None)
            legs = self._direct_legs(books, profile, service_month, v.actual_minutes)
        shares = split_actual(v.actual_minutes, legs)
        charged_legs = [
            {"source": leg["source"], "account_id": leg["account"], "minutes": share}
            for leg, share in zip(legs, shares, strict=True) if share > 0
        ]
        unfunded = v.actual_minutes - sum(shares)
        transfer_ids: list[str] = []
        if not blocked:
            transfer_ids = self._post_legs(books, v.visit_id, v.provider_id,
                                           v.service_area_id, legs, shares, v.cause_event_id)
            if res is not None and res.state is ReservationState.HELD:
                res.charged(shares=shares)
        entitlement = books.account(entitlement_account(v.elder_id, service_month),
                                    debits_must_not_exceed_credits=True,
                                    owner_id=v.elder_id, kind="entitlement")
        used_entitlement = any(leg["source"] == FundingSource.ENTITLEMENT.value
                               for leg in charged_legs)
        charge = Charge(
            visit_id=v.visit_id, elder_id=v.elder_id, provider_id=v.provider_id,
            service_area_id=v.service_area_id, service_type=v.service_type,
            charged_minutes=sum(shares), legs=charged_legs, transfer_ids=transfer_ids,
            cause_event_id=v.cause_event_id, correlation_id=v.correlation_id,
            service_month=service_month,
            charged_month=self._charged_month(v.service_area_id, service_month),
            entitlement_exhausted=used_entitlement and entitlement.available == 0 and not blocked,
            entitled_minutes=entitlement.credits_posted, used_minutes=entitlement.debits_posted,
            unfunded_minutes=unfunded, blocked=blocked,
            amount_fen=0,
        )
        aggregates = [charge, *books.aggregates()]
        if res is not None and res not in aggregates:
            aggregates.append(res)
        return aggregates

    def _direct_legs(self, books: _Books, profile: ElderProfile, month: str,
                     minutes: int) -> list[dict[str, Any]]:
        entitlement = self._entitlement_account(books, profile, month)
        sources = [Source(FundingSource.ENTITLEMENT, entitlement.code, entitlement.available)]
        day = date.fromisoformat(month + "-01")
        for package in sorted(self.packages_of(profile.elder_id), key=lambda p: p.expires_on):
            if package.expires_on >= day:
                account = books.account(package.account_code)
                sources.append(Source(FundingSource.FAMILY_PACKAGE, account.code,
                                      account.available))
        return [{"source": s.source.value, "account": s.account, "minutes": m,
                 "transfer_key": None, "direct": True}
                for s, m in take_in_order(minutes, sources)]

    def _post_legs(self, books: _Books, visit_id: str, provider_id: str, area: str,
                   legs: list[dict[str, Any]], shares: list[int], cause: str) -> list[str]:
        payable = self._payable(books, provider_id, area)
        ids: list[str] = []
        for leg, share in zip(legs, shares, strict=True):
            source = FundingSource(leg["source"])
            facts = TransferFacts("verified visit", visit_id, cause, source)
            if leg.get("transfer_key"):
                transfer = books.transfer(leg["transfer_key"])
                if transfer.state is TransferState.PENDING:
                    post_pending(transfer, books.by_id(transfer.debit_account_id), payable,
                                 share, cause_event_id=cause)
                    if share:
                        ids.append(str(transfer.id))
                continue
            if share <= 0:
                continue
            if source is FundingSource.TIME_CREDITS:
                debit = books.account(timebank_reserve_account(self.region), kind="funding")
            else:
                debit = books.account(leg["account"])
            transfer = books.open(f"charge:{visit_id}:{source.value}:{leg['account']}", debit,
                                  payable, share, pending=False, facts=facts)
            ids.append(str(transfer.id))
        return ids

    def _post_blocked(self, visit_id: str) -> None:
        charge = self.repository.get(Charge.create_id(visit_id))
        if not charge.blocked:
            return
        books = _Books(self)
        res = self.get_or_none(Reservation.create_id(visit_id))
        if res is not None and res.state is ReservationState.HELD:
            legs = [dict(leg) for leg in res.legs]
            shares = split_actual(charge.charged_minutes, legs)
            res.charged(shares=shares)
        else:
            legs = [{"source": leg["source"], "account": leg["account_id"],
                     "minutes": leg["minutes"], "transfer_key": None} for leg in charge.legs]
            shares = [leg["minutes"] for leg in legs]
        ids = self._post_legs(books, visit_id, charge.provider_id, charge.service_area_id, legs,
                              shares, charge.cause_event_id)
        charge.unblock(transfer_ids=ids, charged_month=self._charged_month(
            charge.service_area_id, self._local_month(datetime.now(UTC))))
        self.save(charge, *([res] if res is not None else []), *books.aggregates())

    def reverse_charge(self, visit_id: str, reason: str, by: str) -> Charge:
        """A correction: reversing transfers for every posting of the charge (never an edit)."""
        charge = self.get_or_none(Charge.create_id(visit_id))
        if charge is None:
            raise NotFound(f"no charge for visit {visit_id}")
        if charge.reversed:
            raise LedgerError(f"the charge of visit {visit_id} is reversed already")
        if charge.blocked:
            raise LedgerError(f"the charge of visit {visit_id} is blocked, not posted")
        books = _Books(self)
        reversal_ids = []
        for transfer_id in charge.transfer_ids:
            original = self.repository.get(UUID(transfer_id))
            # The reversal moves the posted amount back: credit side is debited.
            reversal = books.open(f"reversal:{original.key}", books.by_id(
                original.credit_account_id), books.by_id(original.debit_account_id),
                original.posted_amount, pending=False, facts=TransferFacts(
                    f"reversal: {reason}", visit_id, None, original.funding_source))
            reversal_ids.append(str(reversal.id))
        month = self._charged_month(charge.service_area_id,
                                    self._local_month(datetime.now(UTC)))
        charge.reverse(reason=reason, reversal_transfer_ids=reversal_ids, by=by,
                       reversed_in_month=month)
        self.save(charge, *books.aggregates())
        return charge

    # Erasure ---------------------------------------------------------------------------------
    def erase_elder(self, elder_id: str, by: str, at: datetime) -> ElderProfile | None:
        """Crypto-shred the elder's facts and grant reasons: record who and when (if the ledger
        knows the elder), then delete the elder's key. Accounts, transfers and every total stay.

        Idempotent: erasing again deletes the key again (in case that step failed before)."""
        profile = self.get_or_none(ElderProfile.create_id(elder_id))
        if profile is not None and profile.erased_at is None:
            profile.erase(by=by, at=at)
            self.save(profile)
        self.erase_subject(f"elder:{elder_id}")
        return profile

    def _erased(self, event: ElderErased) -> list[Any]:
        """The consumer's erasure: the Erased event is saved with the message's tracking record;
        the key is deleted first (deleting it again on a redelivery is harmless)."""
        p = event.payload
        self.erase_subject(f"elder:{p.elder_id}")
        profile = self.get_or_none(ElderProfile.create_id(p.elder_id))
        if profile is None or profile.erased_at is not None:
            return []
        profile.erase(by=p.erased_by, at=p.erased_at)
        return [profile]

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        if isinstance(event, ElderErased):
            processing.collect_events(*self._erased(event))
        elif isinstance(event, VisitScheduled):
            processing.collect_events(*self._reserve(event))
        elif isinstance(event, VisitVerified):
            processing.collect_events(*self._charge(event))
        elif isinstance(event, VisitCancelled):
            processing.collect_events(*self._cancelled(event))
        elif isinstance(event, VisitRescheduled):
            processing.collect_events(*self._rescheduled(event))
        elif isinstance(event, CreditsReserved):
            p = event.payload
            processing.collect_events(*self._credits_answered(
                p.visit_id, p.minutes, p.account_id, p.reservation_id))
        elif isinstance(event, CreditsReservationRejected):
            processing.collect_events(*self._credits_answered(
                event.payload.visit_id, 0, None, None))

    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        return translate(self, domain_event)

    # Direct commands (tests, API, the concurrency guarantee) ---------------------------------
    def reserve(self, event: VisitScheduled) -> Reservation:
        """Reserve for a scheduled visit outside the consumer (retries on concurrent writes)."""
        self._retry_on_conflict(lambda: self.save(*self._reserve(event)))
        return self.repository.get(Reservation.create_id(event.payload.visit_id))

    def _retry_on_conflict(self, work: Callable[[], Any], attempts: int = 50) -> Any:
        for attempt in range(attempts):
            try:
                return work()
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
        return None

    # Queries -----------------------------------------------------------------------------------
    def balance(self, elder_id: str, month: str) -> Balance:
        entitled = self.entitlement_for(elder_id, month)
        account = self.get_or_none(Account.create_id(entitlement_account(elder_id, month)))
        if account is not None:
            granted, used = account.credits_posted, account.debits_posted
            held, available = account.debits_pending, account.available
        else:
            granted, used, held, available = entitled.minutes, 0, 0, entitled.minutes
        oop = self.get_or_none(Account.create_id(out_of_pocket_account(elder_id)))
        day = date.fromisoformat(month + "-01")
        package_minutes = sum(
            a.available for p in self.packages_of(elder_id) if p.expires_on >= day
            for a in [self.repository.get(Account.create_id(p.account_code))])
        return Balance(elder_id, month, granted, used, held, available,
                       -oop.balance if oop else 0, package_minutes, entitled.reason,
                       entitled.category, entitled.rule_set)

    def account_by_code(self, code: str) -> Account:
        account = self.get_or_none(Account.create_id(code))
        if account is None:
            raise NotFound(f"no account {code}")
        return account

    def postings(self, code: str) -> list[Transfer]:
        self.index.catch_up()
        return [self.repository.get(t)
                for t in self._transfers_by_account.get(Account.create_id(code), [])]

    def history(self, elder_id: str) -> list[tuple[Account, Transfer]]:
        """Every posting on any of the elder's accounts, oldest first."""
        self.index.catch_up()
        self.get_profile(elder_id)
        rows = []
        for account_id in self._accounts_by_owner.get(elder_id, []):
            account = self.repository.get(account_id)
            rows += [(account, self.repository.get(t))
                     for t in self._transfers_by_account.get(account_id, [])]
        return sorted(rows, key=lambda row: (row[1].created_on, row[1].key))

    # Owners, for the access checks (None: the ledger does not know the record) ----------------
    def area_of_elder(self, elder_id: str) -> str | None:
        """The service area the elder is registered in."""
        profile = self.get_or_none(ElderProfile.create_id(elder_id))
        return profile.service_area_id if profile is not None else None

    def area_of_visit(self, visit_id: str) -> str | None:
        """The service area of a visit the ledger charged or holds minutes for."""
        record = (self.get_or_none(Charge.create_id(visit_id))
                  or self.get_or_none(Reservation.create_id(visit_id)))
        return record.service_area_id if record is not None else None

    def charge_for(self, visit_id: str) -> Charge:
        charge = self.get_or_none(Charge.create_id(visit_id))
        if charge is None:
            raise NotFound(f"no charge for visit {visit_id}")
        return charge

    def reservation_for(self, visit_id: str) -> Reservation:
        res = self.get_or_none(Reservation.create_id(visit_id))
        if res is None:
            raise NotFound(f"no reservation for visit {visit_id}")
        return res

    def blocked_charges(self, provider_id: str) -> list[Charge]:
        self.index.catch_up()
        return [self.charge_for(v) for v in sorted(self._blocked_by_provider.get(provider_id, ()))]

    def trial_balance(self) -> dict[str, int]:
        """Sum of all posted balances per unit; zero unless the books are broken."""
        self.index.catch_up()
        totals: dict[str, int] = defaultdict(int)
        for account_id in self._transfers_by_account:
            account = self.repository.get(account_id)
            totals[account.unit] += account.balance
        return dict(totals)

    def entitlement_minutes(self, month: str) -> tuple[int, int]:
        """(held, posted) minutes over every elder's entitlement account of the month
        (the homecare_entitlement_minutes gauge, computed when /metrics is scraped)."""
        self.index.catch_up()
        held = posted = 0
        for owner in list(self._accounts_by_owner):
            account = self.get_or_none(Account.create_id(entitlement_account(owner, month)))
            if account is not None:
                held += account.debits_pending
                posted += account.debits_posted
        return held, posted

    def charges_in_area(self, area: str) -> list[Charge]:
        self.index.catch_up()
        return [self.charge_for(v) for v in sorted(self._charges_by_area.get(area, ()))]

    # Settlement --------------------------------------------------------------------------------
    def is_month_closed(self, area: str, month: str) -> bool:
        return self.get_or_none(MonthClose.create_id(area, month)) is not None

    def statements(self, area: str, month: str) -> list[dict[str, Any]]:
        """The month's statements: fixed if the month is closed, a draft otherwise."""
        closed = self.get_or_none(MonthClose.create_id(area, month))
        if closed is not None:
            return closed.statements
        return [s.to_json() for s in self._draft_statements(area, month)]

    def _draft_statements(self, area: str, month: str) -> list[Statement]:
        rules = self.rules
        return build_statements(self.charges_in_area(area), month, area,
                                rules.rate_fen_per_hour)

    def close_month(self, area: str, month: str, by: str) -> MonthClose:
        """Close a month: statements fixed, unused entitlement lapses (or carries over)."""
        if self.get_or_none(MonthClose.create_id(area, month)) is not None:
            raise MonthClosed(f"{month} is closed already for {area}")
        self.index.catch_up()
        statements = [s.to_json() for s in self._draft_statements(area, month)]
        summary = self.civil_affairs_summary(area, month)
        books = _Books(self)
        rule = self.rules.in_force(date.fromisoformat(month + "-01"))
        lapsed = 0
        for elder_id in sorted(self._elders_by_area.get(area, ())):
            account = self.get_or_none(Account.create_id(entitlement_account(elder_id, month)))
            if account is None or account.available <= 0:
                continue
            account = books.account(account.code)
            if rule.unused_entitlement == "carry_over":
                target = self._entitlement_account(books, self.get_profile(elder_id),
                                                   next_month(month))
                reason = f"unused entitlement of {month} carried over"
            else:
                target = books.account(city_funding_account(self.region), kind="funding")
                reason = f"unused entitlement of {month} lapses"
            lapsed += account.available
            books.open(f"lapse:{elder_id}:{month}", account, target, account.available,
                       pending=False, facts=TransferFacts(reason))
        # The sub-district settles each statement's amount with the provider (money, in fen).
        for statement in statements:
            if statement["amount_fen"] > 0:
                books.open(f"settlement:{area}:{month}:{statement['provider_id']}",
                           books.account(subdistrict_settlement_account(area), unit="fen",
                                         kind="funding"),
                           books.account(provider_settled_account(statement["provider_id"],
                                                                  area),
                                         unit="fen", kind="provider_settled",
                                         owner_id=statement["provider_id"]),
                           statement["amount_fen"], pending=False,
                           facts=TransferFacts(f"settlement of {month}: {statement['visits']} "
                                               f"visits, {statement['minutes']} minutes"))
        close = MonthClose(service_area_id=area, month=month, statements=statements,
                           summary=summary, closed_by=by, lapsed_minutes=lapsed)
        self.save(close, *books.aggregates())
        return close

    def civil_affairs_summary(self, area: str, month: str) -> dict[str, Any]:
        """Utilisation of entitlements by category, and the entitled elders who used nothing."""
        self.index.catch_up()
        by_category: dict[str, dict[str, int]] = defaultdict(
            lambda: {"elders": 0, "entitled_minutes": 0, "used_minutes": 0})
        unused: list[str] = []
        for elder_id in sorted(self._elders_by_area.get(area, ())):
            entitled = self.entitlement_for(elder_id, month)
            if entitled.minutes == 0:
                continue
            account = self.get_or_none(Account.create_id(entitlement_account(elder_id, month)))
            used = account.debits_posted if account else 0
            row = by_category[entitled.category]
            row["elders"] += 1
            row["entitled_minutes"] += entitled.minutes
            row["used_minutes"] += used
            if used == 0:
                unused.append(elder_id)
        for row in by_category.values():
            row["utilisation_percent"] = (math.floor(100 * row["used_minutes"]
                                                     / row["entitled_minutes"])
                                          if row["entitled_minutes"] else 0)
        return {"service_area_id": area, "month": month, "by_category": dict(by_category),
                "entitled_elders_who_used_nothing": unused}
