"""Urgent insertion: one emergency visit placed at once, cheapest feasible insertion."""

from __future__ import annotations

from .plan import Plan
from .problem import Problem, Visit


def insert_urgent(problem: Problem, plan: Plan, visit: Visit, now: int) -> Plan:
    """``plan`` with ``visit`` inserted where it adds least travel without breaking any rule.

    Stops starting before ``now`` stay as they are. If no feasible place exists, the visit is
    listed as unassigned with the reason. The caller checks the result against
    ``problem.with_visits(visit)``.
    """
    raise NotImplementedError
