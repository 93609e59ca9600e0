"""Replanning during the day: keep started/confirmed visits, warm-start from the routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .plan import Plan
from .problem import Problem, Visit
from .solver import solve


@dataclass(frozen=True, slots=True)
class CaregiverUnavailable:
    """The caregiver stops working at ``from_time`` (falls ill): later visits must move."""

    caregiver_id: str
    from_time: int | None = None  # None: at ``now``


@dataclass(frozen=True, slots=True)
class VisitCancelled:
    visit_id: str


@dataclass(frozen=True, slots=True)
class VisitRunningLong:
    """A started visit will end ``extra_minutes`` later than planned."""

    visit_id: str
    extra_minutes: int


@dataclass(frozen=True, slots=True)
class VisitAdded:
    visit: Visit


@dataclass(frozen=True, slots=True)
class VisitConfirmed:
    """The elder confirmed the visit with its planned caregiver and time: keep both."""

    visit_id: str


Change = CaregiverUnavailable | VisitCancelled | VisitRunningLong | VisitAdded | VisitConfirmed


def apply_changes(problem: Problem, plan: Plan, changes: Sequence[Change], now: int) -> Problem:
    """The problem as it stands at ``now`` after ``changes``; replan's plan is valid for it.

    - visits started before ``now`` and confirmed visits are pinned to their caregiver(s) and start;
    - visits not started cannot start before ``now`` (their windows are clipped);
    - caregivers who have not left yet cannot leave before ``now``;
    - a break already begun keeps its time;
    - a caregiver falling ill keeps what they started and stops at ``from_time``;
    - a cancelled visit leaves the problem; a visit running long gets the longer duration.
    """
    visits = {v.id: v for v in problem.visits}
    caregivers = {c.id: c for c in problem.caregivers}
    served: dict[str, list[tuple[str, int]]] = {}
    for r in plan.routes:
        for stop in r.stops:
            if stop.visit_id is not None:
                served.setdefault(stop.visit_id, []).append((r.caregiver_id, stop.start))
    confirmed = {c.visit_id for c in changes if isinstance(c, VisitConfirmed)}
    for c in changes:
        if isinstance(c, VisitCancelled):
            visits.pop(c.visit_id, None)
        elif isinstance(c, VisitAdded):
            visits[c.visit.id] = c.visit
        elif isinstance(c, VisitRunningLong) and c.visit_id in visits:
            v = visits[c.visit_id]
            visits[c.visit_id] = replace(v, duration=v.duration + c.extra_minutes)
    ill = {c.caregiver_id: (now if c.from_time is None else c.from_time)
           for c in changes if isinstance(c, CaregiverUnavailable)}
    everyone = frozenset(caregivers)
    for vid, v in list(visits.items()):
        done = served.get(vid, [])
        started = bool(done) and min(s for _, s in done) < now
        if started or (vid in confirmed and done):
            who = [cid for cid, _ in done]
            start = done[0][1]
            if len(who) == 1:
                visits[vid] = replace(v, pinned_caregiver=who[0], pinned_start=start)
            else:
                visits[vid] = replace(v, pinned_start=start, excluded_caregiver_ids=everyone
                                      - frozenset(who))
            continue
        wins = tuple(replace(w, start=max(w.start, now)) for w in v.windows if w.end >= now)
        if not wins:  # too late today: keep an impossible window so it is reported unreachable
            wins = (replace(v.windows[-1], start=v.windows[-1].end),)
        if v.pinned_start is not None and v.pinned_start < now:
            v = replace(v, pinned_start=None)
        if any(cid in ill for cid, _ in done) or v.pinned_caregiver in ill:
            v = replace(v, pinned_caregiver=None)
        visits[vid] = replace(v, windows=wins)

    new_caregivers = []
    for cg in problem.caregivers:
        route = plan.route_of(cg.id)
        left = route is not None and route.stops and route.start < now
        shift = cg.shift
        if not left:
            shift = replace(shift, start=min(max(shift.start, now), shift.end))
        brk = cg.rest_break
        if brk is not None and route is not None and route.rest_break is not None and \
                route.rest_break.start < now:
            b = route.rest_break
            brk = replace(brk, window=replace(brk.window, start=b.start, end=b.start + brk.minutes))
        if cg.id in ill:
            stop_at = ill[cg.id]
            kept = [s for s in (route.stops if route else ()) if s.start < stop_at]
            back = stop_at
            if kept:
                last = kept[-1]
                back = max(stop_at, last.end + problem.travel(cg.travel_mode, last.location,
                                                              cg.return_location))
            shift = replace(shift, end=max(shift.start, back))
            if brk is not None and brk.window.end > shift.end:
                brk = None if (route is None or route.rest_break is None
                               or route.rest_break.start >= stop_at) else brk
        new_caregivers.append(replace(cg, shift=shift, rest_break=brk))
    return replace(problem, caregivers=tuple(new_caregivers), visits=tuple(visits.values()))


def replan(problem: Problem, plan: Plan, changes: Sequence[Change], now: int,
           *, time_limit_s: float, seed: int = 0) -> Plan:
    """A new plan after ``changes`` at time ``now``, warm-started from ``plan``'s routes.

    The plan is valid for ``apply_changes(problem, plan, changes, now)``.
    """
    current = apply_changes(problem, plan, changes, now)
    ill = {c.caregiver_id for c in changes if isinstance(c, CaregiverUnavailable)}
    alive = {v.id: v for v in current.visits}
    initial: dict[str, list[str]] = {}
    for r in plan.routes:
        keep = []
        for vid in r.visit_ids:
            if vid not in alive:
                continue
            v = alive[vid]
            if r.caregiver_id in ill and v.pinned_caregiver != r.caregiver_id:
                continue
            keep.append(vid)
        initial[r.caregiver_id] = keep
    return solve(current, time_limit_s=time_limit_s, seed=seed, initial_routes=initial)
