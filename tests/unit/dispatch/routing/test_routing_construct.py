"""Our own construction, improvement and break repair: whatever they build passes the checker."""

from __future__ import annotations

import random
import time

import pytest

from services.dispatch.routing import Break, Plan, TimeWindow, UnassignedReason, UnassignedVisit
from services.dispatch.routing.assemble import route_from_state
from services.dispatch.routing.construct import construct, fit_breaks, improve
from services.dispatch.routing.timing import RouteState, visit_item


def _day(b, seed: int):
    rnd = random.Random(seed)
    cgs = [b.caregiver(f"c{k}", start=420 + 30 * rnd.randrange(3), end=1000,
                       rest_break=Break(TimeWindow(690, 810), 30) if rnd.random() < 0.7 else None,
                       meal_box_capacity=rnd.choice([None, 4]), max_work_minutes=420)
           for k in range(5)]
    vs = []
    for i in range(40):
        s = 450 + rnd.randrange(0, 480, 15)
        wins = [(s, s + rnd.choice([30, 60, 120]))]
        if rnd.random() < 0.2:
            wins.append((s + 180, s + 240))
        vs.append(b.visit(f"v{i}", rnd.randrange(1, 12), *wins, duration=rnd.choice([15, 30, 45]),
                          staff_count=2 if rnd.random() < 0.1 else 1,
                          meal_boxes=rnd.choice([0, 0, 1, 2])))
    return b.problem(cgs, vs, step=rnd.choice([3, 5, 8]))


def _plan(p, states) -> Plan:
    routes = [r for r in (route_from_state(st) for st in states) if r.stops]
    done = {vid for r in routes for vid in r.visit_ids}
    return Plan(tuple(routes), tuple(UnassignedVisit(v.id, v.priority, UnassignedReason.NO_ROOM)
                                     for v in p.visits if v.id not in done))


@pytest.mark.parametrize("seed", range(6))
def test_construction_and_improvement_are_valid(b, seed):
    """Random days (breaks, pairs, two windows, meal capacity, max work): the constructed plan,
    and the plan after remove-and-reinsert passes, pass the checker; the passes never add travel."""
    p = _day(b, seed)
    everyone = list(range(len(p.caregivers)))
    states, left = construct(p, list(p.visits), {v.id: everyone for v in p.visits})
    first = _plan(p, states)
    b.assert_valid(p, first)
    improve(p, states, {v.id: everyone for v in p.visits}, left, time.monotonic() + 0.5)
    better = _plan(p, states)
    b.assert_valid(p, better)
    assert (len(better.unassigned), better.total_travel) <= (len(first.unassigned),
                                                             first.total_travel)


def test_fit_breaks_makes_room(b):
    """A route packed through lunch loses a visit so the break fits; the visit moves elsewhere."""
    anna = b.caregiver("anna", rest_break=Break(TimeWindow(100, 160), 30))
    bo = b.caregiver("bo")
    vs = [b.visit(f"v{i}", 1, (100 + 20 * i, 100 + 20 * i), duration=20) for i in range(3)]
    p = b.problem([anna, bo], vs)
    packed = RouteState(p, anna, [visit_item(v) for v in vs])
    assert packed.feasible
    states = [packed, RouteState(p, bo, [])]
    left = fit_breaks(p, states, {v.id: [0, 1] for v in vs})
    assert left == []
    plan = _plan(p, states)
    b.assert_valid(p, plan)
    assert plan.route_of("anna").rest_break is not None
    assert plan.route_of("bo").visit_ids
