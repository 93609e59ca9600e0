"""Alerts as events (late start, missed, overrun, certificate expiring, welfare escalation),
aware of pending offline syncs; en route; replanning accepted automatically; care plan changes
touching future visits only. Driven through the application, as the HTTP layer is thin."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from contracts.values import CaregiverKind, ServiceType
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.dispatch.domain.visits import DispatchError

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 16)
NINE = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # 09:00 local
HOME = (29.30, 120.07)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def app():
    a = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    a.plan_time_limit_s = 1.0
    a.clock = Clock(NINE - timedelta(hours=2))
    a.register_elder(elder_id="E-1", name="王", service_area_id="A", lat=HOME[0], lon=HOME[1],
                     confirmation_code="1111", family_phone="138")
    a.register_caregiver(caregiver_id="C-1", name="刘", kind=CaregiverKind.EMPLOYEE,
                         service_area_id="A", skills=["cleaning", "meal"], station_lat=29.3,
                         station_lon=120.07, provider_id="P", work_days=list(range(7)),
                         certificate_expires=date(2028, 1, 1))
    a.register_caregiver(caregiver_id="C-2", name="赵", kind=CaregiverKind.EMPLOYEE,
                         service_area_id="A", skills=["cleaning", "meal"], station_lat=29.3,
                         station_lon=120.07, provider_id="P", work_days=list(range(7)),
                         certificate_expires=date(2028, 1, 1))
    a.register_caregiver(caregiver_id="V-1", name="周", kind=CaregiverKind.VOLUNTEER,
                         service_area_id="A", skills=[], station_lat=29.3, station_lon=120.07,
                         work_days=list(range(7)))
    yield a
    a.close()


def _visit(app, service="cleaning", start=NINE, order_id=None):
    _, visit = app.place_order(PlaceOrder(
        elder_id="E-1", service_type=ServiceType(service), requested_date=DAY,
        window_start=start, order_id=order_id or f"O-{service}-{start:%H%M}"))
    assert visit is not None
    return visit


def _kinds(app, open_only=True):
    return sorted((a.kind.value, a.alert_id.split(":", 1)[1])
                  for a in app.list_alerts("A", open_only))


def test_late_start_alerts_each_grace_then_missed(app):
    """15 and 30 minutes late: one alert each (a repeat sweep adds none); an hour after the
    planned end with no check-in the visit is missed."""
    v = _visit(app)
    app.clock.now = NINE + timedelta(minutes=20)
    assert [a.kind for a in app.sweep("A")] == ["late_start"]
    app.clock.now = NINE + timedelta(minutes=35)
    app.sweep("A")
    assert app.sweep("A") == []
    assert [k for k in _kinds(app) if k[0] == "late_start"] == [
        ("late_start", f"{v.visit_id}/15"), ("late_start", f"{v.visit_id}/30")]
    app.clock.now = v.planned_end + timedelta(minutes=61)
    raised = app.sweep("A")
    assert any(a.kind == "missed" and a.severity == "critical" for a in raised)
    assert app.get_visit(v.visit_id).state == "missed"


def test_an_offline_check_in_proving_a_timely_start_resolves_the_late_alert(app):
    """The sweep could not know the caregiver checked in on time offline: when the queued
    check-in arrives with its original time, the late alerts it disproves are resolved."""
    v = _visit(app)
    app.clock.now = NINE + timedelta(minutes=40)
    app.sweep("A")
    assert len(_kinds(app)) == 2
    app.check_in(v.visit_id, at=NINE + timedelta(minutes=20), lat=HOME[0], lon=HOME[1])
    # 20 minutes late: the 15-minute alert was right and stays; the 30-minute one goes.
    assert _kinds(app) == [("late_start", f"{v.visit_id}/15")]
    resolved = [a for a in app.list_alerts("A") if a.resolved]
    assert [a.alert_id for a in resolved] == [f"late_start:{v.visit_id}/30"]


def test_a_reported_pending_sync_holds_alerts_for_a_while(app):
    """A phone that reported queued records keeps the sweep quiet about those visits until
    the trust period (default 240 min) runs out."""
    v = _visit(app)
    app.clock.now = NINE
    app.report_pending_sync("C-1", [v.visit_id])
    app.clock.now = NINE + timedelta(minutes=50)
    assert app.sweep("A") == []
    app.clock.now = NINE + timedelta(minutes=241)
    assert {a.kind for a in app.sweep("A")} == {"missed"}


def test_overrun_and_expiring_certificates(app):
    """A visit still checked in 15 minutes after its planned end overruns; a certificate
    expiring within 30 days is announced once."""
    app.register_caregiver(caregiver_id="C-3", name="孙", kind=CaregiverKind.EMPLOYEE,
                           service_area_id="A", skills=["nursing"], station_lat=29.3,
                           station_lon=120.07, provider_id="P",
                           certificate_expires=DAY + timedelta(days=20))
    v = _visit(app)
    app.clock.now = NINE
    app.check_in(v.visit_id, at=NINE, lat=HOME[0], lon=HOME[1], caregiver_id=v.caregiver_id)
    app.clock.now = v.planned_end + timedelta(minutes=16)
    kinds = sorted(a.kind for a in app.sweep("A"))
    assert kinds == ["certificate_expiring", "overrun"]
    assert app.sweep("A") == []
    cert = next(a for a in app.list_alerts("A") if a.kind == "certificate_expiring")
    assert cert.caregiver_id == "C-3" and "2026-12-06" in cert.message


def test_acknowledging_an_alert_is_an_event_and_happens_once(app):
    """A dispatcher acknowledges an alert; a second acknowledgement is refused."""
    _visit(app)
    app.clock.now = NINE + timedelta(minutes=20)
    [alert] = app.sweep("A")
    app.acknowledge_alert(alert.alert_id, by="dispatcher")
    assert app.get_alert(alert.alert_id).acknowledged_by == "dispatcher"
    assert _kinds(app) == []
    with pytest.raises(DispatchError, match="acknowledged"):
        app.acknowledge_alert(alert.alert_id, by="other")


def test_en_route_then_check_in(app):
    """Departing puts the visit en route; checking in from en route is allowed; departing
    twice with the same key is harmless."""
    v = _visit(app)
    app.clock.now = NINE
    app.depart(v.visit_id, at=NINE - timedelta(minutes=10), idempotency_key="d1")
    app.depart(v.visit_id, at=NINE - timedelta(minutes=10), idempotency_key="d1")
    assert app.get_visit(v.visit_id).state == "en_route"
    app.check_in(v.visit_id, at=NINE, lat=HOME[0], lon=HOME[1])
    assert app.get_visit(v.visit_id).state == "checked_in"


def test_a_welfare_check_no_show_escalates_family_then_centre(app):
    """Elder not at home on a welfare check: call the family at once; family not reached ->
    the centre; reached -> resolved. An ordinary no-show only alerts."""
    v = _visit(app, "welfare_check")
    assert v.caregiver_id == "V-1"
    app.clock.now = NINE + timedelta(minutes=5)
    app.no_show(v.visit_id, at=NINE + timedelta(minutes=5), caregiver_id="V-1",
                reason="no answer")
    assert app.get_visit(v.visit_id).escalation_step == "call_family"
    assert _kinds(app) == [("welfare_escalation", f"{v.visit_id}/call_family")]
    app.record_escalation(v.visit_id, outcome="not_reached", by="dispatcher")
    assert _kinds(app) == [("welfare_escalation", f"{v.visit_id}/call_centre")]
    app.record_escalation(v.visit_id, outcome="reached", by="centre")
    assert app.get_visit(v.visit_id).escalation_step == "resolved"
    assert _kinds(app) == []
    # Unanswered, the sweep moves an escalation on by itself.
    third = _visit(app, "welfare_check", NINE + timedelta(hours=1), order_id="O-w2")
    app.no_show(third.visit_id, at=NINE + timedelta(minutes=6), caregiver_id="V-1",
                reason="no answer")
    app.clock.now = NINE + timedelta(minutes=30)
    app.sweep("A")
    assert app.get_visit(third.visit_id).escalation_step == "call_centre"
    assert ("welfare_escalation", f"{third.visit_id}/call_centre") in _kinds(app)
    assert ("welfare_escalation", f"{third.visit_id}/call_family") not in _kinds(app)
    app.record_escalation(third.visit_id, outcome="reached", by="centre")
    other = _visit(app, "cleaning", NINE + timedelta(hours=3))
    app.no_show(other.visit_id, at=NINE + timedelta(minutes=6),
                caregiver_id=other.caregiver_id, reason="away")
    assert _kinds(app) == [("no_show", other.visit_id)]
    with pytest.raises(DispatchError, match="no open escalation"):
        app.record_escalation(other.visit_id, outcome="reached", by="x")


def test_an_area_set_to_accept_replans_automatically(app):
    """With auto_accept_replans, a sick caregiver's later visits move at once."""
    app.configure_area("A", {"auto_accept_replans": True})
    first = _visit(app, start=NINE + timedelta(hours=4), order_id="O-a")
    sick = first.caregiver_id
    proposal = app.report_sick(sick, at=NINE + timedelta(hours=1), reason="fever")
    assert proposal.state == "accepted" and proposal.decided_by == "automatic"
    moved = app.get_visit(first.visit_id)
    assert moved.caregiver_id != sick and moved.state == "scheduled"
    assert moved.plan_id == proposal.proposal_id


