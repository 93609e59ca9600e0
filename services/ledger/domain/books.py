"""The ledger's chart of accounts (minutes of labor time) and its elder profiles."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.ledger.domain.entitlement import ElderFacts
from services.runtime.eventstore import stable_id


def entitlement_account(elder_id: str, month: str) -> str:
    """The elder's subsidised minutes for one month (never below zero)."""
    return f"elder:{elder_id}:entitlement:{month}"


def out_of_pocket_account(elder_id: str) -> str:
    """What the elder owes for minutes not covered by any fund (a receivable)."""
    return f"elder:{elder_id}:out_of_pocket"


def provider_payable_account(provider_id: str, service_area_id: str) -> str:
    """Minutes the sub-district owes a provider for verified visits."""
    return f"provider:{provider_id}:payable:{service_area_id}"


def city_funding_account(region: str) -> str:
    """The city's purchase of subsidised hours: the source of every entitlement grant."""
    return f"funding:city:{region}"


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


class ElderProfile(Aggregate):
    """What the ledger knows of an elder: the facts entitlement is computed from."""

    @staticmethod
    def create_id(elder_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("ledger-elder", elder_id)

    @event("Registered")
    def __init__(self, elder_id: str, service_area_id: str, facts: dict) -> None:
        self.elder_id = elder_id
        self.service_area_id = service_area_id
        self.facts = facts

    @event("FactsChanged")
    def change_facts(self, facts: dict) -> None:
        self.facts = facts

    def elder_facts(self) -> ElderFacts:
        data = dict(self.facts)
        birth = data["birth_date"]
        data["birth_date"] = birth if isinstance(birth, date) else date.fromisoformat(birth)
        return ElderFacts(**data)


class Charge(Aggregate):
    """The charge of one verified visit: how its minutes were funded, leg by leg."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("charge", visit_id)

    @event("Made")
    def __init__(self, visit_id: str, elder_id: str, provider_id: str, service_area_id: str,
                 charged_minutes: int, legs: list[dict], transfer_ids: list[str],
                 cause_event_id: str, correlation_id: str, month: str,
                 entitlement_exhausted: bool, entitled_minutes: int, used_minutes: int) -> None:
        self.visit_id = visit_id
        self.elder_id = elder_id
        self.provider_id = provider_id
        self.service_area_id = service_area_id
        self.charged_minutes = charged_minutes
        self.legs = legs
        self.transfer_ids = transfer_ids
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.month = month
        self.entitlement_exhausted = entitlement_exhausted
        self.entitled_minutes = entitled_minutes
        self.used_minutes = used_minutes
