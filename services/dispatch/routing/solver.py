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

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import text_format
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from .assemble import finish_plan, route_from_starts, route_from_state
from .checker import check
from .construct import construct, empty_states, fit_breaks, improve
from .plan import (
    Plan,
    PlanStatus,
    Route,
    UnassignedReason,
    UnassignedVisit,
)
from .problem import Priority, Problem, Visit, can_serve
from .timing import Item, RouteState, visit_item, visit_windows

# Per-visit soft costs are bounded by this many multiples of the largest travel time, which is what
# the smallest drop penalty must beat.
_MAX_PENALTY = 10**15

log = logging.getLogger(__name__)


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
    allowed_by_visit: dict[str, list[int]] = field(default_factory=dict)


def solve(problem: Problem, *, time_limit_s: float, seed: int = 0,
          initial_routes: dict[str, list[str]] | None = None) -> Plan:
    """The best plan found within ``time_limit_s`` wall-clock seconds (a hard budget).

    ``initial_routes`` (caregiver id -> visit ids in order) warm-starts the search (replanning);
    visits not in it are inserted by the construction heuristic first.

    Determinism: nothing here is random (our construction is deterministic and OR-Tools' routing
    search has no seed), so ``seed`` only keeps the signature stable. Two runs differ only in how
    much search the clock allows; ``SolveOptions.max_solutions`` bounds the search by a count for
    reproducible runs.
    """
    t0 = time.monotonic()
    deadline = t0 + time_limit_s
    model = _prepare(problem)
    if not model.visit_nodes:
        return finish_plan(problem, [], list(model.unassigned), time.monotonic() - t0)
    has_pairs = any(len(ids) == 2 for ids in model.visit_nodes.values())
    has_breaks = any(c.rest_break for c in problem.caregivers)
    # OR-Tools break intervals propagate slowly: beyond this size, breaks are placed afterwards.
    breaks_in_model = has_breaks and (
        len(model.nodes) * sum(1 for c in problem.caregivers if c.rest_break)
        <= _BREAK_MODEL_LIMIT)
    # Our construction inserts by priority: OR-Tools' insertion heuristics do not, and no single
    # local-search move swaps one important visit for several lesser ones.
    mixed_priorities = len({v.priority for v in problem.visits}) > 1
    states = None
    if initial_routes is not None or has_pairs or has_breaks or mixed_priorities:
        # Our own remove-and-reinsert passes are cheap and help most where OR-Tools' local search
        # is slow (big days): give them a share of the budget.
        share = _IMPROVE_SHARE_LARGE if len(model.nodes) > _LARGE_MODEL else _IMPROVE_SHARE
        if has_breaks and not breaks_in_model:
            # OR-Tools without the breaks packs routes that the break repair must then unpick
            # (measured: more visits dropped than before it), so big days with breaks are ours.
            share = 1.0
        reserve_end = deadline - (0.1 + 0.05 * time_limit_s) * (share == 1.0)
        states = _construct(model, initial_routes,
                            min(reserve_end, t0 + share * time_limit_s))
    fallback = _plan_from_states(model, states, 0.0) if states is not None else None
    if fallback is not None and time.monotonic() > deadline - max(1.0, 0.15 * time_limit_s):
        # Construction and improvement left too little time for OR-Tools (a busy machine).
        return _with_seconds(fallback, time.monotonic() - t0)
    pair_starts = None
    if states is not None and breaks_in_model:
        pair_starts = {it.visit_id: it.wins[0][0] for st in states for it in st.items
                       if it.kind == "visit" and len(model.visit_nodes[it.visit_id or ""]) == 2}
    built = _build(model, seed, pair_starts, breaks_in_model)
    # Keep time for reading the solution back and placing breaks.
    large = len(model.nodes) > _LARGE_MODEL
    reserve = ((0.03 * time_limit_s if large else 0.0) + 0.05
               + (0.002 * len(model.nodes) if has_breaks else 0.0))
    # ILS (ruin and recreate) starts from its own first solution and may split a pair, so it
    # serves models without pairs and without a constructed start.
    use_ils = states is None
    params = _search_parameters(model, deadline - reserve, use_ils)
    if problem.options.max_solutions is not None:
        params.solution_limit = problem.options.max_solutions
    initial = _to_assignment(built, model, states) if states is not None else None
    if states is not None and initial is None:
        log.warning("OR-Tools rejected the constructed first solution; keeping it as the plan")
    solution = None
    if (states is None or initial is not None) and time.monotonic() < deadline - reserve:
        solution = _run(built, params, initial, deadline - reserve, use_ils)
    log.debug("search status %s after %.2fs", built.routing.status(), time.monotonic() - t0)
    if solution is None:
        if fallback is not None:
            return _with_seconds(fallback, time.monotonic() - t0)
        return Plan(routes=(), unassigned=tuple(model.unassigned) + tuple(
            UnassignedVisit(v.id, v.priority, UnassignedReason.NO_ROOM, "no solution found")
            for v in problem.visits if v.id in model.visit_nodes),
            solve_seconds=time.monotonic() - t0, status=PlanStatus.NO_SOLUTION)
    if has_breaks and not breaks_in_model:
        placed = _extract_placing_breaks(built, model, solution, t0, deadline)
        if placed is None:
            assert fallback is not None  # breaks always come with a construction
            log.warning("no time left to fit breaks into the optimised routes")
            return _with_seconds(fallback, time.monotonic() - t0)
        plan = placed
    else:
        plan = _extract(built, model, solution, time.monotonic() - t0)
    if fallback is not None and _worse(plan, fallback, model):
        return _with_seconds(fallback, time.monotonic() - t0)
    return plan


