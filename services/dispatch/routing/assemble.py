"""Turning an ordered sequence with start times into Route/Plan objects (shared by all paths)."""

from __future__ import annotations

from collections.abc import Sequence

from .plan import (
    BreakPlacement,
    ObjectiveTerms,
    Plan,
    PlanStatus,
    Route,
    Stop,
    StopKind,
    UnassignedVisit,
)
from .problem import Caregiver, Priority, Problem, Visit
from .timing import RouteState


def route_from_state(state: RouteState) -> Route:
    """A Route from a construction/insertion RouteState, leaving as late as possible."""
    p, cg = state.problem, state.cg
    real = [it for it in state.items if it.kind != "break"]
    if not real:
        return Route(cg.id, (), state.start_min, state.start_min)
    first = state.items[0]
    go = 0 if first.kind == "break" else state.mat[cg.start_location][first.loc]
    depart = max(state.start_min, state.z[0] - go)
    starts, _ = state.schedule(depart)
    visits = p.visits_by_id()
    seq: list[tuple[Visit | None, int, int]] = []
    brk = None
    for it, s in zip(state.items, starts, strict=True):
        if it.kind == "break":
            brk = (s, s + it.dur)
        elif it.kind == "reload":
            seq.append((None, it.loc, s))
        else:
            seq.append((visits[it.visit_id or ""], it.loc, s))
    return route_from_starts(p, cg, seq, brk, depart)


def route_from_starts(p: Problem, cg: Caregiver, seq: Sequence[tuple[Visit | None, int, int]],
                      brk: tuple[int, int] | None, start_cumul: int) -> Route:
    """A Route from an ordered list of (visit or None for a reload, location, start time).

    Arrival and waiting are re-derived from travel times; the caregiver leaves the station as
    late as the first stop allows.
    """
    mode = cg.travel_mode
    stops: list[Stop] = []
    prev_loc, prev_end = cg.start_location, start_cumul
    placement: BreakPlacement | None = None
    # Leave the station as late as the first stop allows (keeping a break taken on the way out).
    if seq:
        _, first_loc, first_start = seq[0]
        go = p.travel(mode, prev_loc, first_loc)
        if brk is not None and start_cumul <= brk[0] and brk[1] <= first_start:
            latest = min(brk[0], first_start - go - (brk[1] - brk[0]))
        else:
            latest = first_start - go
        prev_end = max(start_cumul, latest)
    route_start = prev_end
    for k, (visit, loc, start) in enumerate(seq):
        travel = p.travel(mode, prev_loc, loc)
        pause = 0
        if brk is not None and placement is None and prev_end <= brk[0] and brk[1] <= start:
            placement = BreakPlacement(brk[0], brk[1], k)
            pause = brk[1] - brk[0]
        arrival = prev_end + travel
        waiting = max(0, start - arrival - pause)
        if visit is None:
            stops.append(Stop(None, loc, arrival, start, start, travel, waiting, StopKind.RELOAD))
            end = start
        else:
            end = start + visit.duration
            stops.append(Stop(visit.id, loc, arrival, start, end, travel, waiting))
        prev_loc, prev_end = loc, end
    back = p.travel(mode, prev_loc, cg.return_location)
    route_end = prev_end + back
    if brk is not None and placement is None and stops:
        if brk[0] >= route_end:  # after the day's work, at the station
            placement = BreakPlacement(brk[0], brk[1], len(stops))
        elif brk[0] >= prev_end:  # on the way back
            placement = BreakPlacement(brk[0], brk[1], len(stops))
            route_end = max(prev_end + back + (brk[1] - brk[0]), brk[1])
        elif brk[1] <= route_start:  # before leaving
            placement = BreakPlacement(brk[0], brk[1], 0)
    return Route(cg.id, tuple(stops), route_start, route_end, back, placement)


def finish_plan(p: Problem, routes: list[Route], unassigned: list[UnassignedVisit],
                seconds: float) -> Plan:
    """A Plan with objective terms computed from the routes (shared by solve/replan/insertion)."""
    visits = p.visits_by_id()
    travel = sum(r.travel for r in routes)
    dropped: dict[Priority, int] = {}
    for u in unassigned:
        dropped[u.priority] = dropped.get(u.priority, 0) + 1
    misses = 0
    for r in routes:
        for vid in r.visit_ids:
            v = visits.get(vid)
            if v is not None and v.preferred_caregiver_ids and r.caregiver_id not in \
                    v.preferred_caregiver_ids:
                misses += 1
    works = [r.end - r.start for r in routes if r.stops]
    spread = (max(works) - min(works)) if works else 0
    status = PlanStatus.FEASIBLE if not unassigned else PlanStatus.PARTIAL
    return Plan(tuple(routes), tuple(unassigned),
                ObjectiveTerms(travel, 0, dropped, misses, spread), seconds, status)


