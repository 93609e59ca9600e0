"""Time bank: volunteers' credit accounts and earning (commands and queries)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent

from contracts.envelope import IntegrationEvent
from contracts.events.funding import CreditsEarned
from contracts.events.visits import VisitVerified
from contracts.topics import VISITS
from contracts.values import CaregiverKind
from services.runtime.double_entry import Account, TransferFacts, open_transfer
from services.runtime.eventstore import ServiceApplication
from services.runtime.outbox import integration_event_id
from services.timebank.domain.credits import (
    Earning,
    credited_minutes,
    issuance_account,
    volunteer_account,
)


class NotFound(LookupError):
    pass


@dataclass
class CreditBalance:
    volunteer_id: str
    account: str
    balance_minutes: int
    held_minutes: int
    available_minutes: int
    earned_minutes: int


class TimebankApplication(ServiceApplication):
    name = "Timebank"
    subscriptions: dict[str, set[str]] = {VISITS: {"VisitVerified"}}

    def __init__(self, env: dict[str, str] | None = None, multiplier_permille: int = 1000) -> None:
        super().__init__(env)
        self.multiplier_permille = multiplier_permille

    def open_account(self, volunteer_id: str) -> Account:
        code = volunteer_account(volunteer_id)
        try:
            return self.repository.get(Account.create_id(code))
        except AggregateNotFoundError:
            account = Account(code=code, debits_must_not_exceed_credits=True,
                              owner_id=volunteer_id, kind="volunteer")
            self.save(account)
            return account

    def balance(self, volunteer_id: str) -> CreditBalance:
        code = volunteer_account(volunteer_id)
        try:
            account = self.repository.get(Account.create_id(code))
        except AggregateNotFoundError:
            raise NotFound(f"no time-bank account for {volunteer_id}") from None
        return CreditBalance(volunteer_id, code, account.balance, account.debits_pending,
                             account.available, account.credits_posted)

    def earning_for(self, visit_id: str) -> Earning:
        try:
            return self.repository.get(Earning.create_id(visit_id))
        except AggregateNotFoundError:
            raise NotFound(f"no credits earned for visit {visit_id}") from None

    # Consumer policy -------------------------------------------------------------------------
    def policy(self, event: IntegrationEvent, processing: ProcessingEvent) -> None:
        if isinstance(event, VisitVerified):
            processing.collect_events(*self._earn(event))

    def _earn(self, event: VisitVerified) -> list[Any]:
        p = event.payload
        if p.caregiver_kind is not CaregiverKind.VOLUNTEER:
            return []
        if Earning.create_id(p.visit_id) in self.repository:
            return []  # earned already for this visit
        credit = credited_minutes(p.actual_minutes, self.multiplier_permille)
        code = volunteer_account(p.caregiver_id)
        try:
            account = self.repository.get(Account.create_id(code))
        except AggregateNotFoundError:
            account = Account(code=code, debits_must_not_exceed_credits=True,
                              owner_id=p.caregiver_id, kind="volunteer")
        aggregates: list[Any] = [account]
        if credit > 0:
            try:
                issued = self.repository.get(
                    Account.create_id(issuance_account(event.service_area_id)))
            except AggregateNotFoundError:
                issued = Account(code=issuance_account(event.service_area_id), kind="issuance")
            transfer = open_transfer(
                f"earn:{p.visit_id}", issued, account, credit, pending=False,
                facts=TransferFacts("credits for verified volunteer service", p.visit_id,
                                    str(event.event_id)))
            aggregates += [issued, transfer]
        aggregates.append(Earning(
            visit_id=p.visit_id, volunteer_id=p.caregiver_id, account_code=code,
            service_area_id=event.service_area_id, served_minutes=p.actual_minutes,
            credited_minutes=credit, multiplier_permille=self.multiplier_permille,
            balance_after_minutes=account.balance, cause_event_id=str(event.event_id),
            correlation_id=str(event.correlation_id)))
        return aggregates

    # Outbox translation ----------------------------------------------------------------------
    def translate(self, domain_event: Any) -> Iterable[IntegrationEvent]:
        if type(domain_event).__qualname__ != "Earning.Recorded":
            return
        e = domain_event
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
                     "balance_after_minutes": e.balance_after_minutes},
        )
