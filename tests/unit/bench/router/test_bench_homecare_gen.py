"""The seeded home-care day generator: reproducible, well-formed, and every visit servable."""

from bench.router.homecare import percentile
from bench.router.homecare_gen import generate_day
from services.dispatch.routing import Priority, can_serve


def test_same_seed_same_day_other_seed_other_day():
    """A benchmark day is a function of its seed, so runs can be compared."""
    a = generate_day(60, 10, seed=3)
    b = generate_day(60, 10, seed=3)
    c = generate_day(60, 10, seed=4)
    assert a.problem.visits == b.problem.visits
    assert a.problem.caregivers == b.problem.caregivers
    assert a.problem.visits != c.problem.visits


def test_day_is_well_formed_and_every_visit_has_enough_qualified_caregivers():
    """Sizes, matrices and locations agree; no visit is impossible by skill, gender or pairing."""
    day = generate_day(120, 16, seed=5)
    p = day.problem
    assert len(p.visits) == 120 and len(p.caregivers) == 16
    n_loc = len(day.places)
    for matrix in p.travel_times.values():
        assert len(matrix) == n_loc and all(len(row) == n_loc for row in matrix)
    assert all(0 <= v.location < n_loc for v in p.visits)
    assert all(
        day.places[c.start_location].kind in ("centre", "station", "township") for c in p.caregivers
    )
    for v in p.visits:
        qualified = sum(can_serve(c, v) is None for c in p.caregivers)
        assert qualified >= v.staff_count, v
    meals = [v for v in p.visits if v.id.endswith(":meal")]
    assert meals and all(v.meal_boxes >= 1 for v in meals)
    assert all(v.meal_boxes == 0 for v in p.visits if not v.id.endswith(":meal"))
    assert {v.priority for v in p.visits} >= {Priority.ENTITLED_CARE, Priority.PAID}
    assert day.stats["unservable"] == 0


def test_nearest_rank_percentile():
    """p50/p99 over 1..100 are 50 and 99; a single value is every percentile."""
    values = [float(x) for x in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
