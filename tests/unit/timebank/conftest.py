"""Helpers for the time bank's application tests: an in-memory store and contract events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Tracking

from contracts.events.funding import (
    CreditsHoldRequested,
    ReservationReleased,
    VisitCharged,
)
from contracts.events.visits import VisitCancelled, VisitScheduled, VisitVerified
from services.timebank.application import TimebankApplication
from services.timebank.domain.rules import EarningCaps, TimebankRules

START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
AREAS = {"a1": "A", "b1": "B", "c1": "C"}


class Events:
    """Builds the contract events the time bank consumes, and feeds them like the consumer."""

    def __init__(self, app: TimebankApplication) -> None:
        self.app = app
        self.positions = itertools.count(1)

    def feed(self, event: Any) -> list[Any]:
        """Apply one event as the consumer would (policy, then one atomic save) and return the
        integration events the outbox would publish for it."""
        processing = ProcessingEvent(tracking=Tracking("test", next(self.positions)))
        self.app.policy(event, processing)
        self.app._record(processing)
        return [out for e in processing.events for out in self.app.translate(e)]

    @staticmethod
    def verified(visit_id: str, caregiver: str, minutes: int, *, area: str = "a1",
                 kind: str = "volunteer", service: str = "welfare_check",
                 confirmation: str = "elder_code", start: datetime = START) -> VisitVerified:
        return VisitVerified(service_area_id=area, payload={
            "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": "E-1",
            "caregiver_id": caregiver, "caregiver_kind": kind,
            "provider_id": None if kind == "volunteer" else "P-1", "service_type": service,
            "started_at": start, "ended_at": start + timedelta(minutes=max(minutes, 1)),
            "actual_minutes": minutes, "planned_minutes": 60, "confirmation": confirmation,
            "location_verified": True})

    @staticmethod
    def scheduled(visit_id: str, caregiver: str, elder: str, minutes: int, *,
                  area: str = "a1", account: str | None = None) -> VisitScheduled:
        return VisitScheduled(service_area_id=area, payload={
            "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder,
            "caregiver_id": caregiver, "caregiver_kind": "volunteer",
            "service_type": "companionship", "planned_start": START,
            "planned_end": START + timedelta(minutes=minutes), "planned_minutes": minutes,
            "use_time_credits": True, "time_credit_account_id": account})

    @staticmethod
    def hold_requested(visit_id: str, account: str, minutes: int, *,
                       area: str = "a1") -> CreditsHoldRequested:
        return CreditsHoldRequested(service_area_id=area, payload={
            "visit_id": visit_id, "elder_id": "E-1", "account_id": account, "minutes": minutes,
            "expires_at": START + timedelta(days=1)})

    @staticmethod
    def charged(visit_id: str, credit_minutes: int, other_minutes: int = 0, *,
                area: str = "a1") -> VisitCharged:
        legs = [{"source": "entitlement", "account_id": "elder:E-1:entitlement:2026-11",
                 "minutes": other_minutes}] if other_minutes else []
        legs.append({"source": "time_credits", "account_id": "tb", "minutes": credit_minutes})
        return VisitCharged(service_area_id=area, payload={
            "visit_id": visit_id, "elder_id": "E-1", "provider_id": "P-1",
            "charged_minutes": credit_minutes + other_minutes, "legs": legs})

    @staticmethod
    def cancelled(visit_id: str, *, area: str = "a1") -> VisitCancelled:
        return VisitCancelled(service_area_id=area, payload={
            "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": "E-1",
            "reason": "elder in hospital"})

    @staticmethod
    def released(visit_id: str, reason: str, *, area: str = "a1") -> ReservationReleased:
        return ReservationReleased(service_area_id=area, payload={
            "reservation_id": "R", "visit_id": visit_id, "elder_id": "E-1",
            "released_minutes": 10, "reason": reason})


def make_app(**rules: Any) -> TimebankApplication:
    rules.setdefault("banks_by_area", AREAS)
    rules.setdefault("caps", EarningCaps(per_day_minutes=None, balance_cap_minutes=None))
    return TimebankApplication(rules=TimebankRules(**rules))


@pytest.fixture
def app() -> TimebankApplication:
    return make_app()


@pytest.fixture
def events(app: TimebankApplication) -> Events:
    return Events(app)


def published(app: TimebankApplication, aggregate_id: Any) -> list[Any]:
    """What the outbox relay publishes for the stored events of one aggregate."""
    return [out for stored in app.recorder.select_events(aggregate_id)
            for out in app.translate(app.mapper.to_domain_event(stored))]
