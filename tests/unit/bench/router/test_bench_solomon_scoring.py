"""The one scorer every solver's routes go through: feasibility checks and DIMACS distance."""

import math
from dataclasses import replace

import pytest

from bench.router.instance import Instance
from bench.router.scoring import score_routes

# depot (0,0) open 0..100; customer 1 at (3,4) window 0..10, 2 at (6,8) window 0..20,
# 3 at (1,1) window 50..60; service 1 each; demand 5 each; capacity 10.
TINY = Instance(
    name="T1",
    capacity=10,
    x=(0, 3, 6, 1),
    y=(0, 4, 8, 1),
    demand=(0, 5, 5, 5),
    ready=(0, 0, 0, 50),
    due=(100, 10, 20, 60),
    service=(0, 1, 1, 1),
    fleet=3,
    bks_distance=22.8,
)


def test_feasible_route_set_scores_recomputed_distance():
    """[1,2] and [3] serve everyone within windows and capacity: 5 + 5 + 10 + 1.4 + 1.4."""
    s = score_routes(TINY, [[1, 2], [3]])
    assert s.feasible, s.violations
    assert s.distance == pytest.approx(22.8)
    assert s.vehicles == 2
    assert s.gap_pct(TINY.bks_distance) == pytest.approx(0.0)


def test_empty_routes_are_not_counted_as_vehicles():
    """A solver that reports unused vehicles as empty routes is not charged for them."""
    s = score_routes(TINY, [[1, 2], [], [3]])
    assert s.feasible and s.vehicles == 2


def test_window_missed_when_order_is_reversed():
    """[2,1]: customer 1 is reached at 16 > 10, a window violation with the lateness in words."""
    s = score_routes(TINY, [[2, 1], [3]])
    assert not s.feasible
    assert any("customer 1" in v and "after its window" in v for v in s.violations)


def test_waiting_for_a_window_counts_service_time_after_the_wait():
    """Service times push later starts: with service 45 at customer 1, 2 (due 20) is missed."""
    inst = replace(TINY, service=(0, 45, 1, 1))
    s = score_routes(inst, [[1, 2], [3]])
    assert any("customer 2" in v for v in s.violations)


def test_capacity_missing_duplicate_fleet_and_depot_violations():
    """Each kind of infeasibility is reported on its own."""
    assert any("capacity" in v for v in score_routes(TINY, [[1, 2, 3]]).violations)
    assert any("not served" in v for v in score_routes(TINY, [[1, 2]]).violations)
    assert any("more than once" in v for v in score_routes(TINY, [[1, 2], [3, 1]]).violations)
    one_vehicle = replace(TINY, fleet=1)
    assert any("fleet" in v for v in score_routes(one_vehicle, [[1], [2], [3]]).violations)
    late_depot = replace(TINY, due=(5, 10, 20, 60))
    assert any("depot closes" in v for v in score_routes(late_depot, [[1, 2], [3]]).violations)


def test_unknown_customer_is_reported_not_crashing():
    """A route with a node that does not exist is infeasible and has no distance."""
    s = score_routes(TINY, [[1, 2], [3, 9]])
    assert not s.feasible and math.isnan(s.distance)
