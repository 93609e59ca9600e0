"""Dispatch consumes the funding answers of the ledger and the time bank and shows them on the
visit (funded, or not funded with an alert), effectively once, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.events.funding import (
    CreditsReservationRejected,
    CreditsReserved,
    HoursReserved,
    ReservationRejected,
)
from contracts.values import CaregiverKind
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 16)
EXPIRES = datetime(2026, 11, 17, tzinfo=UTC)


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, str]]] = []

    async def publish(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))


@pytest.fixture
def dispatch(persistence):
    app = DispatchApplication(env=persistence)
    app.register_elder(elder_id="E-1", name="王", service_area_id="A1", lat=29.30,
                       lon=120.07, confirmation_code="1111")
    app.register_caregiver(caregiver_id="C-1", name="刘", kind=CaregiverKind.EMPLOYEE,
                           service_area_id="A1", skills=["cleaning"], station_lat=29.3,
                           station_lon=120.07, provider_id="P-1",
                           certificate_expires=date(2027, 1, 1), work_days=list(range(7)))
    app.register_caregiver(caregiver_id="V-1", name="周", kind=CaregiverKind.VOLUNTEER,
                           service_area_id="A1", skills=[], station_lat=29.3,
                           station_lon=120.07, work_days=list(range(7)))
    yield app
    app.close()


def _consumer(app: DispatchApplication, dlq: RecordingPublisher) -> IdempotentConsumer:
    handlers = {t: app.policy for types in app.subscriptions.values() for t in types}
    return IdempotentConsumer(app, "homecare-dispatch", handlers, dlq, backoff_s=0.01)


def _message(event, offset: int) -> ConsumedMessage:
    return ConsumedMessage(topic=event.topic, partition=0, offset=offset, key=b"A1",
                           value=event.to_bytes())


async def test_hours_reserved_marks_the_visit_funded_once(dispatch):
    """HoursReserved shows the visit funded with its legs; the same event again is a
    duplicate and changes nothing."""
    _, visit = dispatch.place_order(PlaceOrder(elder_id="E-1", service_type="cleaning",
                                               requested_date=DAY))
    assert visit is not None and visit.funding == "pending"
    reserved = HoursReserved(service_area_id="A1", payload={
        "reservation_id": "R-1", "visit_id": visit.visit_id, "elder_id": "E-1",
        "requested_minutes": 60, "expires_at": EXPIRES,
        "legs": [{"source": "entitlement", "account_id": "elder:E-1", "minutes": 40},
                 {"source": "family_package", "account_id": "pkg:E-1", "minutes": 20}]})
    consumer = _consumer(dispatch, RecordingPublisher())
    assert await consumer.consume(_message(reserved, 0)) is Outcome.PROCESSED
    assert await consumer.consume(_message(reserved, 1)) is Outcome.DUPLICATE
    funded = dispatch.get_visit(visit.visit_id)
    assert funded.funding == "funded"
    assert [leg["minutes"] for leg in funded.funding_legs] == [40, 20]
    assert "entitlement 40 min" in funded.funding_detail
    assert funded.version == visit.version + 1


async def test_a_rejection_marks_it_not_funded_with_an_alert_until_funded(dispatch):
    """ReservationRejected: not funded, and the dispatcher gets a not_funded alert; a later
    reservation funds it and resolves the alert."""
    _, visit = dispatch.place_order(PlaceOrder(elder_id="E-1", service_type="cleaning",
                                               requested_date=DAY))
    consumer = _consumer(dispatch, RecordingPublisher())
    rejected = ReservationRejected(service_area_id="A1", payload={
        "visit_id": visit.visit_id, "elder_id": "E-1", "requested_minutes": 60,
        "available_minutes": 10, "reason": "entitlement exhausted"})
    assert await consumer.consume(_message(rejected, 0)) is Outcome.PROCESSED
    assert dispatch.get_visit(visit.visit_id).funding == "not_funded"
    [alert] = dispatch.list_alerts("A1", open_only=True)
    assert alert.kind == "not_funded" and "entitlement exhausted" in alert.message
    reserved = HoursReserved(service_area_id="A1", payload={
        "reservation_id": "R-2", "visit_id": visit.visit_id, "elder_id": "E-1",
        "requested_minutes": 60, "expires_at": EXPIRES,
        "legs": [{"source": "out_of_pocket", "account_id": "oop:E-1", "minutes": 60}]})
    assert await consumer.consume(_message(reserved, 1)) is Outcome.PROCESSED
    assert dispatch.get_visit(visit.visit_id).funding == "funded"
    assert dispatch.list_alerts("A1", open_only=True) == []


async def test_credits_answers_decide_only_for_volunteer_visits(dispatch):
    """For a volunteer's redemption visit the time bank's answer is final; for an employee's
    visit it is a step of the ledger's funding and changes nothing on the visit."""
    _, volunteer_visit = dispatch.place_order(PlaceOrder(
        elder_id="E-1", service_type="companionship", requested_date=DAY,
        use_time_credits=True))
    _, employee_visit = dispatch.place_order(PlaceOrder(
        elder_id="E-1", service_type="cleaning", requested_date=DAY, use_time_credits=True))
    assert volunteer_visit.caregiver_kind == "volunteer"
    assert employee_visit.caregiver_kind == "employee"
    consumer = _consumer(dispatch, RecordingPublisher())
    held = CreditsReserved(service_area_id="A1", payload={
        "reservation_id": "TB-1", "visit_id": volunteer_visit.visit_id, "account_id": "E-1",
        "minutes": 60, "expires_at": EXPIRES})
    refused = CreditsReservationRejected(service_area_id="A1", payload={
        "visit_id": employee_visit.visit_id, "account_id": "E-1", "requested_minutes": 60,
        "available_minutes": 0, "reason": "no credits"})
    assert await consumer.consume(_message(held, 0)) is Outcome.PROCESSED
    assert await consumer.consume(_message(refused, 1)) is Outcome.UNCHANGED
    assert dispatch.get_visit(volunteer_visit.visit_id).funding == "funded"
    assert dispatch.get_visit(employee_visit.visit_id).funding == "pending"


