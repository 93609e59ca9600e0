"""Events on `homecare.funding`: reservations and charges from the ledger and the time bank.

A visit is funded in a fixed order (entitlement, time credits, family package, out of pocket); each
part is one `FundingLeg`. The legs of a hold or a charge always add up to its total.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.topics import FUNDING
from contracts.values import Fen, FundingSource, Id, Minutes, PositiveMinutes, UtcDateTime

__all__ = [
    "FundingLeg",
    "HoursReserved",
    "HoursReservedPayload",
    "ReservationRejected",
    "ReservationRejectedPayload",
    "ReservationReleased",
    "ReservationReleasedPayload",
    "VisitCharged",
    "VisitChargedPayload",
    "EntitlementExhausted",
    "EntitlementExhaustedPayload",
    "CreditsEarned",
    "CreditsEarnedPayload",
    "CreditsHoldRequested",
    "CreditsHoldRequestedPayload",
    "CreditsReserved",
    "CreditsReservedPayload",
    "CreditsReservationRejected",
    "CreditsReservationRejectedPayload",
    "CreditsReleased",
    "CreditsReleasedPayload",
    "CreditsRedeemed",
    "CreditsRedeemedPayload",
    "CreditsGifted",
    "CreditsGiftedPayload",
    "CreditsSettled",
    "CreditsSettledPayload",
]


class FundingLeg(BaseModel):
    """The part of a visit's minutes paid from one source and account."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: FundingSource
    account_id: Id
    minutes: Minutes
    amount_fen: Fen = Field(default=0, ge=0)  # money owed for the leg (out of pocket, packages)


def _legs_add_up(legs: list[FundingLeg], total: int, total_name: str) -> None:
    leg_minutes = sum(leg.minutes for leg in legs)
    if leg_minutes != total:
        raise ValueError(f"legs add up to {leg_minutes} minutes, not {total_name} {total}")


class HoursReservedPayload(EventPayload):
    reservation_id: Id
    visit_id: Id
    elder_id: Id
    requested_minutes: PositiveMinutes
    legs: list[FundingLeg] = Field(min_length=1)
    expires_at: UtcDateTime

    @model_validator(mode="after")
    def _legs_cover_request(self) -> HoursReservedPayload:
        _legs_add_up(self.legs, self.requested_minutes, "requested_minutes")
        return self


class HoursReserved(IntegrationEvent):
    """The ledger holds minutes for a scheduled visit (two-phase: posted or voided later)."""

    topic: ClassVar[str] = FUNDING
    type: Literal["HoursReserved"] = "HoursReserved"
    schema_version: Literal[1] = 1
    payload: HoursReservedPayload


class ReservationRejectedPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    requested_minutes: Minutes
    available_minutes: Minutes
    reason: str


class ReservationRejected(IntegrationEvent):
    """The ledger could not fund a visit: nobody is promised hours that do not exist."""

    topic: ClassVar[str] = FUNDING
    type: Literal["ReservationRejected"] = "ReservationRejected"
    schema_version: Literal[1] = 1
    payload: ReservationRejectedPayload


class ReservationReleasedPayload(EventPayload):
    reservation_id: Id
    visit_id: Id
    elder_id: Id
    released_minutes: Minutes
    reason: Literal["cancelled", "expired", "verified_remainder"]


class ReservationReleased(IntegrationEvent):
    """Held minutes went back: visit cancelled, hold expired, or the rest unused at verification."""

    topic: ClassVar[str] = FUNDING
    type: Literal["ReservationReleased"] = "ReservationReleased"
    schema_version: Literal[1] = 1
    payload: ReservationReleasedPayload


class VisitChargedPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    provider_id: Id | None = None
    charged_minutes: Minutes
    legs: list[FundingLeg]
    posting_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _legs_cover_charge(self) -> VisitChargedPayload:
        _legs_add_up(self.legs, self.charged_minutes, "charged_minutes")
        return self


class VisitCharged(IntegrationEvent):
    """The ledger posted a verified visit's actual minutes (double-entry, immutable)."""

    topic: ClassVar[str] = FUNDING
    type: Literal["VisitCharged"] = "VisitCharged"
    schema_version: Literal[1] = 1
    payload: VisitChargedPayload


class EntitlementExhaustedPayload(EventPayload):
    elder_id: Id
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")  # YYYY-MM, service-area local time
    entitled_minutes: Minutes
    used_minutes: Minutes


