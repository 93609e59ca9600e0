"""The routing problem: plain frozen dataclasses, no OR-Tools types.

Times are integers in one unit (minutes for home care; the Solomon bench uses DIMACS distances x10),
relative to a day origin. Locations are indices into the travel-time matrices, one matrix per travel
mode (``Problem.travel_times[caregiver.travel_mode][from][to]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """How much a visit matters today; a higher priority is never dropped for a lower one."""

    OPTIONAL = 0
    PAID = 1
    ENTITLED_CARE = 2
    MEDICAL_ESCORT = 3
    EMERGENCY = 4


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"


class TravelMode(StrEnum):
    WALK = "walk"
    BICYCLE = "bicycle"
    EBIKE = "ebike"
    CAR = "car"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Closed interval [start, end] of day-relative times."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"time window ends before it starts: {self.start}..{self.end}")

    def contains(self, t: int) -> bool:
        return self.start <= t <= self.end


@dataclass(frozen=True, slots=True)
class Break:
    """A floating break of ``minutes`` that must lie entirely inside ``window``."""

    window: TimeWindow
    minutes: int


@dataclass(frozen=True, slots=True)
class Caregiver:
    """A caregiver (or vehicle, for the Solomon bench) with a shift from and back to a home station.

    ``shift``: leave the station at or after shift.start, be back at or before shift.end.
    ``end_location`` defaults to ``start_location`` (the home station).
    ``max_work_minutes``: cap on time from leaving to returning to the station (None: shift length).
    ``meal_box_capacity``: meal boxes carried at once (None: unlimited).
    """

    id: str
    shift: TimeWindow
    start_location: int
    end_location: int | None = None
    rest_break: Break | None = None
    skills: frozenset[str] = frozenset()
    certificate_level: int = 0
    gender: Gender | None = None
    travel_mode: str = TravelMode.CAR
    max_work_minutes: int | None = None
    meal_box_capacity: int | None = None
    is_volunteer: bool = False

    @property
    def station(self) -> int:
        return self.start_location

    @property
    def return_location(self) -> int:
        return self.start_location if self.end_location is None else self.end_location


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit to an elder. The visit must START inside one of ``windows``.

    ``staff_count`` 2 means two different caregivers start it at the same time.
    ``pinned_caregiver``: must be done by this caregiver (confirmed/started visits).
    ``pinned_start``: must start exactly at this time.
    """

    id: str
    elder_id: str
    location: int
    windows: tuple[TimeWindow, ...]
    duration: int
    required_skills: frozenset[str] = frozenset()
    min_certificate_level: int = 0
    staff_count: int = 1
    preferred_caregiver_ids: frozenset[str] = frozenset()
    excluded_caregiver_ids: frozenset[str] = frozenset()
    gender_preference: Gender | None = None
    priority: Priority = Priority.ENTITLED_CARE
    pinned_caregiver: str | None = None
    pinned_start: int | None = None
    meal_boxes: int = 0

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError(f"visit {self.id} has no time window")
        if self.staff_count not in (1, 2):
            raise ValueError(f"visit {self.id}: staff_count must be 1 or 2")

    def start_allowed(self, t: int) -> bool:
        return any(w.contains(t) for w in self.windows)


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """Soft-cost weights and switches. All costs are integers in the problem's time unit.

    Objective = travel_weight * travel
              + drop penalties (lexicographic by priority, far above any travel)
              + continuity_miss_cost per visit not done by one of its preferred caregivers
              + workload_spread_weight * (longest route work time - shortest... see solver)
    Use ``SolveOptions.travel_only()`` for classic VRPTW benchmarks (objective = total travel only).
    """

    travel_weight: int = 1
    continuity_miss_cost: int = 30
    workload_spread_weight: int = 1
    reload_at_station: bool = True
    # Extra reload (return-to-station) stops allowed per caregiver with a meal-box capacity.
    max_reloads_per_caregiver: int = 2
    # Stop OR-Tools after this many solutions (None: only the clock). A count does not depend on
    # how busy the machine is, so with it a run is reproducible as long as the count, not the
    # time budget, ends the search.
    max_solutions: int | None = None

    @classmethod
    def travel_only(cls) -> SolveOptions:
        return cls(continuity_miss_cost=0, workload_spread_weight=0, reload_at_station=False)


@dataclass(frozen=True)
class Problem:
    """Caregivers, visits and per-mode travel-time matrices (integers, same unit as all times)."""

    caregivers: tuple[Caregiver, ...]
    visits: tuple[Visit, ...]
    travel_times: Mapping[str, Sequence[Sequence[int]]]
    options: SolveOptions = field(default_factory=SolveOptions)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.caregivers]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate caregiver id")
        vids = [v.id for v in self.visits]
        if len(set(vids)) != len(vids):
            raise ValueError("duplicate visit id")
        for c in self.caregivers:
            if c.travel_mode not in self.travel_times:
                raise ValueError(f"no travel-time matrix for mode {c.travel_mode!r} ({c.id})")

    def travel(self, mode: str, origin: int, destination: int) -> int:
        return int(self.travel_times[mode][origin][destination])

    def caregiver(self, caregiver_id: str) -> Caregiver:
        for c in self.caregivers:
            if c.id == caregiver_id:
                return c
        raise KeyError(caregiver_id)

    def visit(self, visit_id: str) -> Visit:
        for v in self.visits:
            if v.id == visit_id:
                return v
        raise KeyError(visit_id)

    def visits_by_id(self) -> dict[str, Visit]:
        return {v.id: v for v in self.visits}

    def caregivers_by_id(self) -> dict[str, Caregiver]:
        return {c.id: c for c in self.caregivers}

    def with_visits(self, *visits: Visit) -> Problem:
        """A copy with visits added (or replaced, by id)."""
        new = {v.id: v for v in visits}
        kept = tuple(v for v in self.visits if v.id not in new)
        return dataclasses.replace(self, visits=kept + tuple(new.values()))

    def without_visits(self, *visit_ids: str) -> Problem:
        gone = set(visit_ids)
        return dataclasses.replace(self, visits=tuple(v for v in self.visits if v.id not in gone))


def can_serve(caregiver: Caregiver, visit: Visit) -> str | None:
    """None when the caregiver may do the visit, otherwise the reason in words."""
    if visit.pinned_caregiver is not None and visit.pinned_caregiver != caregiver.id:
        return f"pinned to caregiver {visit.pinned_caregiver}"
    if caregiver.id in visit.excluded_caregiver_ids:
        return "caregiver excluded by the elder"
    missing = visit.required_skills - caregiver.skills
    if missing:
        return "lacks skill " + ", ".join(sorted(missing))
    if caregiver.certificate_level < visit.min_certificate_level:
        return f"certificate level {caregiver.certificate_level} < {visit.min_certificate_level}"
    if visit.gender_preference is not None and caregiver.gender != visit.gender_preference:
        return f"elder asks for a {visit.gender_preference} caregiver"
    return None
