"""Between dispatch's aggregates and the router: build a day's routing Problem, read a Plan back.

Times in the problem are minutes since local midnight of the planned day (area time zone).
Pure: no I/O; the application gathers the aggregates and applies the result.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.values import CaregiverKind, ServiceType
from services.dispatch import routing
from services.dispatch.domain.catalogue import CatalogueEntry
from services.dispatch.domain.people import SEVERE_DEPENDENCY_LEVEL, Caregiver, Elder

log = logging.getLogger(__name__)

# When an order gives no window, its visit may start in these local hours.
DEFAULT_WINDOW = (time(7, 0), time(19, 0))
# Volunteers give a few hours a day at most.
VOLUNTEER_MAX_WORK_MINUTES = 240


@dataclass(frozen=True)
class Job:
    """One visit to plan: a new order's or an existing visit's."""

    visit_id: str
    elder: Elder
    service_type: ServiceType
    entry: CatalogueEntry
    duration: int
    priority: str
    subsidised: bool
    window_start: datetime | None = None
    window_end: datetime | None = None
    staff_count: int = 1
    # Started visits keep their caregiver and start.
    pinned_caregiver: str | None = None
    pinned_start: datetime | None = None
    current_caregiver: str | None = None
    current_partner: str | None = None
    current_start: datetime | None = None
    # Where the visit takes place when not at the elder's home (a wearable's SOS position).
    location: tuple[float, float] | None = None


@dataclass(frozen=True)
class Placement:
    visit_id: str
    caregiver_id: str
    start: datetime
    end: datetime
    partner_id: str | None = None  # the second caregiver of a two-person visit


@dataclass
class DayPlan:
    placements: dict[str, Placement] = field(default_factory=dict)
    unassigned: dict[str, str] = field(default_factory=dict)  # visit id -> reason in words
    status: str = "feasible"
    travel_minutes: int = 0
    solve_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    violating_caregivers: set[str | None] = field(default_factory=set)


class DayProblem:
    """The routing problem of one area's day, with the mapping back to dispatch's ids."""

    def __init__(self, day: date, tz: ZoneInfo, caregivers: Sequence[Caregiver],
                 jobs: Sequence[Job], blacklisted_providers: set[str],
                 available_until: dict[str, datetime] | None = None,
                 now: datetime | None = None) -> None:
        self.day, self.tz = day, tz
        self.origin = datetime.combine(day, time(0, 0), tz)
        self.now_min = max(0, self.minute(now)) if now is not None else 0
        self.jobs = {j.visit_id: j for j in jobs}
        points: list[routing.LatLon] = []
        index: dict[tuple[float, float], int] = {}

        def location(lat: float, lon: float) -> int:
            key = (round(lat, 6), round(lon, 6))
            if key not in index:
                index[key] = len(points)
                points.append(routing.LatLon(lat, lon))
            return index[key]

        available_until = available_until or {}
        # Caregivers already at a visit were on their way earlier than their shift may say.
        earliest_pinned: dict[str, int] = {}
        for j in jobs:
            if j.pinned_start is not None:
                for cid in (j.pinned_caregiver, j.current_partner):
                    if cid:
                        earliest_pinned[cid] = min(earliest_pinned.get(cid, 24 * 60),
                                                   self.minute(j.pinned_start))
        self.caregivers: dict[str, Caregiver] = {}
        r_caregivers = []
        for c in caregivers:
            if not c.works_on(day) or not c.is_certified_on(day):
                continue  # never dispatch an expired certificate, nor on a day off
            start_t, end_t = c.shift_on(day)
            start = max(self.minute(datetime.combine(day, start_t, tz)), 0)
            if c.caregiver_id in earliest_pinned:
                start = max(0, min(start, earliest_pinned[c.caregiver_id] - 60))
            end = self.minute(datetime.combine(day, end_t, tz))
            if c.caregiver_id in available_until:
                end = min(end, self.minute(available_until[c.caregiver_id]))
            if end <= start:
                continue
            volunteer = c.kind is CaregiverKind.VOLUNTEER
            self.caregivers[c.caregiver_id] = c
            r_caregivers.append(routing.Caregiver(
                id=c.caregiver_id, shift=routing.TimeWindow(start, end),
                start_location=location(c.station_lat, c.station_lon),
                skills=frozenset(c.skills), certificate_level=c.certificate_level,
                gender=routing.Gender(c.gender) if c.gender else None,
                travel_mode=c.travel_mode,
                max_work_minutes=VOLUNTEER_MAX_WORK_MINUTES if volunteer else None,
                is_volunteer=volunteer,
            ))
        r_visits = []
        for j in jobs:
            lat, lon = j.location or (j.elder.lat, j.elder.lon)
            r_visits.append(self._visit(j, location(lat, lon), blacklisted_providers))
        modes = {c.travel_mode for c in r_caregivers} or {routing.TravelMode.EBIKE}
        matrices = routing.travel_times_for(routing.HaversineProvider(), points, modes)
        self.problem = routing.Problem(caregivers=tuple(r_caregivers), visits=tuple(r_visits),
                                       travel_times=matrices)

    def minute(self, at: datetime) -> int:
        return int((at - self.origin).total_seconds() // 60)

    def at(self, minute: int) -> datetime:
        return self.origin + timedelta(minutes=minute)

    def _visit(self, j: Job, loc: int, blacklisted: set[str]) -> routing.Visit:
        excluded = set(j.elder.excluded_caregiver_ids)
        for c in self.caregivers.values():
            if c.kind is CaregiverKind.VOLUNTEER and not j.entry.volunteer_allowed:
                excluded.add(c.caregiver_id)
            if j.subsidised and c.provider_id in blacklisted:
                excluded.add(c.caregiver_id)
        if j.staff_count == 2 and j.pinned_caregiver:
            # A started two-person visit keeps both its caregivers.
            excluded |= set(self.caregivers) - {j.pinned_caregiver, j.current_partner}
        if j.pinned_start is not None:
            start = self.minute(j.pinned_start)
            windows = (routing.TimeWindow(start, start),)
        else:
            lo = self.minute(j.window_start) if j.window_start else self.minute(
                datetime.combine(self.day, DEFAULT_WINDOW[0], self.tz))
            hi_end = self.minute(j.window_end) if j.window_end else self.minute(
                datetime.combine(self.day, DEFAULT_WINDOW[1], self.tz))
            lo = max(lo, self.now_min)
            hi = max(lo, hi_end - j.duration)
            windows = (routing.TimeWindow(lo, hi),)
        severe = j.elder.capability_level >= SEVERE_DEPENDENCY_LEVEL and j.entry.personal_care
        pref = j.elder.gender_preference
        return routing.Visit(
            id=j.visit_id, elder_id=j.elder.elder_id, location=loc, windows=windows,
            duration=j.duration, required_skills=frozenset(j.entry.skills),
            min_certificate_level=2 if severe else 0,
            staff_count=j.staff_count,
            preferred_caregiver_ids=frozenset(j.elder.preferred_caregiver_ids),
            excluded_caregiver_ids=frozenset(excluded),
            gender_preference=routing.Gender(pref) if pref else None,
            priority=routing.Priority[j.priority.upper()],
            pinned_caregiver=j.pinned_caregiver if j.staff_count == 1 else None,
            pinned_start=self.minute(j.pinned_start) if j.pinned_start else None,
        )

    def current_routes(self) -> dict[str, list[str]]:
        """The day as it stands (caregiver -> visits in planned order) to warm-start from."""
        routes: dict[str, list[tuple[datetime, str]]] = {}
        for j in self.jobs.values():
            for who in dict.fromkeys([j.pinned_caregiver or j.current_caregiver,
                                      j.current_partner]):
                if who in self.caregivers and (j.pinned_start or j.current_start):
                    routes.setdefault(who, []).append(
                        (j.pinned_start or j.current_start, j.visit_id))
        return {c: [v for _, v in sorted(stops)] for c, stops in routes.items()}

    def read(self, plan: routing.Plan) -> DayPlan:
        out = DayPlan(status=str(plan.status), travel_minutes=plan.total_travel,
                      solve_seconds=plan.solve_seconds)
        for route in plan.routes:
            for stop in route.stops:
                if stop.kind is not routing.StopKind.VISIT or not stop.visit_id:
                    continue
                first = out.placements.get(stop.visit_id)
                if first is not None:  # the second caregiver of a two-person visit
                    out.placements[stop.visit_id] = dataclasses.replace(
                        first, partner_id=route.caregiver_id)
                    continue
                out.placements[stop.visit_id] = Placement(
                    stop.visit_id, route.caregiver_id, self.at(stop.start), self.at(stop.end))
        for u in plan.unassigned:
            out.unassigned[u.visit_id] = u.reason_text
        found = routing.check(self.problem, plan)
        out.violations = [str(v) for v in found]
        out.violating_caregivers = {v.caregiver_id for v in found}
        return out

    def solve(self, time_limit_s: float, warm: bool = False) -> DayPlan:
        if not self.problem.visits:
            return DayPlan()
        kwargs = {}
        if warm and "initial_routes" in inspect.signature(routing.solve).parameters:
            kwargs["initial_routes"] = self.current_routes()
        return self.read(routing.solve(self.problem, time_limit_s=time_limit_s, **kwargs))

    def as_plan(self) -> routing.Plan:
        """The current assignments as a router Plan (for urgent insertion)."""
        routes = []
        for cid, visit_ids in self.current_routes().items():
            c = self.problem.caregiver(cid)
            stops, prev, t = [], c.start_location, c.shift.start
            for vid in visit_ids:
                v = self.problem.visit(vid)
                j = self.jobs[vid]
                start = self.minute(j.pinned_start or j.current_start)
                travel = self.problem.travel(c.travel_mode, prev, v.location)
                arrival = min(start, t + travel)
                stops.append(routing.Stop(vid, v.location, arrival, start, start + v.duration,
                                          travel, max(0, start - arrival)))
                prev, t = v.location, start + v.duration
            back = self.problem.travel(c.travel_mode, prev, c.return_location)
            first = stops[0].start - stops[0].travel_from_previous if stops else c.shift.start
            routes.append(routing.Route(cid, tuple(stops), max(c.shift.start, first), t + back,
                                        back))
        return routing.Plan(routes=tuple(routes))

    def insert_urgent(self, visit_id: str, now: datetime) -> DayPlan | None:
        """Urgent insertion by the router; None when the router cannot do it (yet)."""
        visit = self.problem.visit(visit_id)
        base = dataclasses.replace(self.problem, visits=tuple(
            v for v in self.problem.visits if v.id != visit_id))
        try:
            plan = routing.insert_urgent(base, self.as_plan(), visit, self.minute(now))
        except NotImplementedError:
            return None
        except Exception:  # noqa: BLE001 - fall back to the simple assignment, but say so
            log.exception("urgent insertion failed; falling back to the simple assignment")
            return None
        return self.read(plan)