def test_a_care_plan_change_touches_future_visits_only(app):
    """Changing a plan from Wednesday cancels the plan's not-started visits from then on
    (started and earlier ones stay) and the new version generates the rest of the week."""
    app.create_care_plan(care_plan_id="CP", elder_id="E-1", valid_from=DAY, items=[
        {"service_type": "meal_help", "weekdays": [0, 1, 2, 3, 4], "window_start": "11:00",
         "window_end": "12:30"}])
    orders = app.generate_week("CP", DAY)
    assert [o.requested_date.weekday() for o in orders] == [0, 1, 2, 3, 4]
    for day in (DAY, DAY + timedelta(days=2), DAY + timedelta(days=3)):
        app.plan_day("A", day)
    wednesday = app.get_visit(f"V-CP-CP-v0-{DAY + timedelta(days=2)}-0")
    app.clock.now = wednesday.planned_start + timedelta(minutes=5)
    app.check_in(wednesday.visit_id, at=app.clock.now, lat=HOME[0], lon=HOME[1])
    app.change_care_plan("CP", effective_from=DAY + timedelta(days=2), items=[
        {"service_type": "cleaning", "weekdays": [3], "window_start": "09:00",
         "window_end": "11:00"}])
    states = {o.requested_date.weekday(): app.get_order(o.order_id).state for o in orders}
    assert states == {0: "scheduled", 1: "placed", 2: "scheduled", 3: "cancelled",
                      4: "cancelled"}
    assert app.get_visit(f"V-CP-CP-v0-{DAY + timedelta(days=3)}-0").state == "cancelled"
    new = app.generate_week("CP", DAY)
    assert [(o.requested_date.weekday(), o.service_type.value) for o in new
            if o.state != "cancelled"] == [(0, "meal_help"), (1, "meal_help"),
                                           (3, "cleaning")]


