"""OR-Tools routing model for the home-care problem (and classic VRPTW benchmarks)."""

from __future__ import annotations

from .plan import Plan
from .problem import Problem


def solve(problem: Problem, *, time_limit_s: float, seed: int = 0) -> Plan:
    """The best plan found within ``time_limit_s`` wall-clock seconds (a hard budget)."""
    raise NotImplementedError
