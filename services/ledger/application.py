"""Ledger: entitlements and the double-entry books of labor-hours (commands and queries)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent

from contracts.envelope import IntegrationEvent
from contracts.events.funding import EntitlementExhausted, VisitCharged
from contracts.events.visits import VisitVerified
from contracts.topics import VISITS
from contracts.values import CaregiverKind, FundingSource
from services.ledger.domain.books import (
    Charge,
    ElderProfile,
    city_funding_account,
    entitlement_account,
    month_of,
    out_of_pocket_account,
    provider_payable_account,
)
from services.ledger.domain.entitlement import YIWU_2019, ElderFacts, EntitlementRuleSet
from services.runtime.double_entry import Account, Transfer, TransferFacts, open_transfer
from services.runtime.eventstore import ServiceApplication
from services.runtime.outbox import integration_event_id
from services.runtime.readmodel import FollowingReadModel


class NotFound(LookupError):
    pass


class UnknownElder(LookupError):
    """A visit names an elder the ledger has no profile for: never guess who pays."""


@dataclass
class Balance:
    elder_id: str
    month: str
    entitled_minutes: int
    used_minutes: int
    held_minutes: int
    available_minutes: int
    out_of_pocket_minutes: int
    entitlement_reason: str


class _Books:
    """The accounts touched by one unit of work, loaded once each."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.accounts: dict[UUID, Account] = {}
        self.transfers: list[Transfer] = []
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

    def aggregates(self) -> list[Any]:
        return [*self.accounts.values(), *self.transfers]


