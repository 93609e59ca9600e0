"""One independent scorer for every solver's routes (none of the solvers' own objectives).

A route is a list of customer node indices (1..n, depot 0 left out). The scorer re-times each route
from the depot at time 0 in DIMACS integers (x10), and checks: every customer served exactly once,
no more routes than the fleet, capacity, each service starting inside its window, and the return to
the depot before it closes. The distance is recomputed from the routes, never taken from a solver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.router.instance import SCALE, Instance


@dataclass
class Score:
    distance: float  # DIMACS units (one decimal)
    vehicles: int  # non-empty routes
    violations: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.violations

    def gap_pct(self, bks_distance: float | None) -> float | None:
        if not bks_distance:
            return None
        return (self.distance / bks_distance - 1.0) * 100.0


def score_routes(inst: Instance, routes: Sequence[Sequence[int]]) -> Score:
    """Score a route set against the instance; violations are listed in words, empty if feasible."""
    d = inst.dist10
    violations: list[str] = []
    n = inst.n_customers
    used = [list(r) for r in routes if len(r) > 0]

    seen = Counter(c for r in used for c in r)
    unknown = sorted(c for c in seen if not 1 <= c <= n)
    if unknown:
        violations.append(f"unknown customers {unknown[:10]}")
    twice = sorted(c for c, k in seen.items() if k > 1)
    if twice:
        violations.append(f"customers served more than once: {twice[:10]}")
    missing = [c for c in range(1, n + 1) if c not in seen]
    if missing:
        violations.append(f"{len(missing)} customers not served: {missing[:10]}")
    if len(used) > inst.fleet:
        violations.append(f"{len(used)} routes > fleet of {inst.fleet}")
    if unknown:  # cannot re-time routes through nodes that do not exist
        return Score(distance=float("nan"), vehicles=len(used), violations=violations)

    total10 = 0
    for k, route in enumerate(used):
        load = sum(inst.demand[c] for c in route)
        if load > inst.capacity:
            violations.append(f"route {k}: load {load} > capacity {inst.capacity}")
        t = inst.ready10(0)
        prev = 0
        for c in route:
            total10 += d[prev][c]
            start = max(t + d[prev][c], inst.ready10(c))
            if start > inst.due10(c):
                late = (start - inst.due10(c)) / SCALE
                violations.append(f"route {k}: customer {c} starts {late:g} after its window")
            t = start + inst.service10(c)
            prev = c
        total10 += d[prev][0]
        back = t + d[prev][0]
        if back > inst.due10(0):
            late = (back - inst.due10(0)) / SCALE
            violations.append(f"route {k}: returns {late:g} after the depot closes")
    return Score(distance=total10 / SCALE, vehicles=len(used), violations=violations)
