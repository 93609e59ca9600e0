"""The independent checker: a hand-made valid plan passes, and each kind of fault is caught."""

from __future__ import annotations

import dataclasses

import pytest

from services.dispatch.routing import (
    Break,
    BreakPlacement,
    Gender,
    Plan,
    Priority,
    Route,
    Stop,
    StopKind,
    TimeWindow,
    UnassignedReason,
    UnassignedVisit,
    ViolationKind,
    check,
)

K = ViolationKind


@pytest.fixture
def day(b):
    """anna: station 0, shift 0-600; visit a at 2 (window 50-100), visit b at 4 (any time).

    Valid route: leave 30, a 50-80, b 100-130, back at 170 (10 minutes per location step).
    """
    p = b.problem([b.caregiver("anna"), b.caregiver("bo")],
                  [b.visit("a", 2, (50, 100)), b.visit("b", 4)])
    route = Route("anna", (Stop("a", 2, 50, 50, 80, 20), Stop("b", 4, 100, 100, 130, 20)),
                  30, 170, 40)
    return p, Plan((route,))


def kinds(p, plan) -> set[ViolationKind]:
    return {v.kind for v in check(p, plan)}


def with_stops(plan: Plan, *stops: Stop, **route_kw) -> Plan:
    r = dataclasses.replace(plan.routes[0], stops=stops, **route_kw)
    return dataclasses.replace(plan, routes=(r,) + plan.routes[1:])


def test_valid_hand_made_plan_passes(day):
    """The hand-made plan obeys every rule."""
    p, plan = day
    assert check(p, plan) == []


def test_window_violation(day):
    """Starting a after its window closes is a window violation."""
    p, plan = day
    bad = with_stops(plan, Stop("a", 2, 50, 110, 140, 20), Stop("b", 4, 160, 160, 190, 20),
                     end=230)
    assert kinds(p, bad) == {K.WINDOW}


def test_timing_violation_arrival_before_travel_allows(day):
    """b cannot start at 85: a ends at 80 and the trip takes 20 minutes."""
    p, plan = day
    bad = with_stops(plan, plan.routes[0].stops[0], Stop("b", 4, 85, 85, 115, 20), end=155)
    assert kinds(p, bad) == {K.TIMING}


def test_timing_violation_short_visit(day):
    """A visit may not end before its duration has passed."""
    p, plan = day
    bad = with_stops(plan, Stop("a", 2, 50, 50, 60, 20), plan.routes[0].stops[1])
    assert kinds(p, bad) == {K.TIMING}


def test_shift_and_max_work(b, day):
    """Returning after the shift ends, and working longer than allowed, are both reported."""
    p, plan = day
    short = dataclasses.replace(p, caregivers=(b.caregiver("anna", end=160, max_work_minutes=100),
                                               b.caregiver("bo")))
    assert kinds(short, plan) == {K.SHIFT, K.MAX_WORK}


@pytest.mark.parametrize(("change", "kind"), [
    ({"required_skills": frozenset({"bathing"})}, K.SKILL),
    ({"min_certificate_level": 2}, K.CERTIFICATE),
    ({"gender_preference": Gender.FEMALE}, K.GENDER),
    ({"excluded_caregiver_ids": frozenset({"anna"})}, K.EXCLUDED),
    ({"pinned_caregiver": "bo"}, K.PINNED_CAREGIVER),
    ({"pinned_start": 60}, K.PINNED_START),
])
def test_assignment_rules(day, change, kind):
    """Each caregiver/visit compatibility rule is checked on its own."""
    p, plan = day
    a = dataclasses.replace(p.visit("a"), **change)
    assert kinds(p.with_visits(a), plan) == {kind}


def test_capacity_and_reload(b, day):
    """3+3 meal boxes exceed a capacity of 4; a reload at the station fixes it, a reload
    elsewhere is reported."""
    p, plan = day
    p = dataclasses.replace(p, caregivers=(b.caregiver("anna", meal_box_capacity=4),
                                           b.caregiver("bo")))
    p = p.with_visits(dataclasses.replace(p.visit("a"), meal_boxes=3),
                      dataclasses.replace(p.visit("b"), meal_boxes=3))
    assert kinds(p, plan) == {K.CAPACITY}
    a, bb = plan.routes[0].stops
    reload_ok = Stop(None, 0, 100, 100, 100, 20, kind=StopKind.RELOAD)
    fixed = with_stops(plan, a, reload_ok, Stop("b", 4, 140, 140, 170, 40), end=210)
    assert check(p, fixed) == []
    reload_bad = Stop(None, 3, 90, 90, 90, 10, kind=StopKind.RELOAD)
    wrong = with_stops(plan, a, reload_bad, Stop("b", 4, 100, 100, 130, 10))
    assert kinds(p, wrong) == {K.RELOAD}


