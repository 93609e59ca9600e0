"""Replanning during the day: keep started/confirmed visits, warm-start from the routes."""

from __future__ import annotations

from dataclasses import dataclass

from .plan import Plan
from .problem import Problem, Visit


@dataclass(frozen=True, slots=True)
class CaregiverUnavailable:
    """The caregiver stops working at ``from_time`` (falls ill): later visits must move."""

    caregiver_id: str
    from_time: int | None = None  # None: at ``now``


@dataclass(frozen=True, slots=True)
class VisitCancelled:
    visit_id: str


@dataclass(frozen=True, slots=True)
class VisitRunningLong:
    """A started visit will end ``extra_minutes`` later than planned."""

    visit_id: str
    extra_minutes: int


@dataclass(frozen=True, slots=True)
class VisitAdded:
    visit: Visit


@dataclass(frozen=True, slots=True)
class VisitConfirmed:
    """The elder confirmed the visit with its planned caregiver and time: keep both."""

    visit_id: str


Change = CaregiverUnavailable | VisitCancelled | VisitRunningLong | VisitAdded | VisitConfirmed


def replan(problem: Problem, plan: Plan, changes: list[Change] | tuple[Change, ...], now: int,
           *, time_limit_s: float, seed: int = 0) -> Plan:
    """A new plan for ``problem`` after ``changes`` at time ``now``; see module docstring."""
    raise NotImplementedError
