"""Urgent insertion: one emergency visit placed at once, cheapest feasible insertion, no solver."""

from __future__ import annotations

import dataclasses
import time

from .assemble import finish_plan, route_from_state
from .construct import insert_visit
from .plan import BreakPlacement, Plan, Route, StopKind, UnassignedReason, UnassignedVisit
from .problem import Caregiver, Problem, Visit
from .solver import _allowed_vehicles
from .timing import Item, RouteState, break_item, place_break, visit_item

_FAR = 10**9


def insert_urgent(problem: Problem, plan: Plan, visit: Visit, now: int) -> Plan:
    """``plan`` with ``visit`` inserted where it adds least travel without breaking any rule.

    Stops starting before ``now`` stay as they are, nobody is sent anywhere before ``now``, and
    other routes are not touched. If no feasible place exists, the visit is listed as unassigned
    with the reason. The result is a plan for ``problem.with_visits(visit)``.
    """
    t0 = time.monotonic()
    full = problem.with_visits(visit)
    # The visit cannot start before now.
    wins = tuple(w for w in visit.windows if w.end >= now)
    urgent = dataclasses.replace(visit, windows=tuple(
        dataclasses.replace(w, start=max(w.start, now)) for w in wins)) if wins else None
    unassigned = [u for u in plan.unassigned if u.visit_id != visit.id]
    routes = {r.caregiver_id: r for r in plan.routes}
    if urgent is None:
        unassigned.append(UnassignedVisit(visit.id, visit.priority,
                                          UnassignedReason.WINDOW_UNREACHABLE, "window passed"))
        return finish_plan(full, list(plan.routes), unassigned, time.monotonic() - t0)

    vehicles, reason, detail = _allowed_vehicles(full, urgent)
    if reason is not None:
        unassigned.append(UnassignedVisit(visit.id, visit.priority, reason, detail))
        return finish_plan(full, list(plan.routes), unassigned, time.monotonic() - t0)

    visits = full.visits_by_id()
    states: dict[int, RouteState] = {}
    min_pos: dict[int, int] = {}
    for v in vehicles:
        cg = full.caregivers[v]
        st, first_free = state_from_route(full, cg, routes.get(cg.id), visits, now)
        if st.feasible:
            states[v] = st
            min_pos[v] = first_free
    # insert_visit indexes states by vehicle number.
    by_index = [states.get(v) for v in range(len(full.caregivers))]
    placed = insert_visit(by_index, urgent, list(states), min_pos)  # type: ignore[arg-type]
    if placed is None:
        unassigned.append(UnassignedVisit(visit.id, visit.priority, UnassignedReason.NO_ROOM,
                                          "no feasible place in today's routes"))
        return finish_plan(full, list(plan.routes), unassigned, time.monotonic() - t0)
    changed = {full.caregivers[v].id: route_from_state(states[v]) for v, _ in placed}
    new_routes = [changed.pop(r.caregiver_id, r) for r in plan.routes]
    new_routes.extend(changed.values())
    return finish_plan(full, new_routes, unassigned, time.monotonic() - t0)


def state_from_route(problem: Problem, cg: Caregiver, route: Route | None,
                     visits: dict[str, Visit], now: int) -> tuple[RouteState, int]:
    """A RouteState replaying ``route``: stops started before ``now`` (and two-caregiver visits)
    keep their start; returns the state and the first position open to insertions."""
    items: list[Item] = []
    first_free = 0
    if route is None or not route.stops:
        b = break_item(cg)
        st = RouteState(problem, cg, [b] if b else [], depart_min=max(cg.shift.start, now))
        if b is not None and not st.feasible:
            st.items.clear()
            st.refresh()
        return st, 0
    brk = route.rest_break
    b = break_item(cg)
    # The break stays where it was in the sequence (before leaving and after returning count as
    # first and last); one already begun keeps its time.
    brk_at = -1 if b is None or brk is None else min(brk.before_stop, len(route.stops))
    for k, stop in enumerate(route.stops):
        if k == brk_at and b is not None and brk is not None:
            items.append(_break_of(b, brk, now))
            if brk.start < now:
                first_free = len(items)
        if stop.kind is StopKind.RELOAD:
            items.append(Item("reload", stop.location, 0, ((0, _FAR),)))
        else:
            visit = visits[stop.visit_id or ""]
            fixed = stop.start < now or visit.staff_count == 2
            items.append(visit_item(visit, 0, stop.start if fixed else None))
        if stop.start < now:
            first_free = len(items)
    if brk_at == len(route.stops) and b is not None and brk is not None:
        items.append(_break_of(b, brk, now))
        if brk.start < now:
            first_free = len(items)
    left_at = route.start
    if brk_at == 0 and brk is not None:  # a break taken before leaving
        left_at = min(left_at, brk.start)
    depart = left_at if left_at < now else max(cg.shift.start, now)
    st = RouteState(problem, cg, items, depart_min=depart)
    if b is not None and not any(it.kind == "break" for it in items):
        place_break(st)
    return st, first_free


def _break_of(b: Item, placed: BreakPlacement, now: int) -> Item:
    if placed.start < now:
        return Item("break", -1, b.dur, ((placed.start, placed.start),))
    return b