_BREAK_MODEL_LIMIT = 20_000
_LARGE_MODEL = 300
_IMPROVE_SHARE = 0.25
_IMPROVE_SHARE_LARGE = 0.6


def _with_seconds(plan: Plan, seconds: float) -> Plan:
    return dataclasses.replace(plan, solve_seconds=seconds)


def _worse(plan: Plan, other: Plan, model: _Model) -> bool:
    """True when ``plan`` breaks a rule or drops more important work than ``other``."""
    if check(model.problem, plan):
        log.error("solver plan failed the checker; using the constructed plan")
        return True

    def key(pl: Plan) -> tuple:
        dropped = pl.objective.dropped_by_priority
        return tuple(-dropped.get(pr, 0) for pr in sorted(Priority, reverse=True))

    return key(plan) < key(other)


def _construct(model: _Model, initial_routes: dict[str, list[str]] | None,
               improve_until: float | None = None) -> list[RouteState]:
    """First solution by our own insertion (keeps two-caregiver visits together)."""
    p = model.problem
    states = empty_states(p)
    placed: set[str] = set()
    visits = p.visits_by_id()
    if initial_routes:
        # Warm start: replay the current routes (in order) where they are still feasible.
        for v, cg in enumerate(p.caregivers):
            for vid in initial_routes.get(cg.id, []):
                visit = visits.get(vid)
                if visit is None or vid not in model.visit_nodes or vid in placed:
                    continue
                if visit.staff_count != 1 or v not in model.allowed_by_visit.get(vid, [v]):
                    continue
                st = states[v]
                last_real = max((k for k, it in enumerate(st.items) if it.kind != "break"),
                                default=-1)
                cands = st.candidates(v, visit.location, visit.duration, visit_windows(visit),
                                      visit.meal_boxes, last_real + 1)
                for c in sorted(cands, key=lambda c: (c.pos, c.cost)):
                    if st.insert(c.pos, visit_item(visit)):
                        placed.add(vid)
                        break
    todo = [visits[vid] for vid in model.visit_nodes if vid not in placed]
    states, left = construct(p, todo, model.allowed_by_visit, states)
    if improve_until is not None:
        improve(p, states, model.allowed_by_visit, left, improve_until)
    return states


def _plan_from_states(model: _Model, states: list[RouteState], seconds: float) -> Plan:
    routes = [r for r in (route_from_state(st) for st in states) if r.stops]
    done = {vid for r in routes for vid in r.visit_ids}
    unassigned = list(model.unassigned) + [
        UnassignedVisit(vid, model.nodes[ids[0]].visit.priority,  # type: ignore[union-attr]
                        UnassignedReason.NO_ROOM)
        for vid, ids in model.visit_nodes.items() if vid not in done]
    return finish_plan(model.problem, routes, unassigned, seconds)


