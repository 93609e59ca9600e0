"""Small problem builders for the routing tests (a fixture, since tests/ has no packages).

Locations sit on a line: travel between location i and j takes |i - j| * step minutes, for
every travel mode. Location 0 is the station.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.dispatch.routing import (
    Caregiver,
    Plan,
    Problem,
    SolveOptions,
    TimeWindow,
    Visit,
    check,
)


def line_matrix(n: int, step: int = 10) -> list[list[int]]:
    return [[abs(i - j) * step for j in range(n)] for i in range(n)]


def caregiver(cid: str = "anna", start: int = 0, end: int = 600, **kw) -> Caregiver:
    return Caregiver(cid, TimeWindow(start, end), kw.pop("station", 0), **kw)


def visit(vid: str, loc: int, *windows: tuple[int, int], duration: int = 30, **kw) -> Visit:
    wins = tuple(TimeWindow(a, b) for a, b in windows) or (TimeWindow(0, 600),)
    return Visit(vid, kw.pop("elder_id", f"elder-{vid}"), loc, wins, duration, **kw)


def problem(caregivers, visits, n_locations: int = 12, step: int = 10,
            options: SolveOptions | None = None) -> Problem:
    mat = line_matrix(n_locations, step)
    modes = {c.travel_mode for c in caregivers} | {"car"}
    return Problem(tuple(caregivers), tuple(visits), {m: mat for m in modes},
                   options or SolveOptions())


def assert_valid(p: Problem, plan: Plan) -> None:
    violations = check(p, plan)
    assert violations == [], violations


@pytest.fixture
def b() -> SimpleNamespace:
    """The builders: b.caregiver, b.visit, b.problem, b.line_matrix, b.assert_valid."""
    return SimpleNamespace(caregiver=caregiver, visit=visit, problem=problem,
                           line_matrix=line_matrix, assert_valid=assert_valid)
