"""The ledger's chart of accounts (labor minutes and fen) and the records around it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.ledger.domain.entitlement import ElderFacts
from services.runtime.eventstore import stable_id

# Account codes. Minutes and fen live in separate accounts (a transfer never mixes units).


def entitlement_account(elder_id: str, month: str) -> str:
    """The elder's subsidised minutes for one month (never below zero)."""
    return f"elder:{elder_id}:entitlement:{month}"


def package_account(elder_id: str, package_id: str) -> str:
    """Minutes of one hour package the family bought (never below zero; expires)."""
    return f"elder:{elder_id}:package:{package_id}"


def out_of_pocket_account(elder_id: str) -> str:
    """Minutes the elder owes for, not covered by any fund (a receivable)."""
    return f"elder:{elder_id}:out_of_pocket"


def provider_payable_account(provider_id: str, service_area_id: str) -> str:
    """Minutes the sub-district owes a provider for verified visits."""
    return f"provider:{provider_id}:payable:{service_area_id}"


def city_funding_account(region: str) -> str:
    """The city's purchase of subsidised hours: the source of every entitlement grant."""
    return f"funding:city:{region}"


def subdistrict_settlement_account(service_area_id: str) -> str:
    """Money (fen) the sub-district (镇街道) pays providers at monthly settlement."""
    return f"funding:subdistrict:{service_area_id}"


def provider_settled_account(provider_id: str, service_area_id: str) -> str:
    """Money (fen) settled to a provider by a sub-district, statement by statement."""
    return f"provider:{provider_id}:settled:{service_area_id}"


def package_sales_account(region: str) -> str:
    """Where bought package minutes come from (sold by providers through the centre)."""
    return f"funding:packages:{region}"


def timebank_reserve_account(region: str) -> str:
    """The time bank's guarantee fund (储备机制): pays providers for credit-funded visits."""
    return f"funding:timebank_reserve:{region}"


def family_cash_account(elder_id: str) -> str:
    """Money (fen) the family paid for packages."""
    return f"elder:{elder_id}:cash_paid"


def package_revenue_account(region: str) -> str:
    return f"revenue:packages:{region}"


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + (mon == 12):04d}-{mon % 12 + 1:02d}"


# What an erased elder's facts read as (the same words as the stores' erased fields).
ERASED_FACTS = "[erased]"


class FactsErased(LookupError):
    """The elder's facts were erased on request: nothing can be computed from them any more."""


