"""The time bank's side of the funding protocol through the effectively-once consumer, on SQLite
and PostgreSQL: duplicates hold once, the charge posts once, cancellations are idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.events.funding import CreditsHoldRequested, VisitCharged
from contracts.events.visits import VisitCancelled, VisitVerified
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome
from services.timebank.application import TimebankApplication

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, str]]] = []

    async def publish(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))


@pytest.fixture
def timebank(persistence):
    app = TimebankApplication(env=persistence)
    yield app
    app.close()


def _consumer(app: TimebankApplication, dlq: RecordingPublisher) -> IdempotentConsumer:
    handlers = {name: app.policy for names in app.subscriptions.values() for name in names}
    return IdempotentConsumer(app, "homecare-timebank", handlers, dlq, backoff_s=0.01)


def _message(event, offset: int) -> ConsumedMessage:
    return ConsumedMessage(topic=event.topic, partition=0, offset=offset, key=b"A1",
                           value=event.to_bytes())


def _verified(visit_id: str, minutes: int) -> VisitVerified:
    return VisitVerified(service_area_id="A1", payload={
        "visit_id": visit_id, "order_id": "O", "elder_id": "E-9", "caregiver_id": "vol",
        "caregiver_kind": "volunteer", "service_type": "welfare_check", "started_at": START,
        "ended_at": START + timedelta(minutes=minutes), "actual_minutes": minutes,
        "planned_minutes": minutes, "confirmation": "family_proxy", "location_verified": True})


async def test_hold_charge_and_cancel_through_the_consumer(timebank):
    """Earn 90; a hold request delivered twice holds once; the charge posts 50 of 60 held and
    releases 10; a cancelled second visit gives its hold back, twice delivered, once applied."""
    dlq = RecordingPublisher()
    consumer = _consumer(timebank, dlq)
    assert await consumer.consume(_message(_verified("V0", 90), 0)) is Outcome.PROCESSED
    request = CreditsHoldRequested(service_area_id="A1", payload={
        "visit_id": "V1", "elder_id": "E-9", "account_id": "vol", "minutes": 60,
        "expires_at": START + timedelta(days=1)})
    assert await consumer.consume(_message(request, 1)) is Outcome.PROCESSED
    assert await consumer.consume(_message(request, 2)) is Outcome.DUPLICATE
    assert timebank.balance("vol").held_minutes == 60
    charged = VisitCharged(service_area_id="A1", payload={
        "visit_id": "V1", "elder_id": "E-9", "provider_id": "P", "charged_minutes": 50,
        "legs": [{"source": "time_credits", "account_id": "member:A1:vol", "minutes": 50}]})
    assert await consumer.consume(_message(charged, 3)) is Outcome.PROCESSED
    second = CreditsHoldRequested(service_area_id="A1", payload={
        "visit_id": "V2", "elder_id": "E-9", "account_id": "member:A1:vol", "minutes": 30,
        "expires_at": START + timedelta(days=1)})
    await consumer.consume(_message(second, 4))
    cancel = VisitCancelled(service_area_id="A1", payload={
        "visit_id": "V2", "order_id": "O", "elder_id": "E-9", "reason": "ill"})
    assert await consumer.consume(_message(cancel, 5)) is Outcome.PROCESSED
    again = VisitCancelled(service_area_id="A1", payload=cancel.payload)  # new event id
    assert await consumer.consume(_message(again, 6)) is Outcome.UNCHANGED  # released already
    balance = timebank.balance("vol")
    assert (balance.balance_minutes, balance.held_minutes) == (40, 0)
    assert timebank.hold_for("V1").state == "redeemed"
    assert timebank.hold_for("V2").state == "released"
    assert dlq.sent == []
    assert timebank.trial_balance() == 0
    # The outbox publishes the protocol's answers in order.
    published = [out.type for n in timebank.process_recorder.select_notifications(1, 1000)
                 for out in timebank.translate(timebank.mapper.to_domain_event(n))]
    assert published == ["CreditsEarned", "CreditsReserved", "CreditsRedeemed",
                         "CreditsReleased", "CreditsReserved", "CreditsReleased"]
