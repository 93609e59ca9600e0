"""A seeded generator of plausible home-care days on a county geography.

The service area is a county-level town (DOMAIN.md "Places"): a service centre in the town,
community stations around it, and township stations out in the countryside with villages
clustered around them. Elders live near a station (town) or in a village; caregivers start and end
their shift at a station. Times are minutes after midnight (local time); travel times come from the
router's own HaversineProvider (great circle x road factor / mode speed), one matrix per mode.

Visit mix (DOMAIN.md "Service types"): lunch meal rounds with meal boxes (tight window, short
stops), cleaning, bathing (some bed-bound elders need two caregivers at once), nursing that needs a
certificate, medication reminders, companionship, welfare checks, shopping, hours-long medical
escorts and a few emergencies; one or two windows; skills, certificate levels, gender preferences,
preferred (continuity) and excluded caregivers; priorities from emergency down to optional.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from services.dispatch.routing import (
    Break,
    Caregiver,
    Gender,
    HaversineProvider,
    LatLon,
    Priority,
    Problem,
    SolveOptions,
    TimeWindow,
    TravelMode,
    Visit,
    can_serve,
    travel_times_for,
)

TOWN_CENTRE = LatLon(29.3060, 120.0750)  # a county-level town in Zhejiang (Yiwu-like)
KM_PER_DEG_LAT = 111.2


def h(hour: float) -> int:
    """Clock time -> minutes after midnight (h(11.5) == 690)."""
    return round(hour * 60)


def _offset(p: LatLon, north_km: float, east_km: float) -> LatLon:
    return LatLon(
        p.lat + north_km / KM_PER_DEG_LAT,
        p.lon + east_km / (KM_PER_DEG_LAT * math.cos(math.radians(p.lat))),
    )


@dataclass
class Place:
    name: str
    kind: str  # centre | station | township | village | home | emergency
    point: LatLon
    station: int  # index of the station this place belongs to


@dataclass
class Day:
    """A generated day: the routing problem plus what the benchmark needs around it."""

    problem: Problem
    places: list[Place]
    seed: int
    # location indices with no visit, kept in the matrix for emergency calls inserted later
    emergency_locations: list[int] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)


VISIT_TYPES: dict[str, float] = {  # share of the day's visits
    "meal": 0.24,
    "cleaning": 0.14,
    "bathing": 0.09,
    "nursing": 0.09,
    "medication": 0.11,
    "companionship": 0.08,
    "welfare_check": 0.13,
    "shopping": 0.06,
    "escort": 0.03,
    "emergency": 0.03,
}
MEAL_BOXES_BY_MODE = {
    TravelMode.WALK: 4,
    TravelMode.BICYCLE: 6,
    TravelMode.EBIKE: 8,
    TravelMode.CAR: 16,
}


def generate_day(
    n_visits: int,
    n_caregivers: int,
    seed: int,
    *,
    n_emergency_locations: int = 60,
    options: SolveOptions | None = None,
) -> Day:
    """One seeded day: ``n_visits`` visits for ``n_caregivers`` caregivers (same seed, same day)."""
    rng = random.Random(seed)
    places: list[Place] = []

    # --- stations: the centre, community stations in town, township stations out of town
    places.append(Place("service centre", "centre", TOWN_CENTRE, 0))
    n_town = max(3, n_caregivers // 12)
    n_township = max(3, n_caregivers // 14)
    for k in range(n_town):
        ang, r = 2 * math.pi * (k + rng.random() * 0.5) / n_town, rng.uniform(1.0, 2.8)
        pt = _offset(TOWN_CENTRE, r * math.sin(ang), r * math.cos(ang))
        places.append(Place(f"community station {k + 1}", "station", pt, len(places)))
    for k in range(n_township):
        ang, r = 2 * math.pi * (k + rng.random() * 0.6) / n_township, rng.uniform(6.0, 13.0)
        pt = _offset(TOWN_CENTRE, r * math.sin(ang), r * math.cos(ang))
        places.append(Place(f"township station {k + 1}", "township", pt, len(places)))
    stations = list(range(len(places)))
    town_stations = [i for i in stations if places[i].kind in ("centre", "station")]
    township_stations = [i for i in stations if places[i].kind == "township"]

    # --- villages around township stations (a mutual-aid point each)
    villages: list[int] = []
    for s in township_stations:
        for v in range(rng.randint(3, 5)):
            ang, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.8, 3.0)
            pt = _offset(places[s].point, r * math.sin(ang), r * math.cos(ang))
            places.append(Place(f"{places[s].name} village {v + 1}", "village", pt, s))
            villages.append(len(places) - 1)

    # --- elders: 60 % in town around a station, 40 % in villages
    n_elders = max(1, round(n_visits * 0.78))
    elders: list[dict] = []
    for e in range(n_elders):
        if rng.random() < 0.6:
            s = rng.choice(town_stations)
            pt = _offset(places[s].point, rng.gauss(0, 0.7), rng.gauss(0, 0.7))
        else:
            vil = rng.choice(villages)
            s = places[vil].station
            pt = _offset(places[vil].point, rng.gauss(0, 0.25), rng.gauss(0, 0.25))
        places.append(Place(f"elder {e + 1}", "home", pt, s))
        elders.append(
            {
                "id": f"E{e + 1:04d}",
                "location": len(places) - 1,
                "station": s,
                "gender": Gender.FEMALE if rng.random() < 0.6 else Gender.MALE,
                "entitled": rng.random() < 0.45,
            }
        )
    emergency_locations = []
    for k in range(n_emergency_locations):  # callers not on today's list
        vil_or_station = rng.choice(villages + town_stations)
        pt = _offset(places[vil_or_station].point, rng.gauss(0, 0.5), rng.gauss(0, 0.5))
        places.append(
            Place(f"emergency caller {k + 1}", "emergency", pt, places[vil_or_station].station)
        )
        emergency_locations.append(len(places) - 1)

    # --- caregivers: spread over stations like the elders, modes by terrain
    caregivers: list[Caregiver] = []
    home_station_weights = Counter(e["station"] for e in elders)
    station_pool = [s for s in stations for _ in range(max(1, home_station_weights[s]))]
    for k in range(n_caregivers):
        station = stations[k] if k < len(stations) else rng.choice(station_pool)
        in_town = places[station].kind != "township"
        r = rng.random()
        if in_town:
            mode = (
                TravelMode.EBIKE
                if r < 0.55
                else TravelMode.BICYCLE
                if r < 0.7
                else TravelMode.WALK
                if r < 0.82
                else TravelMode.CAR
            )
        else:
            mode = TravelMode.EBIKE if r < 0.5 else TravelMode.CAR
        shape = rng.random()
        if shape < 0.6:
            shift, brk = TimeWindow(h(8), h(17)), Break(TimeWindow(h(11.5), h(14)), 30)
        elif shape < 0.8:
            shift, brk = TimeWindow(h(7.5), h(16.5)), Break(TimeWindow(h(11), h(13.5)), 30)
        elif shape < 0.9:
            shift, brk = TimeWindow(h(8), h(12.5)), None  # part-time morning
        else:
            shift, brk = TimeWindow(h(12.5), h(18)), None  # part-time afternoon
        skills = {"basic"}
        cert = 1  # 持证上岗: every caregiver holds the basic certificate
        if rng.random() < 0.45:
            skills.add("bathing")
        if rng.random() < 0.3:
            skills.add("nursing")
            cert = 2 if rng.random() < 0.7 else 3
        if rng.random() < 0.3:
            skills.add("escort")
        caregivers.append(
            Caregiver(
                id=f"C{k + 1:03d}",
                shift=shift,
                start_location=station,
                rest_break=brk,
                skills=frozenset(skills),
                certificate_level=cert,
                gender=Gender.FEMALE if rng.random() < 0.8 else Gender.MALE,
                travel_mode=mode,
                max_work_minutes=shift.end - shift.start,
                meal_box_capacity=MEAL_BOXES_BY_MODE[mode],
            )
        )
    by_station: dict[int, list[Caregiver]] = {}
    for c in caregivers:
        by_station.setdefault(c.start_location, []).append(c)

    # --- visits: every elder gets one, the rest go to random elders
    kinds = list(VISIT_TYPES)
    weights = [VISIT_TYPES[k] for k in kinds]
    owners = list(range(n_elders)) + [rng.randrange(n_elders) for _ in range(n_visits - n_elders)]
    rng.shuffle(owners)
    visits: list[Visit] = []
    for n, e_idx in enumerate(owners[:n_visits]):
        elder = elders[e_idx]
        kind = rng.choices(kinds, weights)[0]
        visits.append(_make_visit(rng, f"V{n + 1:04d}", kind, elder, caregivers, by_station))

    points = [p.point for p in places]
    modes = sorted({c.travel_mode for c in caregivers})
    matrices = travel_times_for(HaversineProvider(), points, modes)
    problem = Problem(
        caregivers=tuple(caregivers),
        visits=tuple(visits),
        travel_times=matrices,
        options=options or SolveOptions(),
    )
    stats = {
        "stations": len(stations),
        "villages": len(villages),
        "elders": n_elders,
        "locations": len(places),
        "visit_kinds": dict(Counter(_kind_of(v) for v in visits)),
        "two_caregiver_visits": sum(v.staff_count == 2 for v in visits),
        "two_window_visits": sum(len(v.windows) == 2 for v in visits),
        "meal_boxes": sum(v.meal_boxes for v in visits),
        "priorities": {p.name: sum(v.priority == p for v in visits) for p in Priority},
        "travel_modes": dict(Counter(str(c.travel_mode) for c in caregivers)),
        "caregiver_minutes": sum(c.shift.end - c.shift.start for c in caregivers),
        "visit_staff_minutes": sum(v.duration * v.staff_count for v in visits),
        "unservable": sum(
            sum(can_serve(c, v) is None for c in caregivers) < v.staff_count for v in visits
        ),
    }
    return Day(
        problem=problem,
        places=places,
        seed=seed,
        emergency_locations=emergency_locations,
        stats=stats,
    )


def _kind_of(v: Visit) -> str:
    return v.id.split(":")[-1] if ":" in v.id else "?"


def _window(start_h: float, end_h: float) -> TimeWindow:
    return TimeWindow(h(start_h), h(end_h))


def _make_visit(
    rng: random.Random,
    vid: str,
    kind: str,
    elder: dict,
    caregivers: list[Caregiver],
    by_station: dict[int, list[Caregiver]],
) -> Visit:
    """One visit of ``kind`` for ``elder``; the id carries the kind (``V0001:meal``)."""
    regular = Priority.ENTITLED_CARE if elder["entitled"] else Priority.PAID
    skills: frozenset[str] = frozenset({"basic"})
    cert, staff, boxes, gender_pref = 1, 1, 0, None
    two = rng.random() < 0.45  # a second window in the other half of the day
    if kind == "meal":  # lunch round: start 11:00-12:15, a short hand-over
        windows = (_window(11, 12.25),)
        duration, boxes = 5, (2 if rng.random() < 0.15 else 1)
        priority = regular
    elif kind == "cleaning":
        start = rng.choice([8, 8.5, 9, 9.5, 10])
        windows = (
            (_window(start, start + 2.5), _window(14, 16))
            if two
            else (_window(start, start + 2.5),)
        )
        duration, priority = rng.choice([45, 60, 90]), regular
    elif kind == "bathing":
        windows = (_window(9, 11), _window(14, 16)) if two else (_window(9, 11),)
        duration, skills, priority = rng.choice([45, 60]), frozenset({"bathing"}), regular
        staff = 2 if rng.random() < 0.25 else 1  # bed-bound elder: two caregivers at once
        if rng.random() < 0.5:  # bathing: same-gender caregiver asked for
            gender_pref = elder["gender"]
    elif kind == "nursing":
        start = rng.choice([8.5, 9, 10, 14, 15])
        windows = (_window(start, start + 1.5),)
        duration, skills, cert = rng.choice([30, 45, 60]), frozenset({"nursing"}), 2
        priority = Priority.ENTITLED_CARE
    elif kind == "medication":
        windows = (_window(8, 9.5),) if rng.random() < 0.6 else (_window(15, 16.5),)
        duration, priority = 15, regular
    elif kind == "companionship":
        windows = (_window(9, 16),)
        duration = rng.choice([30, 45, 60])
        priority = Priority.OPTIONAL if rng.random() < 0.6 else Priority.PAID
    elif kind == "welfare_check":
        windows = (_window(8.5, 16.5),)
        duration, priority = 20, Priority.ENTITLED_CARE
    elif kind == "shopping":
        windows = (_window(9, 11), _window(14, 16)) if two else (_window(9, 11),)
        duration, priority = 40, Priority.PAID
    elif kind == "escort":  # to hospital and back: hours long, fixed start
        start = rng.choice([8, 8.5, 13.5])
        windows = (_window(start, start + 0.5),)
        duration, skills = rng.choice([120, 150, 180]), frozenset({"escort"})
        priority = Priority.MEDICAL_ESCORT
    else:  # emergency already known at planning time: within the hour
        t = rng.uniform(8.5, 15)
        windows = (_window(t, t + 1),)
        duration, priority = 40, Priority.EMERGENCY
    if gender_pref is None and rng.random() < 0.05:
        gender_pref = Gender.FEMALE

    def ok(c: Caregiver) -> bool:
        return (
            skills <= c.skills
            and c.certificate_level >= cert
            and (gender_pref is None or c.gender == gender_pref)
        )

    local = [c for c in by_station.get(elder["station"], []) if ok(c)]
    preferred: frozenset[str] = frozenset()
    if local and priority != Priority.EMERGENCY and rng.random() < 0.35:  # continuity
        preferred = frozenset(c.id for c in rng.sample(local, min(len(local), rng.randint(1, 2))))
    excluded: frozenset[str] = frozenset()
    if rng.random() < 0.03:  # an elder who will not have one particular caregiver back
        excluded = frozenset({rng.choice(caregivers).id}) - preferred
    return Visit(
        id=f"{vid}:{kind}",
        elder_id=elder["id"],
        location=elder["location"],
        windows=windows,
        duration=duration,
        required_skills=skills,
        min_certificate_level=cert,
        staff_count=staff,
        preferred_caregiver_ids=preferred,
        excluded_caregiver_ids=excluded,
        gender_preference=gender_pref,
        priority=priority,
        meal_boxes=boxes,
    )


def emergency_visit(rng: random.Random, day: Day, k: int, now: int) -> Visit:
    """A random emergency call at ``now``: an elder on today's list or a new caller."""
    loc = rng.choice(day.emergency_locations + [v.location for v in day.problem.visits])
    start = now + rng.choice([10, 15, 20, 30])
    return Visit(
        id=f"U{k:04d}:emergency",
        elder_id=f"caller-{loc}",
        location=loc,
        windows=(TimeWindow(start, start + 60),),
        duration=rng.choice([30, 40, 60]),
        required_skills=frozenset({"basic"}),
        priority=Priority.EMERGENCY,
    )