class ElderProfile(Aggregate):
    """What the ledger knows of an elder: the facts entitlement is computed from.

    The facts (birth date, 低保, disability ...) are sensitive personal data: the application
    seals them with the elder's own key, which an erasure deletes; they then read as
    ``"[erased]"``."""

    @staticmethod
    def create_id(elder_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("ledger-elder", elder_id)

    @event("Registered")
    def __init__(self, elder_id: str, service_area_id: str, facts: dict[str, Any]) -> None:
        self.elder_id = elder_id
        self.service_area_id = service_area_id
        self.facts: dict[str, Any] | str = facts
        self.erased_at: datetime | None = None
        self.erased_by: str | None = None

    @event("FactsChanged")
    def change_facts(self, facts: dict[str, Any], elder_id: str | None = None) -> None:
        # elder_id: the event names whose facts these are, so they are sealed with that
        # elder's key (None in events stored before facts were sealed).
        self.facts = facts

    @property
    def erased(self) -> bool:
        return self.erased_at is not None or self.facts == ERASED_FACTS

    @event("Erased")
    def erase(self, by: str, at: datetime) -> None:
        """The elder's facts erased on request: who and when, nothing about the person."""
        self.erased_at, self.erased_by = at, by
        self.facts = ERASED_FACTS

    def elder_facts(self) -> ElderFacts:
        if self.erased or not isinstance(self.facts, dict):
            raise FactsErased(f"the facts of elder {self.elder_id} were erased on request")
        return ElderFacts.from_json(self.facts)


class Provider(Aggregate):
    """A provider organisation as the ledger sees it: payable, or blacklisted (失信黑名单)."""

    @staticmethod
    def create_id(provider_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("ledger-provider", provider_id)

    @event("Registered")
    def __init__(self, provider_id: str, name: str = "") -> None:
        self.provider_id = provider_id
        self.name = name
        self.blacklisted = False
        self.blacklist_reason: str | None = None

    @event("Blacklisted")
    def blacklist(self, reason: str) -> None:
        self.blacklisted = True
        self.blacklist_reason = reason

    @event("Reinstated")
    def reinstate(self, reason: str) -> None:
        self.blacklisted = False
        self.blacklist_reason = None
        self.reinstate_reason = reason


class FamilyPackage(Aggregate):
    """An hour package the family bought for the elder, valid until its expiry date."""

    @staticmethod
    def create_id(package_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("package", package_id)

    @event("Bought")
    def __init__(self, package_id: str, elder_id: str, minutes: int, price_fen: int,
                 expires_on: date, bought_by: str) -> None:
        self.package_id = package_id
        self.elder_id = elder_id
        self.minutes = minutes
        self.price_fen = price_fen
        self.expires_on = expires_on
        self.bought_by = bought_by

    @property
    def account_code(self) -> str:
        return package_account(self.elder_id, self.package_id)

    def valid_on(self, day: date) -> bool:
        return day <= self.expires_on


class Charge(Aggregate):
    """The charge of one verified visit: how its minutes were funded, leg by leg.

    ``service_month`` is when the visit took place; ``charged_month`` the month whose statement
    carries it (the next open one when the service month was closed already).
    """

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("charge", visit_id)

    @event("Made")
    def __init__(self, visit_id: str, elder_id: str, provider_id: str, service_area_id: str,
                 service_type: str, charged_minutes: int, legs: list[dict[str, Any]],
                 transfer_ids: list[str], cause_event_id: str, correlation_id: str,
                 service_month: str, charged_month: str, entitlement_exhausted: bool,
                 entitled_minutes: int, used_minutes: int, unfunded_minutes: int = 0,
                 blocked: bool = False, amount_fen: int = 0) -> None:
        self.visit_id = visit_id
        self.elder_id = elder_id
        self.provider_id = provider_id
        self.service_area_id = service_area_id
        self.service_type = service_type
        self.charged_minutes = charged_minutes
        self.legs = legs
        self.transfer_ids = transfer_ids
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.service_month = service_month
        self.charged_month = charged_month
        self.entitlement_exhausted = entitlement_exhausted
        self.entitled_minutes = entitled_minutes
        self.used_minutes = used_minutes
        # Minutes served beyond what was held: never posted without a second reservation.
        self.unfunded_minutes = unfunded_minutes
        # A blacklisted provider's charge is kept, not posted, until reinstated.
        self.blocked = blocked
        self.amount_fen = amount_fen
        self.reversed = False

    @property
    def month(self) -> str:
        return self.service_month

    @event("Unblocked")
    def unblock(self, transfer_ids: list[str], charged_month: str) -> None:
        self.blocked = False
        self.transfer_ids = transfer_ids
        self.charged_month = charged_month

    @event("Reversed")
    def reverse(self, reason: str, reversal_transfer_ids: list[str], by: str,
                reversed_in_month: str) -> None:
        self.reversed = True
        self.reversal_reason = reason
        self.reversal_transfer_ids = reversal_transfer_ids
        self.reversed_by = by
        self.reversed_in_month = reversed_in_month


class RuleBookRecord(Aggregate):
    """The region's entitlement rules as changed through the API (the file is the seed)."""

    @staticmethod
    def create_id(region: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("rulebook", region)

    @event("Seeded")
    def __init__(self, region: str, book: dict[str, Any]) -> None:
        self.region = region
        self.book = book

    @event("VersionAdded")
    def add_version(self, book: dict[str, Any], added_by: str) -> None:
        self.book = book
        self.last_added_by = added_by
