"""OR-Tools routing model for the home-care problem (and classic VRPTW benchmarks).

Model (one OR-Tools node per station, per visit copy, per optional reload stop):
- time dimension: transit = service at the origin + travel (per travel mode), windows on the start
  time (several windows via RemoveInterval), shifts on the route start/end, max work as span bound;
- skills, certificates, gender, exclusions and pins as allowed vehicles;
- priorities as disjunction penalties growing lexicographically (one visit of a higher priority
  outweighs every visit of lower priorities together, and all travel);
- two-caregiver visits: two nodes in a same-activity group, equal start cumuls, other vehicles;
- meal boxes: a capacity dimension; optional reload nodes at the caregiver's station reset the load;
- continuity: a per-vehicle unary dimension counting visits done by a non-preferred caregiver, with
  a span cost per vehicle; workload balance: a global span cost on the work (service + travel) time;
- breaks: OR-Tools break intervals with the visits' service times as node visit transits.
The wall-clock budget is hard: OR-Tools gets a limit with a margin, and a solution callback cancels
the search when the deadline passes (its GLS may otherwise overrun).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from .plan import (
    BreakPlacement,
    ObjectiveTerms,
    Plan,
    PlanStatus,
    Route,
    Stop,
    StopKind,
    UnassignedReason,
    UnassignedVisit,
)
from .problem import Caregiver, Priority, Problem, Visit, can_serve

# Per-visit soft costs are bounded by this many multiples of the largest travel time, which is what
# the smallest drop penalty must beat.
_MAX_PENALTY = 10**15


@dataclass
class _Node:
    kind: str  # "station" | "visit" | "reload"
    location: int
    service: int = 0
    demand: int = 0
    visit: Visit | None = None
    copy: int = 0
    owner: int = -1  # reload nodes: the one vehicle allowed


@dataclass
class _Model:
    problem: Problem
    nodes: list[_Node]
    starts: list[int]
    ends: list[int]
    allowed: dict[int, list[int]]  # node -> vehicles (absent: every vehicle)
    unassigned: list[UnassignedVisit]
    visit_nodes: dict[str, list[int]] = field(default_factory=dict)


def solve(problem: Problem, *, time_limit_s: float, seed: int = 0) -> Plan:
    """The best plan found within ``time_limit_s`` wall-clock seconds (a hard budget).

    Deterministic for a given seed as long as the search is not cut by the clock (OR-Tools' search
    itself is deterministic; only where the time limit stops it varies).
    """
    t0 = time.monotonic()
    deadline = t0 + time_limit_s
    model = _prepare(problem)
    if not any(n.kind == "visit" for n in model.nodes):
        return _empty_plan(problem, model, time.monotonic() - t0)
    built = _build(model, seed)
    routing, manager = built.routing, built.manager
    params = _search_parameters(model, deadline)
    initial = _initial_assignment(built, model)
    solution = _run(built, params, initial, deadline)
    if solution is None:
        return Plan(routes=(), unassigned=tuple(model.unassigned) + tuple(
            UnassignedVisit(v.id, v.priority, UnassignedReason.NO_ROOM, "no solution found")
            for v in problem.visits if v.id in model.visit_nodes),
            solve_seconds=time.monotonic() - t0, status=PlanStatus.NO_SOLUTION)
    del routing, manager
    return _extract(built, model, solution, time.monotonic() - t0)


# --------------------------------------------------------------------------------------------
# Preparation: nodes, allowed vehicles, visits that cannot be done by anyone.


def _prepare(problem: Problem) -> _Model:
    nodes: list[_Node] = []
    station_node: dict[int, int] = {}

    def station(loc: int) -> int:
        if loc not in station_node:
            station_node[loc] = len(nodes)
            nodes.append(_Node("station", loc))
        return station_node[loc]

    starts = [station(c.start_location) for c in problem.caregivers]
    ends = [station(c.return_location) for c in problem.caregivers]
    allowed: dict[int, list[int]] = {}
    unassigned: list[UnassignedVisit] = []
    visit_nodes: dict[str, list[int]] = {}
    n_vehicles = len(problem.caregivers)
    for visit in problem.visits:
        vehicles, reason, detail = _allowed_vehicles(problem, visit)
        if reason is not None:
            unassigned.append(UnassignedVisit(visit.id, visit.priority, reason, detail))
            continue
        ids = []
        for copy in range(visit.staff_count):
            idx = len(nodes)
            nodes.append(_Node("visit", visit.location, visit.duration, visit.meal_boxes, visit,
                               copy))
            if len(vehicles) < n_vehicles:
                allowed[idx] = vehicles
            ids.append(idx)
        visit_nodes[visit.id] = ids

    opts = problem.options
    any_meals = any(n.demand > 0 for n in nodes)
    if opts.reload_at_station and any_meals:
        for v, cg in enumerate(problem.caregivers):
            if cg.meal_box_capacity is None:
                continue
            for _ in range(opts.max_reloads_per_caregiver):
                idx = len(nodes)
                nodes.append(_Node("reload", cg.start_location, 0, -cg.meal_box_capacity,
                                   owner=v))
                allowed[idx] = [v]
    return _Model(problem, nodes, starts, ends, allowed, unassigned, visit_nodes)


def _allowed_vehicles(problem: Problem, visit: Visit
                      ) -> tuple[list[int], UnassignedReason | None, str]:
    """Vehicles that may do the visit, or why nobody can (checked in the order people ask)."""
    qualified = [v for v, cg in enumerate(problem.caregivers) if can_serve(cg, visit) is None]
    if not qualified:
        return [], _why_unqualified(problem, visit), ""
    reachable: list[int] = []
    window_ok = shift_ok = capacity_ok = False
    for v in qualified:
        cg = problem.caregivers[v]
        if cg.meal_box_capacity is not None and visit.meal_boxes > cg.meal_box_capacity:
            continue
        capacity_ok = True
        go = problem.travel(cg.travel_mode, cg.start_location, visit.location)
        back = problem.travel(cg.travel_mode, visit.location, cg.return_location)
        earliest = cg.shift.start + go
        starts = [max(earliest, w.start) for w in visit.windows if max(earliest, w.start) <= w.end]
        if visit.pinned_start is not None:
            starts = [visit.pinned_start] if visit.pinned_start >= earliest else []
        if not starts:
            continue
        window_ok = True
        first = min(starts)
        if first + visit.duration + back > cg.shift.end:
            continue
        span = go + visit.duration + back
        if cg.max_work_minutes is not None and span > cg.max_work_minutes:
            continue
        shift_ok = True
        reachable.append(v)
    need = visit.staff_count
    if len(reachable) >= need:
        return reachable, None, ""
    if not capacity_ok:
        return [], UnassignedReason.CAPACITY, f"{visit.meal_boxes} meal boxes"
    if not window_ok:
        return [], UnassignedReason.WINDOW_UNREACHABLE, ""
    if not shift_ok:
        return [], UnassignedReason.SHIFT_TOO_SHORT, ""
    return [], UnassignedReason.NO_QUALIFIED_PAIR, f"{len(reachable)} qualified"


def _why_unqualified(problem: Problem, visit: Visit) -> UnassignedReason:
    cgs = problem.caregivers
    if visit.pinned_caregiver is not None and visit.pinned_caregiver not in {c.id for c in cgs}:
        return UnassignedReason.PINNED_CAREGIVER_UNAVAILABLE
    skilled = [c for c in cgs if not (visit.required_skills - c.skills)]
    if not skilled:
        return UnassignedReason.NO_SKILL
    certified = [c for c in skilled if c.certificate_level >= visit.min_certificate_level]
    if not certified:
        return UnassignedReason.NO_CERTIFICATE
    gendered = [c for c in certified
                if visit.gender_preference is None or c.gender == visit.gender_preference]
    if not gendered:
        return UnassignedReason.NO_GENDER
    if visit.pinned_caregiver is not None:
        return UnassignedReason.PINNED_CAREGIVER_UNAVAILABLE
    return UnassignedReason.EXCLUDED


def _drop_penalties(model: _Model) -> dict[Priority, int]:
    """Lexicographic: one visit of priority p outweighs all lower ones plus all soft cost."""
    p = model.problem
    opts = p.options
    max_travel = max((max(max(row) for row in m) for m in p.travel_times.values() if len(m)),
                     default=1)
    per_visit = max(1, 2 * max_travel * max(opts.travel_weight, 1) + opts.continuity_miss_cost
                    + opts.workload_spread_weight * (2 * max_travel + 1)) + 1
    n_visits = sum(1 for n in model.nodes if n.kind == "visit")
    base = per_visit * (n_visits + 1)
    penalties: dict[Priority, int] = {}
    counts = {pr: 0 for pr in Priority}
    for n in model.nodes:
        if n.visit is not None:
            counts[n.visit.priority] += 1
    lower_total = 0
    for pr in sorted(Priority):
        pen = min(_MAX_PENALTY, base + lower_total)
        penalties[pr] = pen
        lower_total = min(_MAX_PENALTY, lower_total + pen * counts[pr])
    return penalties


# --------------------------------------------------------------------------------------------
# The OR-Tools model.


@dataclass
class _Built:
    routing: pywrapcp.RoutingModel
    manager: pywrapcp.RoutingIndexManager
    time_dim: pywrapcp.RoutingDimension
    breaks: dict[int, object]  # vehicle -> IntervalVar
    horizon: int


def _build(model: _Model, seed: int) -> _Built:
    p = model.problem
    opts = p.options
    nodes = model.nodes
    n_nodes, n_veh = len(nodes), len(p.caregivers)
    manager = pywrapcp.RoutingIndexManager(n_nodes, n_veh, model.starts, model.ends)
    routing = pywrapcp.RoutingModel(manager)
    size = routing.Size() + n_veh
    idx_node = [manager.IndexToNode(i) for i in range(size)]
    locs = [nodes[k].location for k in idx_node]
    service = [nodes[k].service for k in idx_node]

    modes = sorted({c.travel_mode for c in p.caregivers})
    time_cb: dict[str, int] = {}
    cost_cb: dict[str, int] = {}
    for mode in modes:
        mat = p.travel_times[mode]
        rows = [mat[a] for a in locs]
        travel = [[int(row[b]) for b in locs] for row in rows]
        time_cb[mode] = routing.RegisterTransitMatrix(
            [[s + t for t in r] for s, r in zip(service, travel, strict=True)])
        w = opts.travel_weight
        cost_cb[mode] = routing.RegisterTransitMatrix(
            travel if w == 1 else [[w * t for t in r] for r in travel])
    for v, cg in enumerate(p.caregivers):
        routing.SetArcCostEvaluatorOfVehicle(cost_cb[cg.travel_mode], v)

    horizon = max([c.shift.end for c in p.caregivers]
                  + [w.end for n in nodes if n.visit for w in n.visit.windows]) + 1
    routing.AddDimensionWithVehicleTransits(
        [time_cb[c.travel_mode] for c in p.caregivers], horizon, horizon, False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    for v, cg in enumerate(p.caregivers):
        time_dim.CumulVar(routing.Start(v)).SetRange(cg.shift.start, cg.shift.end)
        time_dim.CumulVar(routing.End(v)).SetRange(cg.shift.start, cg.shift.end)
        if cg.max_work_minutes is not None:
            time_dim.SetSpanUpperBoundForVehicle(cg.max_work_minutes, v)
        # Make the finaliser leave the station as late as possible (compact, honest work times).
        routing.AddVariableMaximizedByFinalizer(time_dim.CumulVar(routing.Start(v)))
        routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.End(v)))

    penalties = _drop_penalties(model)
    solver = routing.solver()
    for ids in model.visit_nodes.values():
        idxs = [manager.NodeToIndex(k) for k in ids]
        visit = nodes[ids[0]].visit
        assert visit is not None
        for i in idxs:
            cumul = time_dim.CumulVar(i)
            if visit.pinned_start is not None:
                cumul.SetRange(visit.pinned_start, visit.pinned_start)
            else:
                wins = sorted(visit.windows, key=lambda w: w.start)
                cumul.SetRange(wins[0].start, max(w.end for w in wins))
                reach = wins[0].end
                for w in wins[1:]:
                    if w.start > reach + 1:
                        cumul.RemoveInterval(reach + 1, w.start - 1)
                    reach = max(reach, w.end)
            routing.AddDisjunction([i], penalties[visit.priority])
            allowed = model.allowed.get(ids[0])
            if allowed is not None:
                routing.SetAllowedVehiclesForIndex(allowed, i)
            routing.AddVariableMinimizedByFinalizer(cumul)
        if len(idxs) == 2:
            a, b = idxs
            routing.AddSameActivityGroup([a, b])
            solver.Add(time_dim.CumulVar(a) == time_dim.CumulVar(b))
            solver.Add(solver.IsDifferentVar(routing.VehicleVar(a), routing.VehicleVar(b))
                       >= routing.ActiveVar(a))

    reload_idx = []
    for k, n in enumerate(nodes):
        if n.kind == "reload":
            i = manager.NodeToIndex(k)
            reload_idx.append(i)
            routing.SetAllowedVehiclesForIndex([n.owner], i)
            routing.AddDisjunction([i], 0)

    if any(n.demand > 0 for n in nodes):
        caps = [c.meal_box_capacity if c.meal_box_capacity is not None else 10**6
                for c in p.caregivers]
        demand = routing.RegisterUnaryTransitVector([nodes[k].demand for k in idx_node])
        routing.AddDimensionWithVehicleCapacity(demand, max(caps), caps, True, "meals")
        meals = routing.GetDimensionOrDie("meals")
        reload_set = set(reload_idx)
        for i in range(routing.Size()):
            if routing.IsStart(i) or i in reload_set:
                continue
            meals.SlackVar(i).SetValue(0)

    if opts.continuity_miss_cost > 0 and any(n.visit and n.visit.preferred_caregiver_ids
                                             for n in nodes):
        vec_cache: dict[tuple[int, ...], int] = {}
        per_vehicle = []
        for cg in p.caregivers:
            miss = tuple(1 if (nodes[k].visit is not None and nodes[k].visit.preferred_caregiver_ids
                               and cg.id not in nodes[k].visit.preferred_caregiver_ids) else 0
                         for k in idx_node)
            if miss not in vec_cache:
                vec_cache[miss] = routing.RegisterUnaryTransitVector(list(miss))
            per_vehicle.append(vec_cache[miss])
        routing.AddDimensionWithVehicleTransits(per_vehicle, 0, n_nodes, True, "continuity")
        cont = routing.GetDimensionOrDie("continuity")
        cont.SetSpanCostCoefficientForAllVehicles(opts.continuity_miss_cost)

    if opts.workload_spread_weight > 0 and n_veh > 1:
        routing.AddDimensionWithVehicleTransits(
            [time_cb[c.travel_mode] for c in p.caregivers], 0, horizon, True, "work")
        routing.GetDimensionOrDie("work").SetGlobalSpanCostCoefficient(
            opts.workload_spread_weight)

    breaks: dict[int, object] = {}
    visit_transits = [nodes[k].service for k in idx_node]
    for v, cg in enumerate(p.caregivers):
        if cg.rest_break is None:
            continue
        b = cg.rest_break
        iv = solver.FixedDurationIntervalVar(b.window.start, b.window.end - b.minutes, b.minutes,
                                             False, f"break {cg.id}")
        time_dim.SetBreakIntervalsOfVehicle([iv], v, visit_transits)
        routing.AddIntervalToAssignment(iv)
        breaks[v] = iv
    del seed  # OR-Tools' search is deterministic; the seed drives our own randomised parts
    return _Built(routing, manager, time_dim, breaks, horizon)


def _search_parameters(model: _Model, deadline: float):
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION)
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    remaining = deadline - time.monotonic()
    # OR-Tools overruns by a little (GLS checks the clock between neighbourhoods): keep a margin.
    limit = max(0.05, remaining * 0.97 - 0.05)
    params.time_limit.FromMilliseconds(int(limit * 1000))
    return params


def _initial_assignment(built: _Built, model: _Model):
    return None


def _run(built: _Built, params, initial, deadline: float):
    routing = built.routing

    def stop_at_deadline() -> None:
        if time.monotonic() >= deadline:
            routing.CancelSearch()

    routing.AddAtSolutionCallback(stop_at_deadline)
    if initial is not None:
        return routing.SolveFromAssignmentWithParameters(initial, params)
    return routing.SolveWithParameters(params)


# --------------------------------------------------------------------------------------------
# Reading the solution back into a Plan (times re-derived, starts from the solver).


def _extract(built: _Built, model: _Model, solution, seconds: float) -> Plan:
    p = model.problem
    routing, manager, time_dim = built.routing, built.manager, built.time_dim
    routes: list[Route] = []
    assigned: set[str] = set()
    for v, cg in enumerate(p.caregivers):
        seq: list[tuple[_Node, int]] = []
        i = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(i):
            node = model.nodes[manager.IndexToNode(i)]
            seq.append((node, solution.Value(time_dim.CumulVar(i))))
            i = solution.Value(routing.NextVar(i))
        brk = None
        if v in built.breaks:
            iv = built.breaks[v]
            bs = solution.StartValue(iv)
            brk = (bs, solution.EndValue(iv))
        start_cumul = solution.Value(time_dim.CumulVar(routing.Start(v)))
        route = _retime(p, cg, seq, brk, start_cumul)
        if route.stops:
            routes.append(route)
            assigned.update(route.visit_ids)
    unassigned = list(model.unassigned)
    for vid in model.visit_nodes:
        if vid not in assigned:
            visit = model.nodes[model.visit_nodes[vid][0]].visit
            assert visit is not None
            unassigned.append(UnassignedVisit(vid, visit.priority, UnassignedReason.NO_ROOM))
    return finish_plan(p, routes, unassigned, seconds)


def _retime(p: Problem, cg: Caregiver, seq: list[tuple[_Node, int]],
            brk: tuple[int, int] | None, start_cumul: int) -> Route:
    """Build the route's stops from the solver's start times; arrival/waiting are re-derived."""
    mode = cg.travel_mode
    stops: list[Stop] = []
    prev_loc, prev_end = cg.start_location, start_cumul
    placement: BreakPlacement | None = None
    # Leave the station as late as the first stop allows (keeping a break taken on the way out).
    if seq:
        first_node, first_start = seq[0]
        go = p.travel(mode, prev_loc, first_node.location)
        if brk is not None and start_cumul <= brk[0] and brk[1] <= first_start:
            latest = min(brk[0], first_start - go - (brk[1] - brk[0]))
        else:
            latest = first_start - go
        prev_end = max(start_cumul, latest)
    route_start = prev_end
    for k, (node, start) in enumerate(seq):
        travel = p.travel(mode, prev_loc, node.location)
        pause = 0
        if brk is not None and placement is None and prev_end <= brk[0] and brk[1] <= start:
            placement = BreakPlacement(brk[0], brk[1], k)
            pause = brk[1] - brk[0]
        arrival = prev_end + travel
        waiting = max(0, start - arrival - pause)
        if node.kind == "reload":
            stops.append(Stop(None, node.location, arrival, start, start, travel, waiting,
                              StopKind.RELOAD))
            end = start
        else:
            assert node.visit is not None
            end = start + node.visit.duration
            stops.append(Stop(node.visit.id, node.location, arrival, start, end, travel, waiting))
        prev_loc, prev_end = node.location, end
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


def _empty_plan(p: Problem, model: _Model, seconds: float) -> Plan:
    return finish_plan(p, [], list(model.unassigned), seconds)

