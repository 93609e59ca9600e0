"""The dispatcher dashboard (调度台): its page and the read/move endpoints only it uses.

The page is plain HTML/CSS/JS in ./static/dashboard (no build step, no CDN). It reads one
aggregated view of an area's day (`GET /dispatch/dashboard/api/areas/{area}/day`), follows the
area's server-sent events, and acts through dispatch's own API (plans, replans, proposals,
alerts, orders). Moving a visit by drag and drop is the one command dispatch did not offer:
`POST /dispatch/dashboard/api/visits/{visit_id}/move` re-times the day with the move applied and
lets the router's independent checker decide; the move is saved as a Visit.Rescheduled event or
refused with the checker's reasons.
"""

from __future__ import annotations

import os
import re
import weakref
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from contracts.values import ServiceType
from services.dispatch import routing
from services.dispatch.access import DispatchAccess
from services.dispatch.api import alert_view, proposal_view, visit_view
from services.dispatch.domain.people import Caregiver
from services.dispatch.domain.visits import (
    FINISHED,
    NOT_STARTED,
    DispatchError,
    OrderState,
    Visit,
    VisitState,
)
from services.dispatch.planning import DayProblem, Job
from services.runtime.auth import Principal
from services.runtime.http import OffLoopRoute, add_page

STATIC = Path(__file__).resolve().parent / "static" / "dashboard"
# Optional map tiles, e.g. "http://tiles.local/{z}/{x}/{y}.png"; without it the map draws on a
# clean projected background.
TILE_URL_ENV = "HOMECARE_DASHBOARD_TILE_URL"
# One colour per caregiver (the Tableau 10 set) on a white background; after ten they repeat.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22"]
# A gap this long inside a caregiver's day is drawn as a break (dispatch plans no breaks itself).
BREAK_MIN_MINUTES = 30
CLOCK_TOKEN = re.compile(r"^(\d{1,4}(?:-\d{1,4})?)([,;.)]?)$")
DONE = frozenset({VisitState.CHECKED_OUT, VisitState.VERIFIED})
GONE = frozenset({VisitState.CANCELLED})


class MoveIn(BaseModel):
    caregiver_id: str = Field(min_length=1)
    planned_start: AwareDatetime
    by: str | None = Field(default=None, description="Ignored (kept for older clients): the "
                                                     "caller named by the token is recorded")
    replacing: str | None = Field(
        default=None, description="Two-person visit: the caregiver who gives it up (the "
                                  "first one if absent); the other stays, at the new time")


class MoveRefused(DispatchError):
    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class MoveCheck:
    """The router checker's verdict on a move: the violations it adds, in words."""

    visit_id: str
    caregiver_id: str
    start: datetime
    end: datetime
    violations: list[str]
    team: list[str]  # the visit's caregivers after the move (two for two-person care)