def _to_assignment(built: _Built, model: _Model, states: list[RouteState]):
    routing, manager = built.routing, built.manager
    reloads: dict[int, list[int]] = {}
    for k, n in enumerate(model.nodes):
        if n.kind == "reload":
            reloads.setdefault(n.owner, []).append(manager.NodeToIndex(k))
    routes = []
    for v, st in enumerate(states):
        r = []
        for it in st.items:
            if it.kind == "visit":
                r.append(manager.NodeToIndex(model.visit_nodes[it.visit_id or ""][it.copy]))
            elif it.kind == "reload" and reloads.get(v):
                r.append(reloads[v].pop())
        routes.append(r)
    return routing.ReadAssignmentFromRoutes(routes, True)


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
    allowed_by_visit: dict[str, list[int]] = {}
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
        allowed_by_visit[visit.id] = vehicles

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
    return _Model(problem, nodes, starts, ends, allowed, unassigned, visit_nodes,
                  allowed_by_visit)


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


def _build(model: _Model, seed: int, pair_starts: dict[str, int] | None = None,
           breaks_in_model: bool = True) -> _Built:
    p = model.problem
    opts = p.options
    nodes = model.nodes
    n_nodes, n_veh = len(nodes), len(p.caregivers)
    manager = pywrapcp.RoutingIndexManager(n_nodes, n_veh, model.starts, model.ends)
    routing = pywrapcp.RoutingModel(manager)
    size = routing.Size() + n_veh
    idx_node = [manager.IndexToNode(i) for i in range(size)]
    locs_np = np.asarray([nodes[k].location for k in idx_node], dtype=np.int64)
    service_np = np.asarray([nodes[k].service for k in idx_node], dtype=np.int64)

    modes = sorted({c.travel_mode for c in p.caregivers})
    time_cb: dict[str, int] = {}
    cost_cb: dict[str, int] = {}
    for mode in modes:
        mat = p.travel_times[mode]
        # numpy: building 1,200 x 1,200 matrices in Python loops takes seconds on a busy box.
        travel_np = np.asarray(mat, dtype=np.int64)[np.ix_(locs_np, locs_np)]
        time_cb[mode] = routing.RegisterTransitMatrix(
            (travel_np + service_np[:, None]).tolist())
        cost_cb[mode] = routing.RegisterTransitMatrix(
            (travel_np * opts.travel_weight).tolist())
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
        pass  # routing.AddVariableMaximizedByFinalizer(time_dim.CumulVar(routing.Start(v)))
        pass  # routing.AddVariableMinimizedByFinalizer(time_dim.CumulVar(routing.End(v)))

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
                # SetAllowedVehiclesForIndex's Python binding rejects lists in OR-Tools 9.15; the
                # vehicle var domain is equivalent (and OR-Tools filters moves on it).
                routing.VehicleVar(i).SetValues([-1, *allowed])
            pass  # routing.AddVariableMinimizedByFinalizer(cumul)
        if len(idxs) == 2:
            a, b = idxs
            # Both halves or neither (AddSameActivityGroup's binding rejects lists in 9.15).
            solver.Add(routing.ActiveVar(a) == routing.ActiveVar(b))
            solver.Add(solver.IsDifferentVar(routing.VehicleVar(a), routing.VehicleVar(b))
                       >= routing.ActiveVar(a))
            if pair_starts is None:
                solver.Add(time_dim.CumulVar(a) == time_dim.CumulVar(b))
            elif visit.id in pair_starts:
                # With break intervals OR-Tools cannot schedule a cross-route equality (its
                # per-route scheduling fails), so the pair keeps the constructed common start.
                for i in idxs:
                    time_dim.CumulVar(i).SetValue(pair_starts[visit.id])
            else:
                for i in idxs:
                    routing.ActiveVar(i).SetValue(0)

    reload_idx = []
    for k, n in enumerate(nodes):
        if n.kind == "reload":
            i = manager.NodeToIndex(k)
            reload_idx.append(i)
            routing.VehicleVar(i).SetValues([-1, n.owner])
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
        # Balance: work (service + travel) above a fair share costs per minute. A global span
        # cost would be the textbook choice, but its global LP finaliser takes seconds per
        # solution on a 1,000-visit day and breaks the time budget.
        routing.AddDimensionWithVehicleTransits(
            [time_cb[c.travel_mode] for c in p.caregivers], 0, horizon, True, "work")
        work = routing.GetDimensionOrDie("work")
        service = sum(n.service for n in nodes if n.kind == "visit")
        fair = int(1.25 * service / n_veh) + 1
        for v in range(n_veh):
            work.SetCumulVarSoftUpperBound(routing.End(v), fair, opts.workload_spread_weight)

    breaks: dict[int, object] = {}
    visit_transits = [nodes[k].service for k in idx_node]
    for v, cg in enumerate(p.caregivers):
        if cg.rest_break is None or not breaks_in_model:
            continue
        b = cg.rest_break
        iv = solver.FixedDurationIntervalVar(b.window.start, b.window.end - b.minutes, b.minutes,
                                             False, f"break {cg.id}")
        time_dim.SetBreakIntervalsOfVehicle([iv], v, visit_transits)
        routing.AddIntervalToAssignment(iv)
        breaks[v] = iv
    del seed  # OR-Tools' search is deterministic; the seed drives our own randomised parts
    return _Built(routing, manager, time_dim, breaks, horizon)


