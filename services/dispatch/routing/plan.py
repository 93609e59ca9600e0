"""The plan the router returns: ordered stops per caregiver, unassigned visits with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .problem import Priority


class StopKind(StrEnum):
    VISIT = "visit"
    # Back at the home station to pick up meal boxes (capacity reload).
    RELOAD = "reload"


@dataclass(frozen=True, slots=True)
class Stop:
    """One stop on a route. ``arrival`` <= ``start``; ``waiting`` = start - arrival minus any break
    taken in between; ``travel_from_previous`` from the previous stop (or the station)."""

    visit_id: str | None
    location: int
    arrival: int
    start: int
    end: int
    travel_from_previous: int
    waiting: int = 0
    kind: StopKind = StopKind.VISIT


@dataclass(frozen=True, slots=True)
class BreakPlacement:
    start: int
    end: int
    # Index into Route.stops of the stop the break comes before (len(stops): after the last stop).
    before_stop: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """A caregiver's day: leave the station at ``start``, back at the station at ``end``."""

    caregiver_id: str
    stops: tuple[Stop, ...]
    start: int
    end: int
    travel_to_end: int = 0
    rest_break: BreakPlacement | None = None

    @property
    def visit_ids(self) -> list[str]:
        return [s.visit_id for s in self.stops if s.kind is StopKind.VISIT and s.visit_id]

    @property
    def travel(self) -> int:
        return sum(s.travel_from_previous for s in self.stops) + self.travel_to_end

    @property
    def work_minutes(self) -> int:
        return self.end - self.start if self.stops else 0


class UnassignedReason(StrEnum):
    NO_SKILL = "no caregiver with the required skill"
    NO_CERTIFICATE = "no caregiver with the required certificate level"
    NO_GENDER = "no caregiver of the requested gender"
    EXCLUDED = "every suitable caregiver is excluded by the elder"
    NO_QUALIFIED_PAIR = "fewer than two qualified caregivers for a two-caregiver visit"
    WINDOW_UNREACHABLE = "time window cannot be reached from any suitable caregiver's station"
    SHIFT_TOO_SHORT = "no suitable caregiver's shift covers the visit and the way back"
    CAPACITY = "meal boxes exceed every suitable caregiver's capacity"
    PINNED_CAREGIVER_UNAVAILABLE = "the pinned caregiver is not available"
    CANCELLED = "visit cancelled"
    NO_ROOM = "no room in any suitable caregiver's day (dropped for higher-priority work)"


@dataclass(frozen=True, slots=True)
class UnassignedVisit:
    visit_id: str
    priority: Priority
    reason: UnassignedReason
    detail: str = ""

    @property
    def reason_text(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(frozen=True, slots=True)
class ObjectiveTerms:
    travel: int = 0
    lateness: int = 0  # windows are hard; always 0, kept for reporting
    dropped_by_priority: dict[Priority, int] = field(default_factory=dict)
    continuity_misses: int = 0
    workload_spread: int = 0  # longest minus shortest work time over caregivers with visits


class PlanStatus(StrEnum):
    FEASIBLE = "feasible"  # every visit assigned
    PARTIAL = "partial"  # some visits unassigned (see Plan.unassigned)
    NO_SOLUTION = "no_solution"


@dataclass(frozen=True, slots=True)
class Plan:
    routes: tuple[Route, ...]
    unassigned: tuple[UnassignedVisit, ...] = ()
    objective: ObjectiveTerms = field(default_factory=ObjectiveTerms)
    solve_seconds: float = 0.0
    status: PlanStatus = PlanStatus.FEASIBLE

    def route_of(self, caregiver_id: str) -> Route | None:
        for r in self.routes:
            if r.caregiver_id == caregiver_id:
                return r
        return None

    @property
    def assigned_visit_ids(self) -> set[str]:
        return {vid for r in self.routes for vid in r.visit_ids}

    @property
    def total_travel(self) -> int:
        return sum(r.travel for r in self.routes)
