"""An independent plan checker: re-times every route from the problem alone.

It does not trust the solver: arrival times are recomputed from the travel matrices, and each stop's
start must be reachable from the previous stop's end (plus the break if the break is taken in that
gap). It reports every violated rule rather than stopping at the first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from .plan import Plan, Route, StopKind
from .problem import Caregiver, Problem, Visit, can_serve


class ViolationKind(StrEnum):
    UNKNOWN_CAREGIVER = "unknown_caregiver"
    UNKNOWN_VISIT = "unknown_visit"
    DUPLICATE_ROUTE = "duplicate_route"
    DUPLICATE_VISIT = "duplicate_visit"
    MISSING_VISIT = "missing_visit"
    WINDOW = "window"
    PINNED_START = "pinned_start"
    TIMING = "timing"  # a stop starts before it can be reached, or ends too early
    SHIFT = "shift"
    MAX_WORK = "max_work"
    SKILL = "skill"
    CERTIFICATE = "certificate"
    GENDER = "gender"
    EXCLUDED = "excluded"
    PINNED_CAREGIVER = "pinned_caregiver"
    CAPACITY = "capacity"
    RELOAD = "reload"
    PAIRING = "pairing"
    BREAK = "break"


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    message: str
    caregiver_id: str | None = None
    visit_id: str | None = None


def check(problem: Problem, plan: Plan) -> list[Violation]:
    """Every rule the plan breaks, re-derived from ``problem``; empty list = valid plan."""
    out: list[Violation] = []
    visits = problem.visits_by_id()
    caregivers = problem.caregivers_by_id()
    # visit id -> list of (caregiver id, start)
    served: dict[str, list[tuple[str, int]]] = defaultdict(list)
    seen_routes: set[str] = set()

    for route in plan.routes:
        cg = caregivers.get(route.caregiver_id)
        if cg is None:
            out.append(Violation(ViolationKind.UNKNOWN_CAREGIVER,
                                 f"route for unknown caregiver {route.caregiver_id}",
                                 route.caregiver_id))
            continue
        if cg.id in seen_routes:
            out.append(Violation(ViolationKind.DUPLICATE_ROUTE, f"two routes for {cg.id}", cg.id))
        seen_routes.add(cg.id)
        out.extend(_check_route(problem, visits, cg, route, served))

    unassigned_ids = [u.visit_id for u in plan.unassigned]
    for vid in unassigned_ids:
        if vid not in visits:
            out.append(Violation(ViolationKind.UNKNOWN_VISIT, f"unassigned visit {vid} unknown",
                                 visit_id=vid))
    if len(set(unassigned_ids)) != len(unassigned_ids):
        out.append(Violation(ViolationKind.DUPLICATE_VISIT, "a visit is listed unassigned twice"))
    unassigned = set(unassigned_ids)

    for vid, visit in visits.items():
        done = served.get(vid, [])
        if vid in unassigned:
            if done:
                out.append(Violation(ViolationKind.DUPLICATE_VISIT,
                                     f"visit {vid} is both routed and unassigned", visit_id=vid))
            continue
        if not done:
            out.append(Violation(ViolationKind.MISSING_VISIT,
                                 f"visit {vid} is neither routed nor unassigned", visit_id=vid))
            continue
        caregiver_ids = [c for c, _ in done]
        if len(set(caregiver_ids)) != len(caregiver_ids):
            out.append(Violation(ViolationKind.DUPLICATE_VISIT,
                                 f"visit {vid} appears twice on one route", visit_id=vid))
        if len(done) != visit.staff_count:
            kind = (ViolationKind.PAIRING if visit.staff_count == 2 or len(done) == 2
                    else ViolationKind.DUPLICATE_VISIT)
            out.append(Violation(kind, f"visit {vid} needs {visit.staff_count} caregiver(s), "
                                       f"has {len(done)}", visit_id=vid))
        elif visit.staff_count == 2 and done[0][1] != done[1][1]:
            out.append(Violation(ViolationKind.PAIRING,
                                 f"two-caregiver visit {vid} starts at {done[0][1]} and "
                                 f"{done[1][1]}", visit_id=vid))
    return out


def _check_route(problem: Problem, visits: dict[str, Visit], cg: Caregiver, route: Route,
                 served: dict[str, list[tuple[str, int]]]) -> list[Violation]:
    out: list[Violation] = []
    mode = cg.travel_mode

    def v(kind: ViolationKind, msg: str, visit_id: str | None = None) -> None:
        out.append(Violation(kind, f"{cg.id}: {msg}", cg.id, visit_id))

    if not route.stops:
        return out
    if route.start < cg.shift.start:
        v(ViolationKind.SHIFT, f"leaves at {route.start} before shift start {cg.shift.start}")
    if route.end > cg.shift.end:
        v(ViolationKind.SHIFT, f"back at {route.end} after shift end {cg.shift.end}")
    if cg.max_work_minutes is not None and route.end - route.start > cg.max_work_minutes:
        v(ViolationKind.MAX_WORK, f"works {route.end - route.start} > {cg.max_work_minutes} min")

    brk = route.rest_break
    if brk is not None and cg.rest_break is None:
        v(ViolationKind.BREAK, "break placed but caregiver has none")
    if brk is not None and cg.rest_break is not None:
        want = cg.rest_break
        if brk.end - brk.start < want.minutes:
            v(ViolationKind.BREAK, f"break {brk.start}-{brk.end} shorter than {want.minutes} min")
        if brk.start < want.window.start or brk.end > want.window.end:
            v(ViolationKind.BREAK, f"break {brk.start}-{brk.end} outside its window "
                                   f"{want.window.start}-{want.window.end}")
    elif brk is None and cg.rest_break is not None:
        want = cg.rest_break
        fits_before = route.start - want.minutes >= want.window.start
        fits_after = route.end + want.minutes <= want.window.end
        if not (fits_before or fits_after):
            v(ViolationKind.BREAK, "no break placed although the route spans its window")

    # Re-time: gap k runs from prev_end (route start or previous stop's end) to stop k's start.
    prev_loc, prev_end = cg.start_location, route.start
    break_used = brk is None or brk.end <= route.start or brk.start >= route.end
    load, capacity = 0, cg.meal_box_capacity
    gaps: list[tuple[int, int, int]] = []  # (gap start, gap end, travel in gap)
    for stop in route.stops:
        travel = problem.travel(mode, prev_loc, stop.location)
        gaps.append((prev_end, stop.start, travel))
        if stop.kind is StopKind.RELOAD:
            if stop.location != cg.start_location:
                v(ViolationKind.RELOAD, f"reload at {stop.location}, not at the station")
            load = 0
        else:
            visit = visits.get(stop.visit_id or "")
            if visit is None:
                v(ViolationKind.UNKNOWN_VISIT, f"unknown visit {stop.visit_id}", stop.visit_id)
                prev_loc, prev_end = stop.location, stop.end
                continue
            served[visit.id].append((cg.id, stop.start))
            out.extend(_check_assignment(cg, visit))
            if stop.location != visit.location:
                v(ViolationKind.TIMING, f"visit {visit.id} at location {stop.location}, "
                                        f"elder lives at {visit.location}", visit.id)
            if not visit.start_allowed(stop.start):
                wins = ", ".join(f"{w.start}-{w.end}" for w in visit.windows)
                v(ViolationKind.WINDOW, f"visit {visit.id} starts at {stop.start}, "
                                        f"outside {wins}", visit.id)
            if visit.pinned_start is not None and stop.start != visit.pinned_start:
                v(ViolationKind.PINNED_START, f"visit {visit.id} starts at {stop.start}, pinned "
                                              f"to {visit.pinned_start}", visit.id)
            if stop.end - stop.start < visit.duration:
                v(ViolationKind.TIMING, f"visit {visit.id} lasts {stop.end - stop.start} < "
                                        f"{visit.duration} min", visit.id)
            load += visit.meal_boxes
            if capacity is not None and load > capacity:
                v(ViolationKind.CAPACITY, f"carries {load} meal boxes > {capacity}", visit.id)
        prev_loc, prev_end = stop.location, stop.end
    back = problem.travel(mode, prev_loc, cg.return_location)
    gaps.append((prev_end, route.end, back))

    for k, (g_start, g_end, travel) in enumerate(gaps):
        need = travel
        if brk is not None and not break_used and g_start <= brk.start and brk.end <= g_end:
            need += brk.end - brk.start
            break_used = True
        if g_end - g_start < need:
            where = (f"stop {route.stops[k].visit_id or 'reload'}" if k < len(route.stops)
                     else "the station")
            v(ViolationKind.TIMING, f"reaches {where} at {g_start + need} but the plan says "
                                    f"{g_end}", route.stops[k].visit_id if k < len(route.stops)
              else None)
    if brk is not None and not break_used:
        v(ViolationKind.BREAK, f"break {brk.start}-{brk.end} overlaps a visit")
    return out


def _check_assignment(cg: Caregiver, visit: Visit) -> list[Violation]:
    visit_id = visit.id
    reason = can_serve(cg, visit)
    if reason is None:
        return []
    if visit.pinned_caregiver is not None and visit.pinned_caregiver != cg.id:
        kind = ViolationKind.PINNED_CAREGIVER
    elif cg.id in visit.excluded_caregiver_ids:
        kind = ViolationKind.EXCLUDED
    elif visit.required_skills - cg.skills:
        kind = ViolationKind.SKILL
    elif cg.certificate_level < visit.min_certificate_level:
        kind = ViolationKind.CERTIFICATE
    else:
        kind = ViolationKind.GENDER
    return [Violation(kind, f"{cg.id} may not do visit {visit_id}: {reason}", cg.id, visit_id)]