_CHEAP_OPERATORS = """local_search_operators {
  use_global_cheapest_insertion_path_lns: BOOL_FALSE
  use_local_cheapest_insertion_path_lns: BOOL_FALSE
  use_relocate_path_global_cheapest_insertion_insert_unperformed: BOOL_FALSE
  use_global_cheapest_insertion_visit_types_lns: BOOL_FALSE
  use_local_cheapest_insertion_visit_types_lns: BOOL_FALSE
  use_relocate_expensive_chain: BOOL_FALSE
  use_lin_kernighan: BOOL_FALSE
  use_shortest_path_swap_active: BOOL_FALSE
  use_shortest_path_two_opt: BOOL_FALSE
  use_swap_active_chain: BOOL_FALSE
  use_relocate_subtrip: BOOL_FALSE
  use_exchange_subtrip: BOOL_FALSE
  use_make_chain_inactive: BOOL_FALSE
}"""

# Iterated local search: SISR ruin (string removals) + cheapest insertion, a descent with cheap
# operators after each perturbation, simulated-annealing acceptance. Temperatures are in cost
# units per unit of mean arc cost (tuned on Solomon: 200 and 1 at DIMACS x10 scale).
_ILS = """iterated_local_search_parameters {
  perturbation_strategy: RUIN_AND_RECREATE
  ruin_recreate_parameters {
    ruin_strategies { sisr { max_removed_sequence_size: %(seq)d avg_num_removed_visits: %(avg)d
                             bypass_factor: 0.01 } }
    recreate_strategy { heuristic: LOCAL_CHEAPEST_INSERTION }
  }
  improve_perturbed_solution: true
  reference_solution_acceptance_strategy { simulated_annealing {
    cooling_schedule_strategy: EXPONENTIAL
    initial_temperature: %(t_init)f final_temperature: %(t_final)f } }
  best_solution_acceptance_strategy { greedy_descent {} }
}"""