class LedgerApplication(ServiceApplication):
    name = "Ledger"
    subscriptions: dict[str, set[str]] = {VISITS: {"VisitVerified"}}

    def __init__(self, env: dict[str, str] | None = None, timezone: str = "Asia/Shanghai",
                 rules: EntitlementRuleSet = YIWU_2019) -> None:
        super().__init__(env)
        self.tz = ZoneInfo(timezone)
        self.rules = rules
        self._transfers_by_account: dict[UUID, list[UUID]] = defaultdict(list)
        self.index = FollowingReadModel(self, self._index)

    def _index(self, domain_event: Any) -> None:
        if type(domain_event).__qualname__ == "Transfer.Created":
            for account_id in (domain_event.debit_account_id, domain_event.credit_account_id):
                self._transfers_by_account[account_id].append(domain_event.originator_id)

    # Elders and entitlement ------------------------------------------------------------------
    def register_elder(self, elder_id: str, service_area_id: str,
                       facts: ElderFacts) -> ElderProfile:
        stored = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in vars(facts).items()}
        try:
            profile = self.repository.get(ElderProfile.create_id(elder_id))
            if profile.facts != stored:
                profile.change_facts(facts=stored)
        except AggregateNotFoundError:
            profile = ElderProfile(elder_id=elder_id, service_area_id=service_area_id, facts=stored)
        self.save(profile)
        return profile

    def get_profile(self, elder_id: str) -> ElderProfile:
        try:
            return self.repository.get(ElderProfile.create_id(elder_id))
        except AggregateNotFoundError:
            raise NotFound(f"the ledger has no elder {elder_id}") from None

    def _entitlement_account(self, books: _Books, profile: ElderProfile, month: str) -> Account:
        """The elder's account for the month, granted from the city's fund when first opened."""
        code = entitlement_account(profile.elder_id, month)
        account = books.account(code, debits_must_not_exceed_credits=True,
                                owner_id=profile.elder_id, kind="entitlement")
        if account.id in books.opened:
            entitled = self.rules.entitlement(profile.elder_facts(),
                                              date.fromisoformat(month + "-01"))
            if entitled.minutes > 0:
                fund = books.account(city_funding_account(self.rules.region), kind="funding")
                books.transfers.append(open_transfer(
                    f"grant:{profile.elder_id}:{month}", fund, account, entitled.minutes,
                    pending=False,
                    facts=TransferFacts(reason=f"monthly entitlement: {entitled.reason} "
                                               f"({entitled.rule_set})",
                                        funding_source=FundingSource.ENTITLEMENT),
                ))
        return account

    def balance(self, elder_id: str, month: str) -> Balance:
        profile = self.get_profile(elder_id)
        entitled = self.rules.entitlement(profile.elder_facts(), date.fromisoformat(month + "-01"))
        try:
            account = self.repository.get(Account.create_id(entitlement_account(elder_id, month)))
            granted, used = account.credits_posted, account.debits_posted
            held, available = account.debits_pending, account.available
        except AggregateNotFoundError:
            granted, used, held, available = entitled.minutes, 0, 0, entitled.minutes
        try:
            oop = -self.repository.get(Account.create_id(out_of_pocket_account(elder_id))).balance
        except AggregateNotFoundError:
            oop = 0
        return Balance(elder_id, month, granted, used, held, available, oop, entitled.reason)

    def account_by_code(self, code: str) -> Account:
        try:
            return self.repository.get(Account.create_id(code))
        except AggregateNotFoundError:
            raise NotFound(f"no account {code}") from None

    def postings(self, code: str) -> list[Transfer]:
        self.index.catch_up()
        account_id = Account.create_id(code)
        return [self.repository.get(t) for t in self._transfers_by_account.get(account_id, [])]

    def charge_for(self, visit_id: str) -> Charge:
        try:
            return self.repository.get(Charge.create_id(visit_id))
        except AggregateNotFoundError:
            raise NotFound(f"no charge for visit {visit_id}") from None

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        if isinstance(event, VisitVerified):
            processing.collect_events(*self._charge_verified_visit(event))

    def _charge_verified_visit(self, event: VisitVerified) -> list[Any]:
        p = event.payload
        if p.caregiver_kind is CaregiverKind.VOLUNTEER or p.provider_id is None:
            return []  # volunteers earn time credits in the time bank instead
        try:
            self.repository.get(Charge.create_id(p.visit_id))
            return []  # charged already (a second verification event for the same visit)
        except AggregateNotFoundError:
            pass
        try:
            profile = self.repository.get(ElderProfile.create_id(p.elder_id))
        except AggregateNotFoundError:
            raise UnknownElder(f"visit {p.visit_id} names elder {p.elder_id}, "
                               "who is not registered in the ledger") from None
        month = month_of(p.started_at.astimezone(self.tz).date())
        books = _Books(self)
        entitlement = self._entitlement_account(books, profile, month)
        provider = books.account(provider_payable_account(p.provider_id, event.service_area_id),
                                 kind="provider_payable", owner_id=p.provider_id)
        legs: list[dict[str, Any]] = []
        remaining = p.actual_minutes
        from_entitlement = min(remaining, max(0, entitlement.available))
        cause = str(event.event_id)
        if from_entitlement:
            books.transfers.append(open_transfer(
                f"charge:{p.visit_id}:entitlement", entitlement, provider, from_entitlement,
                pending=False, facts=TransferFacts("verified visit", p.visit_id, cause,
                                                   FundingSource.ENTITLEMENT)))
            legs.append({"source": FundingSource.ENTITLEMENT.value, "account_id": entitlement.code,
                         "minutes": from_entitlement})
            remaining -= from_entitlement
        if remaining:
            oop = books.account(out_of_pocket_account(p.elder_id), kind="receivable",
                                owner_id=p.elder_id)
            books.transfers.append(open_transfer(
                f"charge:{p.visit_id}:out_of_pocket", oop, provider, remaining, pending=False,
                facts=TransferFacts("verified visit beyond entitlement", p.visit_id, cause,
                                    FundingSource.OUT_OF_POCKET)))
            legs.append({"source": FundingSource.OUT_OF_POCKET.value, "account_id": oop.code,
                         "minutes": remaining})
        charge = Charge(
            visit_id=p.visit_id, elder_id=p.elder_id, provider_id=p.provider_id,
            service_area_id=event.service_area_id, charged_minutes=p.actual_minutes, legs=legs,
            transfer_ids=[str(t.id) for t in books.transfers if t.visit_id == p.visit_id],
            cause_event_id=cause, correlation_id=str(event.correlation_id), month=month,
            entitlement_exhausted=bool(from_entitlement) and entitlement.available == 0,
            entitled_minutes=entitlement.credits_posted, used_minutes=entitlement.debits_posted,
        )
        return [*books.aggregates(), charge]

    # Outbox translation ----------------------------------------------------------------------
    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        if type(domain_event).__qualname__ != "Charge.Made":
            return
        c = domain_event
        common = {"occurred_at": c.timestamp, "correlation_id": c.correlation_id,
                  "causation_id": c.cause_event_id, "service_area_id": c.service_area_id}
        if c.charged_minutes > 0:
            yield VisitCharged(
                event_id=integration_event_id(c, "VisitCharged"), **common,
                payload={"visit_id": c.visit_id, "elder_id": c.elder_id,
                         "provider_id": c.provider_id, "charged_minutes": c.charged_minutes,
                         "legs": c.legs, "posting_ids": c.transfer_ids},
            )
        if c.entitlement_exhausted:
            yield EntitlementExhausted(
                event_id=integration_event_id(c, "EntitlementExhausted"), **common,
                payload={"elder_id": c.elder_id, "month": c.month,
                         "entitled_minutes": c.entitled_minutes, "used_minutes": c.used_minutes},
            )

    def trial_balance(self) -> int:
        """Sum of all posted balances; zero unless the books are broken."""
        self.index.catch_up()
        total = 0
        for account_id in self._transfers_by_account:
            total += self.repository.get(account_id).balance
        return total
