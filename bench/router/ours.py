"""This project's router on a Solomon instance: a Solomon -> Problem adapter and a runner.

Mapping: 25 caregivers ("vehicles") with a shift equal to the depot's window, all starting and
ending at the depot (location 0); one visit per customer with its window, its service time as
duration and its demand as meal boxes against the vehicle capacity (the router's capacity
dimension); one travel matrix, DIMACS distances x10, which is also the travel time. Every visit has
the same priority, and the travel-only objective (no continuity or workload terms), so the router
minimises distance.
"""

from __future__ import annotations

import time

from bench.router.instance import Instance
from bench.router.peers import SolverRun

MODE = "car"


def to_problem(inst: Instance):  # -> services.dispatch.routing.Problem
    """Solomon instance -> routing Problem (times and distances in DIMACS tenths)."""
    from services.dispatch.routing.problem import (
        Caregiver,
        Priority,
        Problem,
        SolveOptions,
        TimeWindow,
        Visit,
    )

    shift = TimeWindow(inst.ready10(0), inst.due10(0))
    caregivers = tuple(
        Caregiver(
            id=f"vehicle-{k + 1:02d}",
            shift=shift,
            start_location=0,
            travel_mode=MODE,
            meal_box_capacity=inst.capacity,
        )
        for k in range(inst.fleet)
    )
    visits = tuple(
        Visit(
            id=str(i),
            elder_id=f"customer-{i}",
            location=i,
            windows=(TimeWindow(inst.ready10(i), inst.due10(i)),),
            duration=inst.service10(i),
            meal_boxes=inst.demand[i],
            # all customers are mandatory: the highest priority is never dropped when it fits
            priority=Priority.EMERGENCY,
        )
        for i in range(1, len(inst.x))
    )
    return Problem(
        caregivers=caregivers,
        visits=visits,
        travel_times={MODE: inst.dist10},
        options=SolveOptions.travel_only(),
    )


def solve_router(inst: Instance, *, time_limit_s: float, seed: int = 1) -> SolverRun:
    """Run services.dispatch.routing.solve and turn its plan back into customer routes."""
    from services.dispatch.routing import check, solve

    problem = to_problem(inst)
    t0 = time.perf_counter()
    plan = solve(problem, time_limit_s=time_limit_s, seed=seed)
    seconds = time.perf_counter() - t0
    routes = [[int(v) for v in r.visit_ids] for r in plan.routes if r.visit_ids]
    # the router's own checker, for comparison with bench.router.scoring (after timing)
    own_check = check(problem, plan)
    return SolverRun(
        routes=routes,
        seconds=seconds,
        notes={
            "status": str(plan.status),
            "unassigned": len(plan.unassigned),
            "own_travel": plan.objective.travel,
            "reported_seconds": plan.solve_seconds,
            "check_violations": len(own_check),
            "check_examples": [v.message for v in own_check[:3]],
        },
    )