def test_an_sos_is_scheduled_at_once_and_announced(app):
    """An emergency order from a wearable gets a caregiver from now on and a critical
    announcement to the area."""
    app.clock.now = NINE + timedelta(hours=1)
    order, visit = app.place_order(PlaceOrder(
        elder_id="E-1", service_type=ServiceType.EMERGENCY, requested_date=DAY,
        emergency=True, source="wearable_sos", emergency_position={"lat": 29.31, "lon": 120.08}))
    assert visit is not None and visit.planned_start >= app.clock.now
    assert visit.priority == "emergency" and order.emergency_position == {"lat": 29.31,
                                                                         "lon": 120.08}
    [alert] = app.list_alerts("A")
    assert (alert.kind, alert.severity, alert.visit_id) == ("emergency", "critical",
                                                            visit.visit_id)
    # The geofence is around where the wearable was, not the elder's home.
    assert (visit.home_lat, visit.home_lon) == (29.31, 120.08) != HOME


def test_a_care_plan_stays_within_its_monthly_hours(app):
    """With 100 minutes a month, daily 30-minute meals stop after the third of the month;
    generating again does not exceed it either."""
    app.create_care_plan(care_plan_id="CPB", elder_id="E-1", valid_from=DAY,
                         monthly_minutes=100, items=[
                             {"service_type": "meal_help", "weekdays": [0, 1, 2, 3, 4, 5, 6]}])
    first = app.generate_week("CPB", DAY)
    assert [o.requested_date.day for o in first] == [16, 17, 18]
    assert app.generate_week("CPB", DAY + timedelta(days=7)) == []
    assert len(app.generate_week("CPB", DAY)) == 3