def _search_parameters(model: _Model, deadline: float, use_ils: bool):
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION)
    text_format.Merge(_CHEAP_OPERATORS, params)
    if use_ils:
        params.local_search_metaheuristic = (
            routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT)
        scale = _mean_arc(model) / _SOLOMON_MEAN_ARC
        # Tuned on Solomon (hard R2/RC2 instances need big ruins and a hot start); capped so a
        # small day is not ruined whole.
        n_visits = sum(1 for n in model.nodes if n.kind == "visit")
        avg = min(30, max(2, n_visits // 4))
        text_format.Merge(_ILS % {"seq": min(15, avg), "avg": avg, "t_init": 200.0 * scale,
                                  "t_final": 1.0 * scale}, params)
    else:
        params.local_search_metaheuristic = (
            routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    remaining = deadline - time.monotonic()
    # OR-Tools overruns a little (it checks the clock between neighbourhoods): keep a margin.
    # Large models overrun more (longer neighbourhood scans between clock checks).
    share = 0.9 if len(model.nodes) > _LARGE_MODEL else 0.99
    limit = max(0.05, remaining * share - 0.05)
    params.time_limit.FromMilliseconds(int(limit * 1000))
    # Restoring a first solution (and checking moves) with break intervals is a CP search bound by
    # the LNS limit: the default 100 ms fails under load and the whole solve with it.
    params.lns_time_limit.FromMilliseconds(int(max(0.2, min(2.0, limit / 4)) * 1000))
    return params


# Mean distance from a Solomon customer to its 10 nearest others, DIMACS x10 (R: 95, C: 79-94,
# RC: 104); the temperatures were tuned on it.
_SOLOMON_MEAN_ARC = 95.0


def _mean_arc(model: _Model) -> float:
    """Mean travel from a visit to its 10 nearest other visits (the scale of a typical move)."""
    p = model.problem
    mode = p.caregivers[0].travel_mode
    mat = p.travel_times[mode]
    locs = sorted({n.location for n in model.nodes if n.kind == "visit"})
    if len(locs) < 2:
        return _SOLOMON_MEAN_ARC
    step = max(1, len(locs) // 200)  # a sample is enough
    total, count = 0, 0
    for a in locs[::step]:
        row = mat[a]
        near = sorted(row[b] for b in locs if b != a)[:10]
        total += sum(near)
        count += len(near)
    return max(1.0, total / max(1, count))


def _run(built: _Built, params, initial, deadline: float, use_ils: bool):
    routing = built.routing

    def stop_at_deadline() -> None:
        if time.monotonic() >= deadline:
            routing.CancelSearch()

    routing.AddAtSolutionCallback(stop_at_deadline)
    # GLS overruns its own time limit on large models; this limit is polled inside the search.
    solver = routing.solver()
    routing.AddSearchMonitor(solver.CustomLimit(lambda: time.monotonic() >= deadline))
    if use_ils:
        return routing.SolveWithIteratedLocalSearch(params)
    if initial is not None:
        return routing.SolveFromAssignmentWithParameters(initial, params)
    return routing.SolveWithParameters(params)


# --------------------------------------------------------------------------------------------
# Reading the solution back into a Plan (times re-derived, starts from the solver).


def _sequences(built: _Built, model: _Model, solution) -> list[list[tuple[_Node, int]]]:
    routing, manager, time_dim = built.routing, built.manager, built.time_dim
    out = []
    for v in range(len(model.problem.caregivers)):
        seq = []
        i = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(i):
            seq.append((model.nodes[manager.IndexToNode(i)], solution.Value(time_dim.CumulVar(i))))
            i = solution.Value(routing.NextVar(i))
        out.append(seq)
    return out


def _extract_placing_breaks(built: _Built, model: _Model, solution, t0: float,
                            deadline: float) -> Plan | None:
    """Routes optimised without break intervals: rebuild them, then fit every break."""
    p = model.problem
    states = []
    for v, seq in enumerate(_sequences(built, model, solution)):
        items = []
        for node, start in seq:
            if node.kind == "reload":
                items.append(Item("reload", node.location, 0, ((0, built.horizon),),
                                  demand=node.demand))
            else:
                assert node.visit is not None
                pair = len(model.visit_nodes[node.visit.id]) == 2
                items.append(visit_item(node.visit, node.copy, start if pair else None))
        states.append(RouteState(p, p.caregivers[v], items))
    left = fit_breaks(p, states, model.allowed_by_visit, deadline)
    if left is None:  # out of time
        return None
    return _plan_from_states(model, states, time.monotonic() - t0)


def _extract(built: _Built, model: _Model, solution, seconds: float) -> Plan:
    p = model.problem
    routing, manager, time_dim = built.routing, built.manager, built.time_dim
    routes: list[Route] = []
    assigned: set[str] = set()
    for v, cg in enumerate(p.caregivers):
        seq: list[tuple[Visit | None, int, int]] = []
        i = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(i):
            node = model.nodes[manager.IndexToNode(i)]
            seq.append((node.visit, node.location, solution.Value(time_dim.CumulVar(i))))
            i = solution.Value(routing.NextVar(i))
        brk = None
        if v in built.breaks:
            iv = built.breaks[v]
            bs = solution.StartValue(iv)
            brk = (bs, solution.EndValue(iv))
        start_cumul = solution.Value(time_dim.CumulVar(routing.Start(v)))
        route = route_from_starts(p, cg, seq, brk, start_cumul)
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
