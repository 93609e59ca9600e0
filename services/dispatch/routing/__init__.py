"""Home-care routing: problem model, OR-Tools solver, independent checker, replanning.

Public API::

    from services.dispatch.routing import Problem, Caregiver, Visit, Priority, solve, check
"""

from .checker import Violation, ViolationKind, check
from .insertion import insert_urgent
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
from .problem import (
    Break,
    Caregiver,
    Gender,
    Priority,
    Problem,
    SolveOptions,
    TimeWindow,
    TravelMode,
    Visit,
    can_serve,
)
from .replan import (
    CaregiverUnavailable,
    Change,
    VisitAdded,
    VisitCancelled,
    VisitConfirmed,
    VisitRunningLong,
    apply_changes,
    replan,
)
from .solver import solve
from .travel import (
    HaversineProvider,
    LatLon,
    OsrmError,
    OsrmTableProvider,
    TravelTimeProvider,
    travel_times_for,
)

__all__ = [
    "Break", "BreakPlacement", "Caregiver", "CaregiverUnavailable", "Change", "Gender",
    "HaversineProvider", "LatLon", "OsrmError", "ObjectiveTerms", "OsrmTableProvider", "Plan",
    "PlanStatus", "Priority",
    "Problem", "Route", "SolveOptions", "Stop", "StopKind", "TimeWindow", "TravelMode",
    "TravelTimeProvider", "UnassignedReason", "UnassignedVisit", "Violation", "ViolationKind",
    "Visit", "VisitAdded", "VisitCancelled", "VisitConfirmed", "VisitRunningLong", "can_serve",
    "apply_changes", "check", "insert_urgent", "replan", "solve", "travel_times_for",
]