def test_an_overrunning_visit_and_a_cancellation_propose_replans(app):
    """A visit still going 15 minutes past its end proposes a replan of the day with the
    overrun pinned and longer; cancelling a visit with replan=True proposes one too."""
    first = _visit(app, start=NINE, order_id="O-1")
    app.clock.now = NINE
    app.check_in(first.visit_id, at=NINE, lat=HOME[0], lon=HOME[1])
    app.clock.now = first.planned_end + timedelta(minutes=20)
    kinds = {a.kind for a in app.sweep("A")}
    assert "overrun" in kinds
    [proposal] = app.list_proposals("A")
    assert "runs long" in proposal.reason
    assert all(m["visit_id"] != first.visit_id for m in proposal.moves)
    later = _visit(app, start=NINE + timedelta(hours=5), order_id="O-2")
    app.cancel_visit(later.visit_id, reason="family visiting", cancelled_by="elder",
                     replan=True)
    assert [p.reason for p in app.list_proposals("A")][1].startswith(
        f"visit {later.visit_id} cancelled")


def test_an_sos_inserted_into_a_planned_day_double_books_nobody(app):
    """Into a full planned morning the router inserts the emergency; whoever takes it, their
    day still has no two visits at once."""
    for n in range(6):
        app.place_order(PlaceOrder(elder_id="E-1", service_type=ServiceType.CLEANING,
                                   requested_date=DAY, order_id=f"O-{n}", await_plan=True,
                                   window_start=NINE, window_end=NINE + timedelta(hours=4)))
    assert app.plan_day("A", DAY)["unassigned"] == {}
    app.clock.now = NINE + timedelta(minutes=30)
    _, sos = app.place_order(PlaceOrder(elder_id="E-1", service_type=ServiceType.EMERGENCY,
                                        requested_date=DAY, emergency=True))
    assert sos.planned_start >= app.clock.now
    spans = sorted((v.planned_start, v.planned_end)
                   for v in app.list_visits("A", DAY, sos.caregiver_id))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_a_pending_sync_report_is_known_to_every_replica(tmp_path):
    """The report is an event: another application on the same store (another replica, or
    one restarted) holds the alerts too; an empty report clears it."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
           "SQLITE_DBNAME": str(tmp_path / "dispatch.sqlite")}
    first, second = DispatchApplication(env), DispatchApplication(env)
    first.clock = second.clock = Clock(NINE)
    first.register_elder(elder_id="E-1", name="王", service_area_id="A", lat=HOME[0],
                         lon=HOME[1], confirmation_code="1111")
    first.register_caregiver(caregiver_id="C-1", name="刘", kind=CaregiverKind.EMPLOYEE,
                             service_area_id="A", skills=["cleaning"], station_lat=29.3,
                             station_lon=120.07, provider_id="P",
                             certificate_expires=date(2028, 1, 1))
    v = _visit(first)
    first.report_pending_sync("C-1", [v.visit_id])
    second.clock.now = NINE + timedelta(minutes=50)
    assert second.sweep("A") == []
    first.report_pending_sync("C-1", [])
    assert {a.kind for a in second.sweep("A")} == {"late_start"}
    first.close()
    second.close()


def test_a_cancelled_visit_frees_its_caregivers_time(app):
    """Booked 09:00-10:00, both employees busy: a third order waits until 10:15; after one
    visit is cancelled, a new order gets 09:00 again."""
    first = _visit(app, order_id="O-a")
    second = _visit(app, order_id="O-b")
    assert {first.caregiver_id, second.caregiver_id} == {"C-1", "C-2"}
    third = _visit(app, order_id="O-c")
    assert third.planned_start == NINE + timedelta(minutes=75)
    app.cancel_visit(first.visit_id, reason="elder in hospital", cancelled_by="family")
    fourth = _visit(app, order_id="O-d")
    assert (fourth.caregiver_id, fourth.planned_start) == (first.caregiver_id, NINE)


def test_a_visit_marked_missed_is_reinstated_by_its_late_offline_check_in(app):
    """No signal and no pending-sync report: the sweep marks the visit missed. When the queued
    check-in arrives with a device time before that, the visit took place after all: it is
    checked in, verified at check-out, and the missed alert is resolved. A check-in stamped
    after the miss is refused."""
    v = _visit(app)
    app.clock.now = v.planned_end + timedelta(minutes=61)
    app.sweep("A")
    assert app.get_visit(v.visit_id).state == "missed"
    app.clock.now = v.planned_end + timedelta(hours=3)
    with pytest.raises(DispatchError, match="missed"):
        app.check_in(v.visit_id, at=app.clock.now, lat=HOME[0], lon=HOME[1])
    app.check_in(v.visit_id, at=NINE + timedelta(minutes=2), lat=HOME[0], lon=HOME[1],
                 idempotency_key="q-1")
    app.check_out(v.visit_id, at=NINE + timedelta(minutes=55), lat=HOME[0], lon=HOME[1],
                  tasks_done=[], confirmation_code="1111", idempotency_key="q-2")
    assert app.get_visit(v.visit_id).state == "verified"
    missed = [a for a in app.list_alerts("A") if a.kind == "missed"]
    assert [a.resolved for a in missed] == ["offline check-in synced: it took place"]
    types = [type(app.mapper.to_domain_event(n)).__qualname__
             for n in app.process_recorder.select_notifications(1, 1000)]
    assert types.index("Visit.Missed") < types.index("Visit.Reinstated") < types.index(
        "Visit.CheckedIn")


def test_a_caregiver_on_the_way_keeps_the_visit_in_a_replan(app):
    """Once a caregiver has set off (en route), replanning pins the visit to them: a replan
    never gives it to someone else while they travel to the elder (found by the county
    simulation, where auto-accepted replans moved visits under way)."""
    visit = _visit(app, start=NINE + timedelta(hours=1), order_id="O-way")
    app.clock.now = NINE + timedelta(minutes=40)
    app.depart(visit.visit_id, at=app.clock.now, caregiver_id=visit.caregiver_id)
    problem = app._day_problem("A", DAY, [], now=app.clock.now)
    assert problem.jobs[visit.visit_id].pinned_caregiver == visit.caregiver_id


def test_a_check_out_overlapping_the_caregiver_s_other_visit_needs_review():
    """Two visits of one caregiver whose actual times overlap (the second checked in before
    the first checked out): the second check-out is not verified but flagged, naming the
    first (read from the read model's check-in and check-out times); a visit of the same
    caregiver later that day, after both ended, is verified."""
    a = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    a.plan_time_limit_s = 1.0
    a.clock = Clock(NINE - timedelta(hours=2))
    for elder_id in ("E-1", "E-2"):
        a.register_elder(elder_id=elder_id, name="王", service_area_id="A", lat=HOME[0],
                         lon=HOME[1], confirmation_code="1111", family_phone="138")
    a.register_caregiver(caregiver_id="C-1", name="刘", kind=CaregiverKind.EMPLOYEE,
                         service_area_id="A", skills=["cleaning"], station_lat=29.3,
                         station_lon=120.07, provider_id="P", work_days=list(range(7)),
                         certificate_expires=date(2028, 1, 1))
    visits = []
    for elder_id, start in (("E-1", NINE), ("E-2", NINE + timedelta(hours=2)),
                            ("E-1", NINE + timedelta(hours=5))):
        _, visit = a.place_order(PlaceOrder(
            elder_id=elder_id, service_type=ServiceType.CLEANING, requested_date=DAY,
            window_start=start, order_id=f"O-{elder_id}-{start:%H%M}"))
        assert visit is not None and visit.caregiver_id == "C-1"
        visits.append(visit)
    first, second, third = visits

    def serve(visit, start, minutes):  # type: ignore[no-untyped-def]
        a.clock.now = start + timedelta(minutes=minutes + 1)
        a.check_in(visit.visit_id, at=start, lat=HOME[0], lon=HOME[1])
        return a.check_out(visit.visit_id, at=start + timedelta(minutes=minutes), lat=HOME[0],
                           lon=HOME[1], tasks_done=[], confirmation_code="1111")

    planned = int((first.planned_end - first.planned_start).total_seconds() // 60)
    a.clock.now = NINE + timedelta(minutes=10)
    a.check_in(first.visit_id, at=NINE, lat=HOME[0], lon=HOME[1])
    a.check_in(second.visit_id, at=NINE + timedelta(minutes=10), lat=HOME[0], lon=HOME[1])
    a.clock.now = NINE + timedelta(minutes=30)
    a.check_out(first.visit_id, at=a.clock.now, lat=HOME[0], lon=HOME[1], tasks_done=[],
                confirmation_code="1111")
    a.clock.now = NINE + timedelta(minutes=10 + planned)
    overlapped = a.check_out(second.visit_id, at=a.clock.now, lat=HOME[0], lon=HOME[1],
                             tasks_done=[], confirmation_code="1111")
    assert overlapped.state != "verified"
    assert f"overlaps visit {first.visit_id} of the same caregiver" in (
        overlapped.verification_problems)
    assert serve(third, third.planned_start, planned).state == "verified"
    a.close()


@pytest.mark.parametrize(("told", "started", "looked_up"), [
    (NINE + timedelta(minutes=5), NINE + timedelta(minutes=5), False),  # before any grace
    (NINE + timedelta(minutes=90), NINE + timedelta(minutes=70), False),  # later than all
    (NINE + timedelta(minutes=40), NINE + timedelta(minutes=20), True),  # may disprove one
])
def test_a_check_in_looks_for_late_alerts_only_when_it_could_disprove_one(
        app, monkeypatch, told, started, looked_up):
    """Looking for the visit's late-start alerts means catching the read model up (a query
    of the log each check-in). Told before the first grace ran out (less the clock skew
    allowed), no sweep can have raised one; started later than the last grace, it disproves
    none: then nothing is looked up."""
    v = _visit(app)
    app.clock.now = told
    looked: list[str] = []
    alerts_by_subject = app._alerts_by_subject

    class Watched(dict):
        def get(self, key, default=None):
            looked.append(key)
            return alerts_by_subject.get(key, default)

    monkeypatch.setattr(app, "_alerts_by_subject", Watched())
    app.check_in(v.visit_id, at=started, lat=HOME[0], lon=HOME[1])
    assert (v.visit_id in looked) is looked_up