def test_pairing(b):
    """A two-caregiver visit needs two caregivers at the same start."""
    p = b.problem([b.caregiver("anna"), b.caregiver("bo")], [b.visit("bath", 2, staff_count=2)])

    def route(cid, start):
        return Route(cid, (Stop("bath", 2, start, start, start + 30, 20),), start - 20,
                     start + 50, 20)

    assert check(p, Plan((route("anna", 50), route("bo", 50)))) == []
    assert kinds(p, Plan((route("anna", 50), route("bo", 60)))) == {K.PAIRING}
    assert kinds(p, Plan((route("anna", 50),))) == {K.PAIRING}


def test_breaks(b):
    """The break must be taken inside its window, long enough, and not during a visit."""
    cg = b.caregiver("anna", rest_break=Break(TimeWindow(100, 200), 30))
    p = b.problem([cg], [b.visit("a", 1, duration=30), b.visit("c", 1, duration=30)])
    stops = (Stop("a", 1, 90, 90, 120, 10), Stop("c", 1, 120, 160, 190, 0, waiting=10))
    good = Plan((Route("anna", stops, 80, 200, 10, BreakPlacement(125, 155, 1)),))
    assert check(p, good) == []
    missing = Plan((Route("anna", stops, 80, 200, 10, None),))
    assert kinds(p, missing) == {K.BREAK}
    short = Plan((Route("anna", stops, 80, 200, 10, BreakPlacement(125, 145, 1)),))
    assert kinds(p, short) == {K.BREAK}
    overlapping = Plan((Route("anna", stops, 80, 200, 10, BreakPlacement(100, 130, 0)),))
    assert kinds(p, overlapping) == {K.BREAK}
    outside = dataclasses.replace(p, caregivers=(dataclasses.replace(
        cg, rest_break=Break(TimeWindow(130, 200), 30)),))
    assert kinds(outside, good) == {K.BREAK}


def test_break_during_travel_needs_room_for_both(b):
    """A break between two stops needs the gap to hold the trip and the break."""
    cg = b.caregiver("anna", rest_break=Break(TimeWindow(100, 200), 30))
    p = b.problem([cg], [b.visit("a", 1, duration=30), b.visit("c", 5, duration=30)])
    # a ends at 120; c at 5 is 40 minutes away; starting c at 180 leaves 60 < 40 + 30.
    stops = (Stop("a", 1, 90, 90, 120, 10), Stop("c", 5, 160, 180, 210, 40, waiting=0))
    plan = Plan((Route("anna", stops, 80, 260, 50, BreakPlacement(125, 155, 1)),))
    assert K.TIMING in kinds(p, plan)


def test_duplicates_missing_unknown(day):
    """Visits twice, missing, listed unknown, a route for an unknown caregiver, two routes."""
    p, plan = day
    a, bb = plan.routes[0].stops
    twice = with_stops(plan, a, bb, Stop("b", 4, 150, 150, 180, 0), end=220)
    assert K.DUPLICATE_VISIT in kinds(p, twice)
    missing = with_stops(plan, a, end=120)
    assert kinds(p, missing) == {K.MISSING_VISIT}
    both = dataclasses.replace(plan, unassigned=(
        UnassignedVisit("a", Priority.PAID, UnassignedReason.NO_ROOM),))
    assert kinds(p, both) == {K.DUPLICATE_VISIT}
    unknown = dataclasses.replace(plan, unassigned=(
        UnassignedVisit("zzz", Priority.PAID, UnassignedReason.NO_ROOM),))
    assert kinds(p, unknown) == {K.UNKNOWN_VISIT}
    stranger = dataclasses.replace(plan, routes=plan.routes + (
        dataclasses.replace(plan.routes[0], caregiver_id="zed", stops=()),))
    assert kinds(p, stranger) == {K.UNKNOWN_CAREGIVER}
    two_routes = dataclasses.replace(plan, routes=plan.routes + (
        dataclasses.replace(plan.routes[0], stops=()),))
    assert kinds(p, two_routes) == {K.DUPLICATE_ROUTE}


def test_unassigned_visit_is_fine(day):
    """A visit listed as unassigned (with a reason) is not missing."""
    p, plan = day
    only_a = with_stops(plan, plan.routes[0].stops[0], end=120)
    listed = dataclasses.replace(only_a, unassigned=(
        UnassignedVisit("b", Priority.PAID, UnassignedReason.NO_ROOM),))
    assert check(p, listed) == []
