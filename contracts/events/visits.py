"""Events on `homecare.visits`: the visit lifecycle, published by dispatch, and an elder's
erasure (on this topic, keyed by the elder's area, it arrives after every earlier visit event of
the elder, so whoever consumes it has seen all of them)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.topics import VISITS
from contracts.values import (
    CaregiverKind,
    CheckMethod,
    ConfirmationMethod,
    GeoPoint,
    Id,
    Minutes,
    PositiveMinutes,
    ServiceType,
    UtcDateTime,
)

__all__ = [
    "VisitScheduled",
    "VisitScheduledPayload",
    "VisitRescheduled",
    "VisitRescheduledPayload",
    "VisitCancelled",
    "VisitCancelledPayload",
    "VisitCheckedIn",
    "VisitCheckedInPayload",
    "VisitCheckedOut",
    "VisitCheckedOutPayload",
    "VisitVerified",
    "VisitVerifiedPayload",
    "VisitDisputed",
    "VisitDisputedPayload",
    "ElderErased",
    "ElderErasedPayload",
]


class _PlannedSpan(EventPayload):
    """A planned start and end: the end must come after the start."""

    planned_start: UtcDateTime
    planned_end: UtcDateTime
    planned_minutes: PositiveMinutes

    @model_validator(mode="after")
    def _span_is_ordered(self) -> _PlannedSpan:
        if self.planned_end <= self.planned_start:
            raise ValueError("planned_end must be after planned_start")
        return self


class VisitScheduledPayload(_PlannedSpan):
    visit_id: Id
    order_id: Id
    elder_id: Id
    caregiver_id: Id
    caregiver_kind: CaregiverKind
    provider_id: Id | None = None  # volunteers serve without a provider organisation
    service_type: ServiceType
    use_time_credits: bool = False
    time_credit_account_id: Id | None = None
    out_of_pocket_agreed: bool = False


class VisitScheduled(IntegrationEvent):
    """A visit was assigned to a caregiver; the ledger and time bank reserve minutes for it."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitScheduled"] = "VisitScheduled"
    schema_version: Literal[1] = 1
    payload: VisitScheduledPayload


class VisitRescheduledPayload(_PlannedSpan):
    visit_id: Id
    order_id: Id
    elder_id: Id
    caregiver_id: Id
    previous_caregiver_id: Id | None = None
    reason: str | None = None


class VisitRescheduled(IntegrationEvent):
    """A visit moved in time or to another caregiver."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitRescheduled"] = "VisitRescheduled"
    schema_version: Literal[1] = 1
    payload: VisitRescheduledPayload


class VisitCancelledPayload(EventPayload):
    visit_id: Id
    order_id: Id
    elder_id: Id
    reason: str
    cancelled_by: str | None = None


class VisitCancelled(IntegrationEvent):
    """A scheduled visit will not take place; its holds are voided."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitCancelled"] = "VisitCancelled"
    schema_version: Literal[1] = 1
    payload: VisitCancelledPayload


class VisitCheckedInPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    caregiver_id: Id
    at: UtcDateTime
    location: GeoPoint | None = None
    location_verified: bool
    distance_m: int | None = Field(default=None, ge=0)  # from the elder's home
    method: CheckMethod


class VisitCheckedIn(IntegrationEvent):
    """The caregiver arrived at the elder's home."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitCheckedIn"] = "VisitCheckedIn"
    schema_version: Literal[1] = 1
    payload: VisitCheckedInPayload


class VisitCheckedOutPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    caregiver_id: Id
    at: UtcDateTime
    location: GeoPoint | None = None
    location_verified: bool
    tasks_done: list[str] = Field(default_factory=list)
    actual_minutes: Minutes


class VisitCheckedOut(IntegrationEvent):
    """The caregiver left; the visit awaits verification."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitCheckedOut"] = "VisitCheckedOut"
    schema_version: Literal[1] = 1
    payload: VisitCheckedOutPayload


class VisitVerifiedPayload(EventPayload):
    visit_id: Id
    order_id: Id
    elder_id: Id
    caregiver_id: Id
    caregiver_kind: CaregiverKind
    provider_id: Id | None = None
    service_type: ServiceType
    started_at: UtcDateTime
    ended_at: UtcDateTime
    actual_minutes: Minutes
    planned_minutes: PositiveMinutes
    confirmation: ConfirmationMethod
    location_verified: bool

    @model_validator(mode="after")
    def _minutes_fit_the_visit(self) -> VisitVerifiedPayload:
        if self.ended_at <= self.started_at:
            raise ValueError("ended_at must be after started_at")
        # Nobody is charged (or credited) for more minutes than the caregiver was there.
        elapsed = math.ceil((self.ended_at - self.started_at).total_seconds() / 60)
        if self.actual_minutes > elapsed:
            raise ValueError(
                f"actual_minutes {self.actual_minutes} exceed the {elapsed} minutes "
                "between started_at and ended_at"
            )
        return self


class VisitVerified(IntegrationEvent):
    """A visit took place and was confirmed: the ledger posts it; volunteers earn credits."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitVerified"] = "VisitVerified"
    schema_version: Literal[1] = 1
    payload: VisitVerifiedPayload


class VisitDisputedPayload(EventPayload):
    visit_id: Id
    elder_id: Id
    caregiver_id: Id
    reason: str
    raised_by: str


class VisitDisputed(IntegrationEvent):
    """The elder, family or dispatcher contests that a visit took place as recorded."""

    topic: ClassVar[str] = VISITS
    type: Literal["VisitDisputed"] = "VisitDisputed"
    schema_version: Literal[1] = 1
    payload: VisitDisputedPayload


class ElderErasedPayload(EventPayload):
    elder_id: Id
    erased_by: str = Field(min_length=1)
    erased_at: UtcDateTime


class ElderErased(IntegrationEvent):
    """The elder asked to be forgotten (PIPL art. 47) and dispatch erased their personal data:
    every service shreds its own key of the elder. Ids, who and when only; nothing about the
    person."""

    topic: ClassVar[str] = VISITS
    type: Literal["ElderErased"] = "ElderErased"
    schema_version: Literal[1] = 1
    payload: ElderErasedPayload
