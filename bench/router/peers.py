"""The solvers people compare with, fed the same DIMACS integer data as the router.

Each runner returns routes as lists of customer nodes (1..n) for the common scorer, plus the
wall-clock seconds it actually took. Imports are local so the bench runs without a peer installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.router.instance import Instance


@dataclass
class SolverRun:
    routes: list[list[int]]
    seconds: float
    notes: dict[str, object] = field(default_factory=dict)


def solve_pyvrp(inst: Instance, *, time_limit_s: float, seed: int = 1) -> SolverRun:
    """PyVRP's iterated local search (single thread by design), stopped by MaxRuntime."""
    from pyvrp import Model
    from pyvrp.stop import MaxRuntime

    t0 = time.perf_counter()
    m = Model()
    locs = [m.add_location(x=inst.x[i], y=inst.y[i]) for i in range(len(inst.x))]
    depot = m.add_depot(locs[0], tw_early=inst.ready10(0), tw_late=inst.due10(0))
    m.add_vehicle_type(
        num_available=inst.fleet,
        capacity=inst.capacity,
        start_depot=depot,
        end_depot=depot,
        tw_early=inst.ready10(0),
        tw_late=inst.due10(0),
    )
    for i in range(1, len(locs)):
        m.add_client(
            locs[i],
            delivery=inst.demand[i],
            service_duration=inst.service10(i),
            tw_early=inst.ready10(i),
            tw_late=inst.due10(i),
            required=True,
        )
    d = inst.dist10
    for i, a in enumerate(locs):
        for j, b in enumerate(locs):
            m.add_edge(a, b, distance=d[i][j], duration=d[i][j])
    res = m.solve(stop=MaxRuntime(time_limit_s), seed=seed, display=False, collect_stats=False)
    seconds = time.perf_counter() - t0
    # PyVRP 0.14 routes are activities; a client activity's idx counts clients from 0
    routes = [[a.idx + 1 for a in r if a.is_client()] for r in res.best.routes()]
    return SolverRun(
        routes=routes,
        seconds=seconds,
        notes={"own_feasible": res.best.is_feasible(), "iterations": res.num_iterations},
    )


def solve_vroom(
    inst: Instance,
    *,
    time_limit_s: float,
    exploration_level: int = 5,
    seed: int = 1,
    timeout_s: float | None = None,
) -> SolverRun:
    """VROOM (pyvroom), one thread, the highest exploration level (the most time it will use).

    VROOM stops by itself (about 1-6 s on Solomon on a quiet machine), so ``time_limit_s`` only
    sets the default cap; ``timeout_s`` overrides it. VROOM is deterministic and has no seed; its
    objective is its cost matrix (the distances here), after serving every job.
    """
    import numpy as np
    import vroom

    d = np.asarray(inst.dist10, dtype=np.uint32)
    t0 = time.perf_counter()
    problem = vroom.Input()
    problem.set_durations_matrix("car", d)
    problem.set_costs_matrix("car", d)
    window = vroom.TimeWindow(inst.ready10(0), inst.due10(0))
    for k in range(inst.fleet):
        problem.add_vehicle(
            vroom.Vehicle(k + 1, start=0, end=0, capacity=[inst.capacity], time_window=window)
        )
    for i in range(1, len(inst.x)):
        problem.add_job(
            vroom.Job(
                i,
                location=i,
                default_service=inst.service10(i),
                delivery=vroom.Amount([inst.demand[i]]),
                time_windows=[vroom.TimeWindow(inst.ready10(i), inst.due10(i))],
            )
        )
    from datetime import timedelta

    sol = problem.solve(
        exploration_level=exploration_level,
        nb_threads=1,
        timeout=timedelta(seconds=timeout_s if timeout_s is not None else time_limit_s),
    )
    seconds = time.perf_counter() - t0
    frame = sol.routes
    jobs = frame[frame["type"] == "job"]
    routes = [[int(j) for j in grp["id"]] for _, grp in jobs.groupby("vehicle_id", sort=True)]
    return SolverRun(
        routes=routes,
        seconds=seconds,
        notes={"exploration_level": exploration_level, "unassigned": len(sol.unassigned)}
        if hasattr(sol, "unassigned")
        else {"exploration_level": exploration_level},
    )
