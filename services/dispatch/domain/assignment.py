"""A simple assignment of one order to one caregiver.

The foundation's stand-in for daily planning: the real router (services/dispatch/routing) plans
whole days; this picks, for a single order, the least-loaded caregiver who may do it and the
earliest start that fits after the caregiver's earlier visits. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.values import CaregiverKind
from services.dispatch.domain.catalogue import CatalogueEntry

# Minutes kept free between two visits of one caregiver for travel when nothing better is known.
TRAVEL_BUFFER_MIN = 15
DEFAULT_DAY_START = time(8, 0)


@dataclass(frozen=True)
class CandidateCaregiver:
    caregiver_id: str
    kind: CaregiverKind
    skills: frozenset[str]
    certified: bool
    booked: tuple[tuple[datetime, datetime], ...]  # planned visits that day, any order
    # Why this caregiver may not take this order at all (day off, excluded, blacklisted...).
    unavailable: str | None = None
    shift: tuple[datetime, datetime] | None = None  # working hours that day


@dataclass(frozen=True)
class Assignment:
    caregiver_id: str
    start: datetime
    end: datetime


class NoCaregiverAvailable(ValueError):
    pass


def assign(
    entry: CatalogueEntry,
    duration_minutes: int,
    requested_date: date,
    window_start: datetime | None,
    window_end: datetime | None,
    candidates: list[CandidateCaregiver],
    tz: ZoneInfo,
) -> Assignment:
    """Choose a caregiver and a start, or say in words why none fits."""
    earliest = window_start or datetime.combine(requested_date, DEFAULT_DAY_START, tz)
    duration = timedelta(minutes=duration_minutes)
    reasons: list[str] = []
    options: list[tuple[bool, int, datetime, str, Assignment]] = []
    for c in candidates:
        if c.unavailable:
            reasons.append(f"{c.caregiver_id}: {c.unavailable}")
            continue
        if c.kind is CaregiverKind.VOLUNTEER and not entry.volunteer_allowed:
            reasons.append(f"{c.caregiver_id}: volunteers do not do {entry.service_type}")
            continue
        if not c.certified:
            reasons.append(f"{c.caregiver_id}: certificate missing or expired")
            continue
        missing = entry.skills - c.skills
        if missing:
            reasons.append(f"{c.caregiver_id}: lacks {', '.join(sorted(missing))}")
            continue
        start = max(earliest, c.shift[0]) if c.shift else earliest
        for booked_start, booked_end in sorted(c.booked):
            if start + duration + timedelta(minutes=TRAVEL_BUFFER_MIN) <= booked_start:
                break
            start = max(start, booked_end + timedelta(minutes=TRAVEL_BUFFER_MIN))
        end = start + duration
        if window_end is not None and end > window_end:
            reasons.append(f"{c.caregiver_id}: no free time inside the window")
            continue
        if c.shift and end > c.shift[1]:
            reasons.append(f"{c.caregiver_id}: no free time inside the shift")
            continue
        # Mutual-aid tasks go to volunteers first (silver mutual aid keeps paid hours for care
        # only they can give); then the least loaded, then the earliest start.
        employee = c.kind is not CaregiverKind.VOLUNTEER
        options.append((employee, len(c.booked), start, c.caregiver_id,
                        Assignment(c.caregiver_id, start, end)))
    if not options:
        detail = "; ".join(reasons) if reasons else "no caregiver in the service area"
        raise NoCaregiverAvailable(f"no caregiver can take this {entry.service_type}: {detail}")
    options.sort(key=lambda o: o[:4])
    return options[0][4]
