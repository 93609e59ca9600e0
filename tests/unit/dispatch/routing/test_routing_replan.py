"""Replanning during the day and urgent insertion; every plan goes through the checker."""

from __future__ import annotations

import random
import time

import pytest

from services.dispatch.routing import (
    CaregiverUnavailable,
    Priority,
    UnassignedReason,
    VisitAdded,
    VisitCancelled,
    VisitConfirmed,
    VisitRunningLong,
    apply_changes,
    insert_urgent,
    replan,
    solve,
)

NOW = 200


@pytest.fixture
def morning(b):
    """Three caregivers, twelve visits spread over 60-500; solved once."""
    cgs = [b.caregiver(c) for c in ("anna", "bo", "cai")]
    vs = [b.visit(f"v{i:02d}", 1 + i % 10, (40 * i, 40 * i + 90), duration=25)
          for i in range(12)]
    p = b.problem(cgs, vs)
    plan = solve(p, time_limit_s=0.5)
    b.assert_valid(p, plan)
    assert plan.unassigned == ()
    return p, plan


def _stops(plan):
    return {(r.caregiver_id, s.visit_id): s for r in plan.routes for s in r.stops}


def _started(plan):
    return {k: s.start for k, s in _stops(plan).items() if s.start < NOW}


def test_caregiver_falls_ill_later_visits_move(b, morning):
    """The ill caregiver keeps what was started; their later visits go to others or are listed."""
    p, plan = morning
    ill = max(plan.routes, key=lambda r: sum(s.start >= NOW for s in r.stops))
    later = {s.visit_id for s in ill.stops if s.start >= NOW}
    assert later
    changes = [CaregiverUnavailable(ill.caregiver_id)]
    new = replan(p, plan, changes, NOW, time_limit_s=0.5)
    b.assert_valid(apply_changes(p, plan, changes, NOW), new)
    mine = new.route_of(ill.caregiver_id)
    assert not later & set(mine.visit_ids if mine else [])
    placed_or_listed = new.assigned_visit_ids | {u.visit_id for u in new.unassigned}
    assert later <= placed_or_listed
    assert _started(new) == _started(plan)


def test_visit_cancelled(b, morning):
    """A cancelled visit disappears; everything started stays as it was."""
    p, plan = morning
    gone = next(s.visit_id for r in plan.routes for s in r.stops if s.start >= NOW)
    changes = [VisitCancelled(gone)]
    new = replan(p, plan, changes, NOW, time_limit_s=0.5)
    b.assert_valid(apply_changes(p, plan, changes, NOW), new)
    assert gone not in new.assigned_visit_ids
    assert _started(new) == _started(plan)


def test_visit_running_long_pushes_the_rest(b, morning):
    """The visit in progress runs 40 minutes long: it ends later; the plan stays valid."""
    p, plan = morning
    route = next(r for r in plan.routes if r.stops[0].start < NOW)
    stop = [s for s in route.stops if s.start < NOW][-1]
    cid, vid = route.caregiver_id, stop.visit_id
    changes = [VisitRunningLong(vid, 40)]
    new = replan(p, plan, changes, NOW, time_limit_s=0.5)
    b.assert_valid(apply_changes(p, plan, changes, NOW), new)
    after = _stops(new)[(cid, vid)]
    assert after.start == stop.start and after.end == stop.end + 40


def test_confirmed_visit_and_new_visit(b, morning):
    """A confirmed later visit keeps caregiver and start; a visit added is planned."""
    p, plan = morning
    (cid, vid), stop = next((k, s) for k, s in _stops(plan).items() if s.start >= NOW + 50)
    extra = b.visit("new", 5, (300, 400), priority=Priority.ENTITLED_CARE)
    changes = [VisitConfirmed(vid), VisitAdded(extra)]
    new = replan(p, plan, changes, NOW, time_limit_s=0.5)
    b.assert_valid(apply_changes(p, plan, changes, NOW), new)
    assert _stops(new)[(cid, vid)].start == stop.start
    assert "new" in new.assigned_visit_ids


def test_insert_urgent_places_emergency_without_touching_the_past(b, morning):
    """An emergency is inserted; stops before now and other routes stay exactly as they were."""
    p, plan = morning
    urgent = b.visit("sos", 3, (NOW, NOW + 60), duration=20, priority=Priority.EMERGENCY)
    new = insert_urgent(p, plan, urgent, NOW)
    b.assert_valid(p.with_visits(urgent), new)
    [who] = [r.caregiver_id for r in new.routes if "sos" in r.visit_ids]
    assert next(s.start for r in new.routes for s in r.stops if s.visit_id == "sos") >= NOW
    assert _started(new) == _started(plan)
    untouched = [r for r in plan.routes if r.caregiver_id != who]
    assert all(new.route_of(r.caregiver_id) == r for r in untouched)


def test_insert_urgent_reports_why_not(b, morning):
    """An emergency nobody qualified can do, or whose window has passed, is listed with why."""
    p, plan = morning
    skill = b.visit("sos1", 3, (NOW, NOW + 60), required_skills=frozenset({"oxygen"}),
                    priority=Priority.EMERGENCY)
    new = insert_urgent(p, plan, skill, NOW)
    b.assert_valid(p.with_visits(skill), new)
    assert [(u.visit_id, u.reason) for u in new.unassigned] == [("sos1", UnassignedReason.NO_SKILL)]
    late = b.visit("sos2", 3, (0, NOW - 10), priority=Priority.EMERGENCY)
    new = insert_urgent(p, plan, late, NOW)
    b.assert_valid(p.with_visits(late), new)
    assert [u.reason for u in new.unassigned] == [UnassignedReason.WINDOW_UNREACHABLE]


def test_insert_urgent_is_fast(b):
    """Insertion into a 120-visit plan takes milliseconds (no solver involved)."""
    cgs = [b.caregiver(f"c{k}", end=900) for k in range(15)]
    vs = [b.visit(f"v{i}", 1 + (7 * i) % 11, (5 * i, 5 * i + 150), duration=20)
          for i in range(120)]
    p = b.problem(cgs, vs)
    plan = solve(p, time_limit_s=1.0)
    rnd = random.Random(1)
    worst = 0.0
    for k in range(30):
        now = rnd.randint(100, 600)
        v = b.visit(f"u{k}", rnd.randint(1, 11), (now, now + 90), duration=20,
                    priority=Priority.EMERGENCY)
        # CPU time: the suite shares the machine, wall-clock would measure the neighbours.
        t0 = time.process_time()
        new = insert_urgent(p, plan, v, now)
        worst = max(worst, time.process_time() - t0)
        b.assert_valid(p.with_visits(v), new)
    assert worst < 0.25
