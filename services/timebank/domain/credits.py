"""Time credits (时间银行): what a volunteer earns for verified service.

One minute served earns one minute of credit unless a programme's multiplier says otherwise
(kept in permille so the books stay in integers). Credits are issued from the bank's issuance
account into the volunteer's account by a posted double-entry transfer.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import stable_id


def volunteer_account(volunteer_id: str) -> str:
    return f"volunteer:{volunteer_id}"


def issuance_account(service_area_id: str) -> str:
    """Where credits come from: the bank's liability to its members, by service area."""
    return f"bank:{service_area_id}:issued"


def credited_minutes(served_minutes: int, multiplier_permille: int) -> int:
    """Credit for minutes served, rounded down (never more than the programme allows)."""
    if served_minutes < 0 or multiplier_permille <= 0:
        raise ValueError("served minutes must be >= 0 and the multiplier positive")
    return served_minutes * multiplier_permille // 1000


class Earning(Aggregate):
    """Credits earned for one verified visit (at most once per visit)."""

    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("earning", visit_id)

    @event("Recorded")
    def __init__(self, visit_id: str, volunteer_id: str, account_code: str, service_area_id: str,
                 served_minutes: int, credited_minutes: int, multiplier_permille: int,
                 balance_after_minutes: int, cause_event_id: str, correlation_id: str) -> None:
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
