"""Two-phase reservations of a visit's minutes, in the fixed funding order.

A visit is funded entitlement -> time credits (if the elder chose them; the time bank holds
those) -> family hour package -> out of pocket (only if the elder agreed). Phase one holds minutes
(pending transfers); at verification the actual minutes are posted in the same order, never more
than was held, and the rest released; cancellation voids; a hold never resolved expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import FundingSource
from services.runtime.eventstore import stable_id

FUNDING_ORDER = (FundingSource.ENTITLEMENT, FundingSource.TIME_CREDITS,
                 FundingSource.FAMILY_PACKAGE, FundingSource.OUT_OF_POCKET)


class ReservationState(StrEnum):
    REQUESTED = "requested"
    AWAITING_CREDITS = "awaiting_credits"
    HELD = "held"
    REJECTED = "rejected"
    CHARGED = "charged"
    RELEASED = "released"


@dataclass(frozen=True)
class Source:
    """One place minutes may come from, with what it can give now."""

    source: FundingSource
    account: str
    available: int | None  # None: unlimited (out of pocket, when agreed)


def take_in_order(requested: int, sources: list[Source]) -> list[tuple[Source, int]]:
    """Take ``requested`` minutes from the sources in the order given, each up to what it has."""
    taken: list[tuple[Source, int]] = []
    left = requested
    for source in sources:
        if left <= 0:
            break
        can = left if source.available is None else min(left, max(0, source.available))
        if can > 0:
            taken.append((source, can))
            left -= can
    return taken


def split_actual(actual: int, legs: list[dict[str, Any]]) -> list[int]:
    """How many of the actual minutes each held leg pays, in funding order, never more than held.

    Returns one number per leg (same order as ``legs``); minutes beyond all holds are left over.
    """
    order = {source.value: i for i, source in enumerate(FUNDING_ORDER)}
    shares = [0] * len(legs)
    left = actual
    for i in sorted(range(len(legs)), key=lambda i: order[legs[i]["source"]]):
        take = min(left, legs[i]["minutes"])
        shares[i] = take
        left -= take
    return shares


@dataclass(frozen=True)
class Verification:
    """What the ledger charges from a VisitVerified (kept on a reservation while it waits)."""

    visit_id: str
    elder_id: str
    provider_id: str
    service_area_id: str
    service_type: str
    started_at: datetime
    actual_minutes: int
    cause_event_id: str
    correlation_id: str

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "started_at": self.started_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        return cls(**{**data, "started_at": datetime.fromisoformat(data["started_at"])})


class Reservation(Aggregate):
    """The funding of one visit, from request to charge or release."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("reservation", visit_id)

    @event("Requested")
    def __init__(self, visit_id: str, elder_id: str, provider_id: str, service_area_id: str,
                 service_type: str, month: str, requested_minutes: int, use_time_credits: bool,
                 credit_account_id: str | None, out_of_pocket_agreed: bool, expires_at: datetime,
                 cause_event_id: str, correlation_id: str) -> None:
        self.visit_id = visit_id
        self.elder_id = elder_id
        self.provider_id = provider_id
        self.service_area_id = service_area_id
        self.service_type = service_type
        self.month = month
        self.requested_minutes = requested_minutes
        self.use_time_credits = use_time_credits
        self.credit_account_id = credit_account_id
        self.out_of_pocket_agreed = out_of_pocket_agreed
        self.expires_at = expires_at
        self.cause_event_id = cause_event_id
        self.correlation_id = correlation_id
        self.state = ReservationState.REQUESTED
        # Each leg: source, account (code, or the time bank's account id), minutes, transfer key.
        self.legs: list[dict[str, Any]] = []
        self.attempt = 1
        self.rejection: str | None = None
        self.release_reason: str | None = None
        self.credits_asked = 0
        # A verification that arrived while the time bank's answer was still awaited: the
        # charge is made when the answer comes (or the reservation expires), never without it.
        self.verified_early: dict[str, Any] | None = None

    @property
    def held_minutes(self) -> int:
        return sum(leg["minutes"] for leg in self.legs)

    @property
    def open(self) -> bool:
        return self.state in (ReservationState.REQUESTED, ReservationState.AWAITING_CREDITS,
                              ReservationState.HELD)

    @event("LegHeld")
    def add_leg(self, source: str, account: str, minutes: int, transfer_key: str | None,
                time_bank_reservation_id: str | None = None) -> None:
        self.legs.append({"source": source, "account": account, "minutes": minutes,
                          "transfer_key": transfer_key,
                          "time_bank_reservation_id": time_bank_reservation_id})

    @event("CreditsRequested")
    def await_credits(self, minutes: int) -> None:
        self.state = ReservationState.AWAITING_CREDITS
        self.credits_asked = minutes

    @event("VerifiedWhileAwaitingCredits")
    def note_verification(self, verification: dict[str, Any]) -> None:
        """The visit was verified before the time bank answered: remember what to charge."""
        self.verified_early = verification

    @property
    def charge_waits(self) -> bool:
        """Verified, and the charge waits for the time bank's answer to the credits asked."""
        return self.state is ReservationState.AWAITING_CREDITS and self.verified_early is not None

    @event("Held")
    def complete(self) -> None:
        self.state = ReservationState.HELD

    @event("Rejected")
    def reject(self, reason: str, available_minutes: int) -> None:
        self.state = ReservationState.REJECTED
        self.rejection = reason
        self.available_minutes = available_minutes
        self.legs_voided = [dict(leg) for leg in self.legs]

    @event("Charged")
    def charged(self, shares: list[int]) -> None:
        self.state = ReservationState.CHARGED
        self.shares = shares

    @event("Released")
    def release(self, reason: str, released_minutes: int) -> None:
        self.state = ReservationState.RELEASED
        self.release_reason = reason
        self.released_minutes = released_minutes

    @event("Renewed")
    def renew(self, requested_minutes: int, month: str, expires_at: datetime) -> None:
        """The visit was rescheduled: the old holds were voided; funding starts again."""
        self.attempt += 1
        self.requested_minutes = requested_minutes
        self.month = month
        self.expires_at = expires_at
        self.legs = []
        self.state = ReservationState.REQUESTED
        self.credits_asked = 0


class CancelledBeforeScheduled(Aggregate):
    """A cancellation that arrived before its schedule: the schedule, when it comes, is ignored."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("visit-cancelled", visit_id)

    @event("Noted")
    def __init__(self, visit_id: str) -> None:
        self.visit_id = visit_id
