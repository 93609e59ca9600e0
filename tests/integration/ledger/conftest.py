"""Ledger application on a real event store, fed integration events through its consumer."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from contracts.events.funding import CreditsReservationRejected, CreditsReserved
from contracts.events.visits import VisitCancelled, VisitRescheduled, VisitScheduled, VisitVerified
from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome

AREA = "A1"
NOV = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, str]]] = []

    async def publish(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))


class LedgerHarness:
    """Feeds events to the ledger's consumer and reads what the outbox would publish."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.dlq = RecordingPublisher()
        self.consumer = IdempotentConsumer(app, "homecare-ledger",
                                           {t: app.policy for ts in app.subscriptions.values()
                                            for t in ts}, self.dlq, backoff_s=0.01,
                                           max_attempts=2)
        self._offsets = itertools.count()

    async def feed(self, event: Any) -> Outcome:
        message = ConsumedMessage(topic=event.topic, partition=0, offset=next(self._offsets),
                                  key=event.key(), value=event.to_bytes())
        return await self.consumer.consume(message)

    def published(self, type_name: str | None = None) -> list[Any]:
        out = []
        for n in self.app.process_recorder.select_notifications(1, 100_000):
            for event in self.app.translate(self.app.mapper.to_domain_event(n)):
                if type_name is None or event.type == type_name:
                    out.append(event)
        return out


def scheduled(visit_id: str, minutes: int = 60, elder: str = "E-1", start: datetime = NOV,
              credits: bool = False, oop: bool = False, provider: str = "P-1",
              kind: str = "employee") -> VisitScheduled:
    return VisitScheduled(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder,
        "caregiver_id": "C-1", "caregiver_kind": kind,
        "provider_id": provider if kind == "employee" else None, "service_type": "cleaning",
        "planned_start": start, "planned_end": start + timedelta(minutes=minutes),
        "planned_minutes": minutes, "use_time_credits": credits, "out_of_pocket_agreed": oop})


def rescheduled(visit_id: str, minutes: int, elder: str = "E-1",
                start: datetime = NOV) -> VisitRescheduled:
    return VisitRescheduled(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder,
        "caregiver_id": "C-1", "previous_caregiver_id": "C-1", "planned_start": start,
        "planned_end": start + timedelta(minutes=minutes), "planned_minutes": minutes,
        "reason": "moved"})


def verified(visit_id: str, minutes: int, elder: str = "E-1", start: datetime = NOV,
             provider: str = "P-1") -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder,
        "caregiver_id": "C-1", "caregiver_kind": "employee", "provider_id": provider,
        "service_type": "cleaning", "started_at": start,
        "ended_at": start + timedelta(minutes=max(minutes, 1)), "actual_minutes": minutes,
        "planned_minutes": 60, "confirmation": "elder_code", "location_verified": True})


def cancelled(visit_id: str, elder: str = "E-1") -> VisitCancelled:
    return VisitCancelled(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": elder,
        "reason": "elder in hospital", "cancelled_by": "family"})


def credits_reserved(visit_id: str, minutes: int) -> CreditsReserved:
    return CreditsReserved(service_area_id=AREA, payload={
        "reservation_id": f"TB-{visit_id}", "visit_id": visit_id, "account_id": "member:E-1",
        "minutes": minutes, "expires_at": NOV + timedelta(days=3)})


def credits_rejected(visit_id: str, requested: int) -> CreditsReservationRejected:
    return CreditsReservationRejected(service_area_id=AREA, payload={
        "visit_id": visit_id, "account_id": "member:E-1", "requested_minutes": requested,
        "available_minutes": 0, "reason": "no credits"})


@pytest.fixture
def ledger(persistence):
    app = LedgerApplication(env=persistence)
    # Aged 96: 4 h (240 min) a month. E-2: 低保 with disability: 8 h.
    app.register_elder("E-1", AREA, ElderFacts(birth_date=date(1930, 1, 1)))
    app.register_elder("E-2", AREA, ElderFacts(birth_date=date(1950, 1, 1), dibao=True,
                                               disability_qualifies=True))
    app.register_elder("E-3", AREA, ElderFacts(birth_date=date(1931, 5, 5)))
    yield LedgerHarness(app)
    app.close()
