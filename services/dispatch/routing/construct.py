"""Construction heuristic: cheapest feasible insertion, most important and tightest visits first.

Two-caregiver visits are placed on two different caregivers at one common start time. The result
is a set of RouteStates the solver hands to OR-Tools as its first solution (OR-Tools' own
insertion heuristics cannot keep the two halves of a pair together), and a plan of last resort.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from .problem import Problem, Visit
from .timing import (
    Candidate,
    RouteState,
    break_item,
    common_start,
    place_break,
    visit_item,
    visit_windows,
)

# For two-caregiver visits: how many places per caregiver to combine.
_PAIR_CANDIDATES_PER_VEHICLE = 3


def empty_states(problem: Problem) -> list[RouteState]:
    states = []
    for cg in problem.caregivers:
        b = break_item(cg)
        st = RouteState(problem, cg, [b] if b is not None else [])
        if b is not None and not st.feasible:
            # The shift cannot hold the break (e.g. it ends before the break window).
            st.items.clear()
            st.refresh()
        states.append(st)
    return states


def insertion_order(visits: Iterable[Visit]) -> list[Visit]:
    def key(v: Visit) -> tuple:
        wins = visit_windows(v)
        width = sum(hi - lo for lo, hi in wins)
        return (-int(v.priority), -v.staff_count, width, wins[0][0], v.id)

    return sorted(visits, key=key)


def insert_visit(states: Sequence[RouteState], visit: Visit, vehicles: Iterable[int],
                 min_pos: dict[int, int] | None = None) -> list[tuple[int, int]] | None:
    """Insert at the cheapest feasible place(s); returns [(vehicle, start)] or None."""
    wins = visit_windows(visit)
    min_pos = min_pos or {}
    per_vehicle: dict[int, list[Candidate]] = {}
    for v in vehicles:
        cands = states[v].candidates(v, visit.location, visit.duration, wins, visit.meal_boxes,
                                     min_pos.get(v, 0))
        if cands:
            cands.sort(key=lambda c: (c.cost, c.earliest))
            per_vehicle[v] = cands
    if visit.staff_count == 1:
        flat = sorted((c for cs in per_vehicle.values() for c in cs),
                      key=lambda c: (c.cost, c.earliest, c.vehicle))
        for c in flat:
            if states[c.vehicle].insert(c.pos, visit_item(visit)):
                return [(c.vehicle, c.earliest)]
        return None
    best = [c for cs in per_vehicle.values() for c in cs[:_PAIR_CANDIDATES_PER_VEHICLE]]
    combos = []
    for i, c1 in enumerate(best):
        for c2 in best[i + 1:]:
            if c1.vehicle == c2.vehicle:
                continue
            s = common_start(wins, c1, c2)
            if s is not None:
                combos.append((c1.cost + c2.cost, s, c1, c2))
    combos.sort(key=lambda t: (t[0], t[1], t[2].vehicle, t[3].vehicle))
    for _, s, c1, c2 in combos:
        if not states[c1.vehicle].insert(c1.pos, visit_item(visit, 0, s)):
            continue
        if states[c2.vehicle].insert(c2.pos, visit_item(visit, 1, s)):
            return [(c1.vehicle, s), (c2.vehicle, s)]
        st = states[c1.vehicle]
        del st.items[c1.pos]
        st.refresh()
    return None


def construct(problem: Problem, visits: Sequence[Visit], allowed: dict[str, list[int]],
              states: list[RouteState] | None = None) -> tuple[list[RouteState], list[Visit]]:
    """Insert ``visits`` (each into its allowed vehicles) into ``states`` (default: empty routes).

    Returns the states and the visits that found no feasible place.
    """
    states = states if states is not None else empty_states(problem)
    everyone = range(len(problem.caregivers))
    left = []
    for visit in insertion_order(visits):
        if insert_visit(states, visit, allowed.get(visit.id, everyone)) is None:
            left.append(visit)
    return states, left


def fit_breaks(problem: Problem, states: Sequence[RouteState], allowed: dict[str, list[int]],
               deadline: float | None = None) -> list[Visit] | None:
    """Give every route its break (routes optimised without break intervals).

    Where a break does not fit, visits come off the route (single-caregiver ones first, lowest
    priority first, preferring one whose removal makes room; a two-caregiver visit leaves both
    routes) and are re-inserted elsewhere when possible. Returns the visits left without a place,
    or None when ``deadline`` (time.monotonic()) passed first.
    """
    visits = problem.visits_by_id()
    removed: list[Visit] = []
    for st in states:
        if st.cg.rest_break is None:
            continue
        if deadline is not None and time.monotonic() > deadline:
            return None
        place_break(st)
        while not any(it.kind == "break" for it in st.items):
            victim = _break_victim(st, visits)
            if victim is None:
                break
            visit = visits[st.items[victim].visit_id or ""]
            removed.append(visit)
            for other in states:
                if any(it.visit_id == visit.id for it in other.items):
                    other.items = [it for it in other.items if it.visit_id != visit.id]
                    other.refresh()
            place_break(st)
    everyone = range(len(problem.caregivers))
    left = []
    for visit in insertion_order(removed):
        if deadline is not None and time.monotonic() > deadline:
            return None
        if insert_visit(states, visit, allowed.get(visit.id, everyone)) is None:
            left.append(visit)
    return left


def _break_victim(st: RouteState, visits: dict[str, Visit]) -> int | None:
    """Index of the visit to take off so the break fits (None: nothing removable)."""
    removable = [k for k, it in enumerate(st.items)
                 if it.kind == "visit" and visits[it.visit_id or ""].pinned_caregiver is None
                 and visits[it.visit_id or ""].pinned_start is None]
    if not removable:
        return None
    fitting = []
    for k in removable:
        trial = RouteState(st.problem, st.cg, st.items[:k] + st.items[k + 1:], st.depart_min)
        place_break(trial)
        if any(x.kind == "break" for x in trial.items):
            fitting.append(k)
    pool = fitting or removable

    def key(k: int) -> tuple:
        v = visits[st.items[k].visit_id or ""]
        return (v.staff_count, int(v.priority), -st.items[k].dur, k)

    return min(pool, key=key)


def improve(problem: Problem, states: Sequence[RouteState], allowed: dict[str, list[int]],
            todo: Iterable[Visit], deadline: float) -> list[Visit]:
    """Remove-and-reinsert passes: every single-caregiver visit is taken out and put back at its
    cheapest feasible place (never worse than where it was); visits still without a place are
    tried again after each pass. Stops at ``deadline`` or when a pass gains nothing. Returns the
    visits still without a place."""
    everyone = range(len(problem.caregivers))
    visits = problem.visits_by_id()
    unplaced = list(todo)
    while time.monotonic() < deadline:
        before = sum(_travel(st) for st in states)
        for st in states:
            for it in list(st.items):
                if time.monotonic() >= deadline:
                    return unplaced
                visit = visits.get(it.visit_id or "")
                if it.kind != "visit" or visit is None or visit.staff_count != 1 or \
                        visit.pinned_start is not None or it not in st.items:
                    continue
                k = st.items.index(it)
                del st.items[k]
                st.refresh()
                if insert_visit(states, visit, allowed.get(visit.id, everyone)) is None:
                    st.items.insert(k, it)  # its old place is always still there
                    st.refresh()
        still = []
        for visit in insertion_order(unplaced):
            if time.monotonic() >= deadline or insert_visit(
                    states, visit, allowed.get(visit.id, everyone)) is None:
                still.append(visit)
        gained = before - sum(_travel(st) for st in states) + len(unplaced) - len(still)
        unplaced = still
        if gained <= 0:
            break
    return unplaced


def _travel(st: RouteState) -> int:
    mat, loc, total = st.mat, st.cg.start_location, 0
    for it in st.items:
        if it.kind != "break":
            total += mat[loc][it.loc]
            loc = it.loc
    return total + mat[loc][st.cg.return_location]