# Reading the day -----------------------------------------------------------------------------
def _minutes(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds() // 60)


def _travel(mode: str, a: tuple[float, float], b: tuple[float, float]) -> int:
    return routing.HaversineProvider().minutes(routing.LatLon(*a), routing.LatLon(*b), mode)


def caregiver_status(c: Caregiver, day: date) -> str | None:
    """Why the caregiver cannot take visits that day, or None."""
    if not c.works_on(day):
        return "not working that day"
    if not c.is_certified_on(day):
        return "certificate expired"
    if day.isoformat() in c.unavailable_from:
        return "reported sick"
    return None


def visit_flags(v: Visit, now: datetime, late_grace: int, overrun_grace: int) -> dict[str, bool]:
    """Late start and overrun as the dispatcher sees them now (planned vs actual)."""
    grace = timedelta(minutes=late_grace)
    started = v.checked_in_at
    late = (started > v.planned_start + grace if started is not None
            else v.state in NOT_STARTED and now > v.planned_start + grace)
    end = v.checked_out_at or (now if v.state is VisitState.CHECKED_IN else None)
    overrun = end is not None and end > v.planned_end + timedelta(minutes=overrun_grace)
    return {"late": bool(late), "overrun": bool(overrun)}


def caregivers_of(v: Visit) -> list[str]:
    """The visit's caregivers: one, or two for two-person care (both start together)."""
    return list(getattr(v, "caregiver_ids", None) or [v.caregiver_id])


def lanes(app: Any, area: str, day: date, now: datetime) -> dict[str, Any]:
    """Each caregiver's day in planned order: visits (a two-person visit in both lanes) with
    travel from the previous stop, gaps long enough to be breaks, the last reported position."""
    rules = app.rules(area)
    late_grace = min(rules.late_grace_minutes)
    elders = {e.elder_id: e for e in app.list_elders(area)}
    caregivers = app.list_caregivers(area)
    by_caregiver: dict[str, list[Visit]] = defaultdict(list)
    views: dict[str, dict[str, Any]] = {}
    for v in app.list_visits(area, day):
        for caregiver_id in caregivers_of(v):
            by_caregiver[caregiver_id].append(v)
        elder = elders.get(v.elder_id)
        view = visit_view(v)
        # Where the visit takes place: the elder's home, or where an SOS came from.
        view.update(elder_name=elder.name if elder else v.elder_id, lat=v.home_lat,
                    lon=v.home_lon, address=elder.address if elder else "",
                    caregiver_ids=caregivers_of(v), travel_minutes=0, partner_travel_minutes=0,
                    **visit_flags(v, now, late_grace, rules.overrun_grace_minutes))
        views[v.visit_id] = view
    out_caregivers = []
    for n, c in enumerate(caregivers):
        station = (c.station_lat, c.station_lon)
        previous, previous_end, last_position = station, None, None
        breaks = []
        for v in by_caregiver.get(c.caregiver_id, []):
            if v.state in GONE:
                continue
            place = (v.home_lat, v.home_lon)
            travel = _travel(c.travel_mode, previous, place)
            partner = c.caregiver_id != v.caregiver_id
            views[v.visit_id]["partner_travel_minutes" if partner else "travel_minutes"] = travel
            if previous_end is not None:
                gap = _minutes(previous_end, v.planned_start) - travel
                if gap >= BREAK_MIN_MINUTES:
                    breaks.append({"start": previous_end + timedelta(minutes=travel),
                                   "end": v.planned_start, "minutes": gap})
            previous, previous_end = place, v.planned_end
            for at, lat, lon, what in (
                    (v.checked_in_at, getattr(v, "check_in_lat", None),
                     getattr(v, "check_in_lon", None), "check-in"),
                    (v.checked_out_at, getattr(v, "check_out_lat", None),
                     getattr(v, "check_out_lon", None), "check-out")):
                if at is not None and lat is not None and lon is not None and (
                        last_position is None or at >= last_position["at"]):
                    last_position = {"at": at, "lat": lat, "lon": lon, "visit_id": v.visit_id,
                                     "what": what}
        shift_start, shift_end = c.shift_on(day)
        out_caregivers.append({
            "caregiver_id": c.caregiver_id, "name": c.name, "kind": c.kind,
            "colour": PALETTE[n % len(PALETTE)], "skills": c.skills,
            "station": {"lat": c.station_lat, "lon": c.station_lon},
            "shift_start": shift_start.strftime("%H:%M"),
            "shift_end": shift_end.strftime("%H:%M"), "travel_mode": c.travel_mode,
            "unavailable": caregiver_status(c, day), "breaks": breaks,
            "last_position": last_position,
        })
    return {"caregivers": out_caregivers, "visits": list(views.values())}


def unassigned(app: Any, area: str, day: date) -> list[dict[str, Any]]:
    """Orders of the day without a visit, with the router's (or the assignment's) reason."""
    out = []
    for o in app.list_orders(area, day):
        if o.state not in (OrderState.UNASSIGNED, OrderState.PLACED) or o.visit_ids:
            continue
        elder = app.get_elder(o.elder_id)
        out.append({"order_id": o.order_id, "elder_id": o.elder_id, "elder_name": elder.name,
                    "lat": elder.lat, "lon": elder.lon, "service_type": o.service_type,
                    "priority": o.priority, "emergency": o.emergency, "state": o.state,
                    "duration_minutes": o.duration_minutes,
                    "window_start": o.window_start, "window_end": o.window_end,
                    "reason": o.unassigned_reason or "awaiting the daily plan"})
    return out


COUNTS = ("planned", "done", "started", "on_time", "travel_minutes")
# Earlier days of the month change rarely (a late review, a reversal): their counts are kept
# this long, so that the redraw after each live event stays cheap on a full month.
MONTH_CACHE_SECONDS = 60.0
_month_cache: weakref.WeakKeyDictionary[Any, dict[tuple[str, date], tuple[float, dict[str, int]]]]
_month_cache = weakref.WeakKeyDictionary()


def day_counts(visits: list[dict[str, Any]], late_grace: int) -> dict[str, int]:
    planned = [v for v in visits if v["state"] not in GONE]
    started = [v for v in planned if v["checked_in_at"] is not None]
    on_time = [v for v in started
               if v["checked_in_at"] <= v["planned_start"] + timedelta(minutes=late_grace)]
    return {"planned": len(planned), "done": len([v for v in planned if v["state"] in DONE]),
            "started": len(started), "on_time": len(on_time),
            "travel_minutes": sum(v["travel_minutes"] + v["partner_travel_minutes"]
                                  for v in planned)}


def rates(counts: dict[str, int]) -> dict[str, Any]:
    """On-time rate (started within the first late grace), done / planned, travel per visit."""
    started, planned = counts["started"], counts["planned"]
    return {**counts,
            "on_time_rate": round(counts["on_time"] / started, 3) if started else None,
            "travel_minutes_per_visit": (round(counts["travel_minutes"] / planned, 1)
                                         if planned else None)}


def month_kpis(app: Any, area: str, day: date, today: dict[str, int]) -> dict[str, Any]:
    """The same measures over the month up to ``day`` (whose counts are ``today``)."""
    first = day.replace(day=1)
    late_grace = min(app.rules(area).late_grace_minutes)
    total = dict(today)
    cursor = first
    while cursor < day:
        cache = _month_cache.setdefault(app, {})
        cached = cache.get((area, cursor))
        if cached is None or cached[0] < monotonic():
            counts = day_counts(lanes(app, area, cursor, app.clock())["visits"], late_grace)
            cache[(area, cursor)] = cached = (monotonic() + MONTH_CACHE_SECONDS, counts)
        for name in COUNTS:
            total[name] += cached[1][name]
        cursor += timedelta(days=1)
    return {"month": first.strftime("%Y-%m"), **rates(total)}


def day_view(app: Any, area: str, day: date, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard draws for one area and day, in one read."""
    now = now or app.clock()
    rules = app.rules(area)
    late_grace = min(rules.late_grace_minutes)
    # Read the log position first: the page follows the stream from here, so nothing written
    # while this view is assembled is missed (at worst it is drawn twice).
    position = app.process_recorder.max_notification_id() or 0
    drawn = lanes(app, area, day, now)
    counts = day_counts(drawn["visits"], late_grace)
    offset = datetime.combine(day, time(12), app.tz).strftime("%z")
    return {
        "service_area_id": area, "date": day, "now": now, "timezone": str(app.tz),
        "utc_offset": f"{offset[:3]}:{offset[3:]}", "stream_position": position,
        "tile_url": os.environ.get(TILE_URL_ENV) or None,
        "rules": {"late_grace_minutes": late_grace,
                  "overrun_grace_minutes": rules.overrun_grace_minutes},
        **drawn,
        "elders": [{"elder_id": e.elder_id, "name": e.name, "lat": e.lat, "lon": e.lon,
                    "address": e.address} for e in app.list_elders(area)],
        "unassigned": unassigned(app, area, day),
        "alerts": [alert_view(a) for a in app.list_alerts(area)],
        "proposals": [proposal_view(p) for p in app.list_proposals(area)
                      if p.state == "proposed"],
        "services": [s.value for s in ServiceType],
        "kpis": {"day": rates(counts), "month": month_kpis(app, area, day, counts)},
    }


# Moving a visit ------------------------------------------------------------------------------
def _day_problem(app: Any, area: str, day: date, now: datetime) -> DayProblem:
    """The routing problem of the day as it stands, from the application's public reads: the
    same jobs its own replanning builds (finished visits left out; started ones pinned and
    kept at least until now plus the overrun grace; two-person visits with both caregivers;
    the visit's own place)."""
    catalogue = app.catalogue(area)
    grace = app.rules(area).overrun_grace_minutes
    jobs = []
    for v in app.list_visits(area, day):
        if v.state in FINISHED or v.state is VisitState.CHECKED_OUT:
            continue
        order = app.get_order(v.order_id)
        started = v.state is VisitState.CHECKED_IN
        duration = v.planned_minutes
        if started and v.checked_in_at is not None:
            duration = max(duration, _minutes(v.checked_in_at, now) + grace)
        partner = getattr(v, "second_caregiver_id", None)
        jobs.append(Job(
            visit_id=v.visit_id, elder=app.get_elder(v.elder_id), service_type=v.service_type,
            entry=catalogue[v.service_type], duration=duration, priority=v.priority,
            subsidised=order.subsidised, window_start=order.window_start,
            window_end=order.window_end, staff_count=2 if partner else 1,
            pinned_caregiver=v.caregiver_id if started else None,
            pinned_start=v.checked_in_at if started else None,
            current_caregiver=v.caregiver_id, current_partner=partner,
            current_start=v.planned_start, location=(v.home_lat, v.home_lon)))
    caregivers = app.list_caregivers(area)
    blacklisted = {c.provider_id for c in caregivers
                   if c.provider_id and app.get_provider(c.provider_id).blacklisted}
    sick = {c.caregiver_id: datetime.fromisoformat(c.unavailable_from[day.isoformat()])
            for c in caregivers if day.isoformat() in c.unavailable_from}
    return DayProblem(day, app.tz, caregivers, jobs, blacklisted, available_until=sick, now=now)


Assignment = dict[str, tuple[list[str], int]]  # visit id -> (its caregivers, start minute)


def _route(problem: DayProblem, caregiver_id: str,
           stops: list[tuple[int, str]]) -> routing.Route:
    """A route through ``stops`` (start minute, visit id) as planned; the checker re-times it."""
    p = problem.problem
    c = p.caregiver(caregiver_id)
    out, location, t = [], c.start_location, None
    for start, visit_id in sorted(stops):
        v = p.visit(visit_id)
        travel = p.travel(c.travel_mode, location, v.location)
        arrival = start - travel if t is None else t + travel
        out.append(routing.Stop(visit_id, v.location, arrival, start, start + v.duration, travel,
                                max(0, start - arrival)))
        location, t = v.location, start + v.duration
    if not out:
        return routing.Route(caregiver_id, (), c.shift.start, c.shift.start)
    back = p.travel(c.travel_mode, location, c.return_location)
    return routing.Route(caregiver_id, tuple(out), out[0].start - out[0].travel_from_previous,
                         t + back, back)


def _plan(problem: DayProblem, assignment: Assignment) -> routing.Plan:
    by_caregiver: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for visit_id, (caregiver_ids, start) in assignment.items():
        for caregiver_id in caregiver_ids:
            by_caregiver[caregiver_id].append((start, visit_id))
    routes = tuple(_route(problem, c, stops) for c, stops in sorted(by_caregiver.items()))
    # Visits whose caregiver is off the day's problem (sick, day off): listed unassigned, so the
    # checker judges the routes that exist and does not report them missing.
    placed = set(assignment)
    left = tuple(routing.UnassignedVisit(v.id, v.priority, routing.UnassignedReason.NO_ROOM)
                 for v in problem.problem.visits if v.id not in placed)
    return routing.Plan(routes=routes, unassigned=left)


def _current(problem: DayProblem) -> Assignment:
    """The day as it stands, on the caregivers still in the problem."""
    out: Assignment = {}
    for j in problem.jobs.values():
        who = [c for c in dict.fromkeys([j.pinned_caregiver or j.current_caregiver,
                                         j.current_partner]) if c]
        when = j.pinned_start or j.current_start
        if when is not None and who and all(c in problem.caregivers for c in who):
            out[j.visit_id] = (who, problem.minute(when))
    return out


def check_move(app: Any, visit_id: str, caregiver_id: str, start: datetime,
               now: datetime | None = None,
               replacing: str | None = None) -> MoveCheck:
    """The violations a move adds to the day, by the router's checker; [] = allowed.

    ``replacing``: which of a two-person visit's caregivers gives it up (the first one by
    default); the other one stays and starts at the new time too.
    """
    now = now or app.clock()
    visit = app.get_visit(visit_id)
    target = app.get_caregiver(caregiver_id)
    end = start + timedelta(minutes=visit.planned_minutes)
    caregivers = caregivers_of(visit)
    replacing = replacing or visit.caregiver_id
    team = [caregiver_id if c == replacing else c for c in caregivers]

    def refused(reason: str) -> MoveCheck:
        return MoveCheck(visit_id, caregiver_id, start, end, [reason], team)

    if replacing not in caregivers:
        return refused(f"{replacing} is not on visit {visit_id}")
    if len(set(team)) != len(team):
        return refused(f"{target.name} is already on visit {visit_id} (two-person care)")
    if visit.state not in NOT_STARTED:
        return refused(f"visit {visit_id} is {visit.state}: only visits not started can move")
    if target.service_area_id != visit.service_area_id:
        return refused(f"{target.name} works in another area ({target.service_area_id})")
    day = app.local_day(visit.planned_start)
    if app.local_day(start) != day:
        return refused("a visit moves within its day; another day is a new order")
    why = caregiver_status(target, day)
    if why:
        return refused(f"{target.name} ({caregiver_id}): {why}")
    problem = _day_problem(app, visit.service_area_id, day, now)
    if caregiver_id not in problem.caregivers:
        return refused(f"{target.name} ({caregiver_id}) has no time left that day")
    current = _current(problem)
    before = routing.check(problem.problem, _plan(problem, current))
    moved = {**current, visit_id: (team, problem.minute(start))}
    after = routing.check(problem.problem, _plan(problem, moved))
    touched = {*team, *caregivers}
    known = {(v.kind, v.caregiver_id, v.visit_id) for v in before if v.visit_id != visit_id}
    added = [v for v in after
             if (v.visit_id == visit_id or v.caregiver_id in touched)
             and (v.visit_id == visit_id or (v.kind, v.caregiver_id, v.visit_id) not in known)]
    return MoveCheck(visit_id, caregiver_id, start, end,
                     [_in_words(v, problem) for v in added], team)


def _in_words(v: routing.Violation, problem: DayProblem) -> str:
    """The checker's message with its minutes since midnight shown as local clock times
    (numbers followed by "min" are durations and stay)."""
    words = v.message.split(" ")
    for i, word in enumerate(words):
        match = CLOCK_TOKEN.match(word)
        if match and (i + 1 >= len(words) or not words[i + 1].startswith("min")):
            times = "-".join(problem.at(int(m)).strftime("%H:%M")
                             for m in match.group(1).split("-"))
            words[i] = times + match.group(2)
    return f"{v.kind}: " + " ".join(words)


def move_visit(app: Any, visit_id: str, caregiver_id: str, start: datetime, by: str,
               now: datetime | None = None, replacing: str | None = None) -> Visit:
    """Apply the move as a Visit.Rescheduled event, or raise MoveRefused with the reasons."""
    verdict = check_move(app, visit_id, caregiver_id, start, now, replacing)
    if verdict.violations:
        raise MoveRefused(verdict.violations)
    visit = app.get_visit(visit_id)
    first = app.get_caregiver(verdict.team[0])
    second = {"second_caregiver_id": verdict.team[1]} if len(verdict.team) > 1 else {}
    if visit.reschedule(caregiver_id=first.caregiver_id, caregiver_kind=first.kind,
                        provider_id=first.provider_id, planned_start=verdict.start,
                        planned_end=verdict.end, reason=f"moved by {by} on the dashboard",
                        **second):
        app.save(visit)
    return visit


# Routes --------------------------------------------------------------------------------------
def build_router(app: Any) -> APIRouter:
    router = APIRouter(tags=["dispatcher dashboard"], route_class=OffLoopRoute)
    grants = DispatchAccess(app)

    add_page(router, "/dispatch/dashboard", STATIC,
             "The dispatcher dashboard (zh-CN first, English toggle).")

    @router.get("/dispatch/dashboard/api/areas/{service_area_id}/day",
                dependencies=[grants.area_read])
    def area_day(service_area_id: str, day: date | None = Query(default=None, alias="date")
                 ) -> Any:
        """The area's day for the dashboard: caregivers with colours and last positions, visits
        with travel and late/overrun flags, breaks, unassigned orders with reasons, alerts,
        open replanning proposals and KPIs (day and month)."""
        day = day or app.local_day(app.clock())
        return jsonable_encoder(day_view(app, service_area_id, day))

    @router.post("/dispatch/dashboard/api/visits/{visit_id}/move",
                 responses={409: {"description": "refused: the checker's reasons"}})
    def move(visit_id: str, body: MoveIn, principal: Principal = grants.visit_manage) -> Any:
        """Move a not-started visit to a caregiver and start time. The day with the move is
        checked by the router's independent checker: applied (Visit.Rescheduled) when it adds
        no violation, refused with the reasons otherwise. The move is recorded as the token's
        caller's."""
        try:
            visit = move_visit(app, visit_id, body.caregiver_id, body.planned_start,
                               principal.actor,
                               replacing=body.replacing)
        except MoveRefused as refusal:
            return JSONResponse(status_code=409, content={
                "detail": str(refusal), "reasons": refusal.reasons, "error": "MoveRefused"})
        return jsonable_encoder(visit_view(visit))

    return router


__all__ = ["build_router", "check_move", "day_view", "move_visit", "MoveRefused"]