async def test_a_mutual_aid_visit_needs_no_funding_and_an_unknown_visit_is_ignored(dispatch):
    """A volunteer's visit without credits funds nobody; an answer about a visit dispatch
    never had is consumed without effect."""
    _, visit = dispatch.place_order(PlaceOrder(elder_id="E-1", service_type="welfare_check",
                                               requested_date=DAY))
    assert visit.funding == "not_required"
    stray = ReservationRejected(service_area_id="A1", payload={
        "visit_id": "V-unknown", "elder_id": "E-1", "requested_minutes": 60,
        "available_minutes": 0, "reason": "x"})
    dlq = RecordingPublisher()
    assert await _consumer(dispatch, dlq).consume(_message(stray, 0)) is Outcome.UNCHANGED
    assert dlq.sent == [] and dispatch.list_alerts("A1") == []


def test_new_visit_events_become_their_integration_events(dispatch):
    """Rescheduling, a no-show, a missed visit and a reviewer's rejection leave dispatch as
    VisitRescheduled, VisitCancelled (holds go back) and VisitDisputed."""
    start = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
    dispatch.clock = lambda: start + timedelta(hours=6)
    placed = [dispatch.place_order(PlaceOrder(elder_id="E-1", service_type=s,
                                              requested_date=DAY))[1]
              for s in ("cleaning", "welfare_check", "cleaning", "cleaning")]
    moved, absent, missed, rejected = placed
    dispatch.register_caregiver(caregiver_id="C-9", name="孙", kind=CaregiverKind.EMPLOYEE,
                                service_area_id="A1", skills=["cleaning"], station_lat=29.3,
                                station_lon=120.07, provider_id="P-1",
                                certificate_expires=date(2027, 1, 1))
    m = dispatch.get_visit(moved.visit_id)
    m.reschedule(caregiver_id="C-9", caregiver_kind="employee", provider_id="P-1",
                 planned_start=m.planned_start, planned_end=m.planned_end, reason="test")
    dispatch.save(m)
    dispatch.no_show(absent.visit_id, at=start, caregiver_id=absent.caregiver_id,
                     reason="nobody answered")
    x = dispatch.get_visit(missed.visit_id)
    x.miss(at=start, reason="test")
    dispatch.save(x)
    dispatch.check_in(rejected.visit_id, at=start, lat=29.30, lon=120.07,
                      caregiver_id=rejected.caregiver_id)
    dispatch.check_out(rejected.visit_id, at=start + timedelta(minutes=5), lat=29.30,
                       lon=120.07, tasks_done=[], caregiver_id=rejected.caregiver_id)
    dispatch.review(rejected.visit_id, decision="reject", by="reviewer", reason="too short")
    published = []
    for n in dispatch.process_recorder.select_notifications(1, 1000):
        published += list(dispatch.translate(dispatch.mapper.to_domain_event(n)))
    by_type: dict[str, list] = {}
    for e in published:
        by_type.setdefault(e.type, []).append(e.payload)
    [r] = by_type["VisitRescheduled"]
    assert (r.caregiver_id, r.previous_caregiver_id) == ("C-9", moved.caregiver_id)
    reasons = {c.visit_id: c.reason for c in by_type["VisitCancelled"]}
    assert reasons[absent.visit_id].startswith("no_show")
    assert reasons[missed.visit_id].startswith("missed")
    [d] = by_type["VisitDisputed"]
    assert (d.visit_id, d.raised_by, d.reason) == (rejected.visit_id, "reviewer", "too short")
    assert "VisitVerified" not in by_type