class EntitlementExhausted(IntegrationEvent):
    """An elder has used up this month's subsidised labor-hours."""

    topic: ClassVar[str] = FUNDING
    type: Literal["EntitlementExhausted"] = "EntitlementExhausted"
    schema_version: Literal[1] = 1
    payload: EntitlementExhaustedPayload


class CreditsEarnedPayload(EventPayload):
    account_id: Id
    volunteer_id: Id
    visit_id: Id
    served_minutes: Minutes
    credited_minutes: Minutes
    multiplier_permille: int = Field(default=1000, gt=0, strict=True)  # 1000 = one for one
    balance_after_minutes: Minutes


class CreditsEarned(IntegrationEvent):
    """The time bank deposited a volunteer's served minutes as time credits."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsEarned"] = "CreditsEarned"
    schema_version: Literal[1] = 1
    payload: CreditsEarnedPayload


class CreditsHoldRequestedPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    # The account to pay from: the elder's own, or one a relative or the volunteer named.
    account_id: Id
    minutes: PositiveMinutes
    expires_at: UtcDateTime


class CreditsHoldRequested(IntegrationEvent):
    """The ledger, funding a visit in the fixed order, asks the time bank to hold credits for the
    minutes the entitlement does not cover (the elder chose to pay with credits)."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsHoldRequested"] = "CreditsHoldRequested"
    schema_version: Literal[1] = 1
    payload: CreditsHoldRequestedPayload


class CreditsReservedPayload(EventPayload):
    reservation_id: Id
    visit_id: Id
    account_id: Id
    minutes: PositiveMinutes
    expires_at: UtcDateTime


class CreditsReserved(IntegrationEvent):
    """The time bank holds credits for a visit the elder chose to pay with credits."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsReserved"] = "CreditsReserved"
    schema_version: Literal[1] = 1
    payload: CreditsReservedPayload


class CreditsReservationRejectedPayload(EventPayload):
    visit_id: Id
    account_id: Id
    requested_minutes: Minutes
    available_minutes: Minutes
    reason: str


class CreditsReservationRejected(IntegrationEvent):
    """The time bank could not hold the credits asked for."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsReservationRejected"] = "CreditsReservationRejected"
    schema_version: Literal[1] = 1
    payload: CreditsReservationRejectedPayload


class CreditsReleasedPayload(EventPayload):
    reservation_id: Id
    visit_id: Id
    account_id: Id
    minutes: Minutes
    reason: str


class CreditsReleased(IntegrationEvent):
    """Held credits went back to the account."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsReleased"] = "CreditsReleased"
    schema_version: Literal[1] = 1
    payload: CreditsReleasedPayload


class CreditsRedeemedPayload(EventPayload):
    reservation_id: Id
    visit_id: Id
    account_id: Id
    minutes: Minutes


class CreditsRedeemed(IntegrationEvent):
    """Held credits were spent on a verified visit."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsRedeemed"] = "CreditsRedeemed"
    schema_version: Literal[1] = 1
    payload: CreditsRedeemedPayload


class CreditsGiftedPayload(EventPayload):
    gift_id: Id
    from_account_id: Id
    to_account_id: Id
    minutes: PositiveMinutes
    note: str | None = None

    @model_validator(mode="after")
    def _between_two_accounts(self) -> CreditsGiftedPayload:
        if self.from_account_id == self.to_account_id:
            raise ValueError("from_account_id and to_account_id must differ")
        return self


class CreditsGifted(IntegrationEvent):
    """Credits moved from one account to another (e.g. to a relative)."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsGifted"] = "CreditsGifted"
    schema_version: Literal[1] = 1
    payload: CreditsGiftedPayload


class CreditsSettledPayload(EventPayload):
    settlement_id: Id
    period: str = Field(min_length=1)  # the clearing run, e.g. 2026-11
    payer_bank_id: Id  # owed the other bank for care its members redeemed there
    payee_bank_id: Id
    minutes: PositiveMinutes

    @model_validator(mode="after")
    def _between_two_banks(self) -> CreditsSettledPayload:
        if self.payer_bank_id == self.payee_bank_id:
            raise ValueError("payer_bank_id and payee_bank_id must differ")
        return self


class CreditsSettled(IntegrationEvent):
    """Clearing between two time banks (通存通兑): the net position between them was settled
    and both bilateral positions reset to zero; no credit is created or lost."""

    topic: ClassVar[str] = FUNDING
    type: Literal["CreditsSettled"] = "CreditsSettled"
    schema_version: Literal[1] = 1
    payload: CreditsSettledPayload
