"""A seeded generator of a realistic district (pure: no I/O, same seed -> same district).

One sub-district (镇街道) of Yiwu, Zhejiang: a home-care service centre (居家养老服务中心) in the
town, stations (服务站) in the bigger villages and village points around them; the elders the
centre serves, their care plans, the caregivers of several providers, volunteers, one day's
hotline orders (12349), one or two emergencies and the day's "noise" (what goes differently
from the plan). The simulator (services.simulation.day) plays that day through the real API.

Assumptions and sources (approximate; a model for planning, not statistics):
- Geography: 佛堂镇, a town of Yiwu south of the city (about 29.20 N, 120.03 E). Stations lie
  1.5-6 km from the centre, villages within 2 km of their station, homes within ~250 m of their
  village point. Travel is the router's own model (great circle x 1.3 at the mode's speed).
- Ages of people 65+: China's 7th census (2020), population by five-year age group: 65-69 38.8 %,
  70-74 26.0 %, 75-79 16.3 %, 80-84 10.7 %, 85-89 6.0 %, 90-94 2.4 %, 95-99 0.63 %,
  100+ 0.06 %. Women are a growing majority with age (51 % at 65, 65 % at 90+).
- Households: about 26 % of people 65+ are widowed (census 2020); about 15 % live alone
  (空巢独居), 35 % with the spouse only, the rest with children.
- Minimum living guarantee (低保) in Zhejiang covers about 1.5-2 % of residents, more among rural
  elders: assumed 4 % of elders in 低保 families and 2 % on its margin (低保边缘).
- Disability: the 2nd national sample survey on disability (2006) found about a quarter of people
  60+ disabled, a third of them severely (grades 1-2): the grade qualifying for the Yiwu rule is
  assumed for 4 % at 65 rising to 20 % at 90+.
- 孤寡 (no spouse, no children; 特困): assumed 1.5 %; children unable to support (child severely
  disabled or on 低保): assumed 3 % of those 70+.
- Capability (老年人能力评估 0 intact .. 4 fully dependent): assumed 80/11/5/3/1 % at 65-79,
  55/20/12/8/5 % at 80-89 and 35/25/18/13/9 % at 90+.
With these, among all people 65+ about 93 % have no Yiwu entitlement, 6 % have 4 h a month
(mostly 90+ and 孤寡) and about 0.5 % 8 h (低保 with disability, 100+): `population_shares`.
The centre's clients are every entitled elder plus the share of the others who buy care
themselves (assumed 1 in 9), so among clients entitled elders are a large minority.
- Caregivers: about one per 25 elders served; 85 % women; 养老护理员 certificates of levels 1-3
  (初级/中级/高级), nurses (护士) do nursing, escort and equipment; most ride e-bikes. A few
  certificates expire within the month (the dispatcher is warned).
- Volunteers: about one per 12 clients, half days, welfare checks and companionship.
- A day's demand: care plans (weekly or fortnightly visits within the entitlement) plus hotline
  orders for about a third of clients; welfare checks for elders living alone.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from services.ledger.domain.entitlement import ElderFacts, load_rule_book

Size = Literal["tiny", "small", "district", "county"]

CENTRE = (29.2036, 120.0350)  # 佛堂镇居家养老服务中心 (approximate)
AREA = "yiwu-fotang"


@dataclass(frozen=True)
class SizeSpec:
    stations: int
    villages_per_station: int
    clients: int
    caregivers: int
    volunteers: int
    providers: int
    emergencies: int


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(1, 2, 10, 3, 1, 2, 1),
    "small": SizeSpec(1, 3, 24, 5, 2, 2, 1),
    "district": SizeSpec(3, 4, 140, 14, 8, 3, 2),
    "county": SizeSpec(10, 6, 900, 80, 40, 6, 2),
}

AGE_GROUPS = [(65, 0.388), (70, 0.260), (75, 0.163), (80, 0.107), (85, 0.060), (90, 0.024),
              (95, 0.0063), (100, 0.0006)]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙朱马胡郭何林楼金龚骆傅方"
FEMALE_NAMES = ["秀英", "桂兰", "玉兰", "凤英", "美英", "秀珍", "翠花", "菊香", "月娥", "金花",
                "素芬", "彩凤", "雪梅", "丽华", "爱珍"]
MALE_NAMES = ["国强", "德明", "建国", "志明", "根土", "洪福", "荣华", "金水", "阿三", "福生",
              "永康", "宝林", "春生", "有才", "忠良"]
YOUNG_FEMALE = ["美华", "丽娟", "晓燕", "红梅", "海燕", "玲", "芳", "静", "敏", "霞"]
YOUNG_MALE = ["建军", "伟", "强", "磊", "军", "斌", "杰", "涛"]
VILLAGE_NAMES = ["塘下洋", "上溪", "田心", "蜀墅塘", "王宅", "稠关", "吴店", "新江", "倍磊",
                 "前店", "后湖", "下骆宅", "桥头", "岩南", "溪华", "曹村", "赤岸", "毛店",
                 "雅治街", "尚阳", "双林", "东河", "柳青", "殿口"]
PROVIDERS = [("P-anle", "义乌市安乐居家养老服务中心"), ("P-kangning", "义乌市康宁护理服务站"),
             ("P-xiaoyuan", "佛堂镇孝缘助老服务社"), ("P-hengxin", "恒馨养老服务有限公司"),
             ("P-yimin", "颐民居家照护中心"), ("P-chunhui", "春晖护理院上门服务部")]

# Caregiver roles: skills the catalogue asks for (services/dispatch/domain/catalogue.py).
CARER_SKILLS = ["meal", "cleaning", "bathing", "personal_care", "mobility"]
NURSE_SKILLS = ["nursing", "escort", "mobility", "equipment", "cleaning"]
SHIFTS = [("08:00", "17:00"), ("07:30", "16:30"), ("09:00", "18:00")]

# Hotline demand mix (service type, share, minutes or None for the catalogue default).
HOTLINE_MIX: list[tuple[str, float]] = [
    ("cleaning", 0.24), ("meal_help", 0.18), ("bathing", 0.10), ("companionship", 0.09),
    ("shopping", 0.07), ("housework", 0.07), ("rehabilitation_nursing", 0.08),
    ("medication_reminder", 0.05), ("medical_escort", 0.03), ("mobility", 0.04),
    ("equipment_rental_delivery", 0.02), ("bed_making", 0.03)]
# Services only paid caregivers do (the catalogue's volunteer_allowed is false for them).
PAID_CARE = {"cleaning", "meal_help", "bathing", "housework", "rehabilitation_nursing",
             "mobility", "bed_making", "medical_escort", "equipment_rental_delivery"}
PLAN_ITEMS = [("cleaning", 60), ("bathing", 60), ("meal_help", 30), ("housework", 60),
              ("rehabilitation_nursing", 60)]


@dataclass
class Station:
    station_id: str
    name: str
    lat: float
    lon: float
    villages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ElderRecord:
    elder_id: str
    name: str
    gender: str
    birth_date: date
    lat: float
    lon: float
    address: str
    confirmation_code: str
    capability_level: int
    household: str  # alone | spouse | children
    facts: dict[str, Any]  # ledger ElderFacts fields (birth_date as ISO)
    category: str  # Yiwu entitlement category on the day: high | low | none
    entitled_minutes: int
    family_phone: str = ""
    out_of_pocket_agreed: bool = False
    # 结对帮扶: elders living alone are paired with a volunteer who does their welfare checks.
    preferred_caregiver_ids: list[str] = field(default_factory=list)

    def elder_facts(self) -> ElderFacts:
        return ElderFacts.from_json(self.facts)


@dataclass
class CaregiverRecord:
    caregiver_id: str
    name: str
    kind: str  # employee | volunteer
    gender: str
    skills: list[str]
    provider_id: str | None
    certificate_expires: date | None
    certificate_level: int
    shift_start: str
    shift_end: str
    station_lat: float
    station_lon: float
    travel_mode: str = "ebike"
    birth_date: date | None = None


@dataclass
class CarePlanRecord:
    care_plan_id: str
    elder_id: str
    items: list[dict[str, Any]]
    monthly_minutes: int


@dataclass
class OrderRecord:
    order_id: str
    elder_id: str
    service_type: str
    window_start: str | None = None  # local HH:MM
    window_end: str | None = None
    emergency: bool = False
    at: str | None = None  # local HH:MM the order comes in (emergencies during the day)
    out_of_pocket_agreed: bool = False
    source: str = "hotline"
    use_time_credits: bool = False  # paid (after any entitlement) with gifted time credits


@dataclass
class Noise:
    """What goes differently from the plan on the day (all seeded)."""

    seed: int
    traffic_sigma: float = 0.25  # lognormal spread of each leg's travel time
    long_visit_share: float = 0.12  # visits that run 30-60 % over
    not_home_visits: list[str] = field(default_factory=list)  # V-<order id>
    sick_caregiver: str | None = None
    sick_at: str = "11:00"
    offline_caregiver: str | None = None
    offline_from: str = "13:00"
    offline_minutes: int = 60

    def factor(self, *key: str) -> float:
        """A stable pseudo-random number in [0, 1) for this key (the same in every replay)."""
        digest = hashlib.sha256("|".join((str(self.seed), *key)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def traffic(self, *key: str) -> float:
        u = min(max(self.factor("traffic", *key), 1e-9), 1 - 1e-9)
        return math.exp(self.traffic_sigma * _normal_quantile(u))

    def visit_length(self, planned: int, *key: str) -> int:
        """Minutes the visit really takes: mostly near plan, some run long."""
        if self.factor("long", *key) < self.long_visit_share:
            return round(planned * (1.3 + 0.3 * self.factor("how-long", *key)))
        return max(5, round(planned * (0.9 + 0.15 * self.factor("len", *key))))


@dataclass
class District:
    seed: int
    size: str
    day: date
    service_area_id: str
    centre: tuple[float, float]
    stations: list[Station]
    elders: list[ElderRecord]
    caregivers: list[CaregiverRecord]
    care_plans: list[CarePlanRecord]
    orders: list[OrderRecord]
    noise: Noise
    population_shares: dict[str, float]
    # Entitled visits earlier this month ({elder_id, day, service_type, minutes}): the ledger
    # starts the day with the month's usage so far, as a real day would.
    month_so_far: list[dict[str, Any]] = field(default_factory=list)
    # Volunteers' gifts of earned credits to an elder of their family ({from, to, minutes}).
    credit_gifts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def volunteers(self) -> list[CaregiverRecord]:
        return [c for c in self.caregivers if c.kind == "volunteer"]

    @property
    def providers(self) -> list[tuple[str, str]]:
        ids = {c.provider_id for c in self.caregivers if c.provider_id}
        return [p for p in PROVIDERS if p[0] in ids]

    def elder(self, elder_id: str) -> ElderRecord:
        return next(e for e in self.elders if e.elder_id == elder_id)

    def category_shares(self) -> dict[str, float]:
        """Shares of the centre's clients by Yiwu entitlement category."""
        n = len(self.elders) or 1
        return {c: round(sum(e.category == c for e in self.elders) / n, 3)
                for c in ("high", "low", "none")}

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> District:
        d = dict(data)
        d["day"] = date.fromisoformat(d["day"])
        d["centre"] = tuple(d["centre"])
        d["stations"] = [Station(**s) for s in d["stations"]]
        d["elders"] = [ElderRecord(**{**e, "birth_date": date.fromisoformat(e["birth_date"])})
                       for e in d["elders"]]
        d["caregivers"] = [CaregiverRecord(**{
            **c, "certificate_expires": _date_or_none(c["certificate_expires"]),
            "birth_date": _date_or_none(c.get("birth_date"))}) for c in d["caregivers"]]
        d["care_plans"] = [CarePlanRecord(**p) for p in d["care_plans"]]
        d["orders"] = [OrderRecord(**o) for o in d["orders"]]
        d["noise"] = Noise(**d["noise"])
        return cls(**d)


def _date_or_none(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _normal_quantile(u: float) -> float:
    """Inverse normal CDF (Acklam's rational approximation; enough for noise)."""
    a = [-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00]
    b = [-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00]
    if u < 0.02425:
        q = math.sqrt(-2 * math.log(u))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if u > 1 - 0.02425:
        return -_normal_quantile(1 - u)
    q = u - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def _offset(rng: random.Random, lat: float, lon: float, min_km: float,
            max_km: float) -> tuple[float, float]:
    """A point at a random bearing and distance (km) from (lat, lon)."""
    bearing = rng.uniform(0, 2 * math.pi)
    km = rng.uniform(min_km, max_km)
    dlat = km * math.cos(bearing) / 111.32
    dlon = km * math.sin(bearing) / (111.32 * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _person(rng: random.Random, gender: str, old: bool = True) -> str:
    names = (FEMALE_NAMES if gender == "female" else MALE_NAMES) if old else (
        YOUNG_FEMALE if gender == "female" else YOUNG_MALE)
    return rng.choice(SURNAMES) + rng.choice(names)


def _capability(rng: random.Random, age: int) -> int:
    weights = ([80, 11, 5, 3, 1] if age < 80 else [55, 20, 12, 8, 5] if age < 90
               else [35, 25, 18, 13, 9])
    return rng.choices(range(5), weights=weights)[0]


def _population_elder(rng: random.Random, day: date) -> dict[str, Any]:
    """One person 65+ of the town, with the facts the Yiwu rule looks at."""
    start = _weighted(rng, AGE_GROUPS)
    age = rng.randint(start, start + (4 if start < 100 else 3))
    female_share = 0.51 + 0.14 * min(1.0, (age - 65) / 25)
    gender = "female" if rng.random() < female_share else "male"
    birth = day - timedelta(days=age * 365 + rng.randint(30, 330))
    widowed = rng.random() < min(0.8, 0.12 + 0.02 * (age - 65))
    no_family = rng.random() < 0.015
    household = ("alone" if no_family or (widowed and rng.random() < 0.45)
                 else "spouse" if not widowed and rng.random() < 0.45 else "children")
    dibao = rng.random() < 0.04
    margin = not dibao and rng.random() < 0.02
    disability = rng.random() < (0.04 + 0.16 * min(1.0, max(0, age - 65) / 25))
    facts = ElderFacts(birth_date=birth, dibao=dibao, dibao_margin=margin,
                       disability_qualifies=disability,
                       children_cannot_support=age >= 70 and not no_family
                       and rng.random() < 0.03,
                       no_spouse_no_children=no_family)
    return {"age": age, "gender": gender, "household": household, "facts": facts,
            "capability": _capability(rng, age)}


def generate(seed: int = 1, size: str = "small", day: date | None = None,
             service_area_id: str = AREA) -> District:
    """The district for ``day`` (local date of the simulated day)."""
    spec = SIZES[size]
    rng = random.Random(f"district-{seed}-{size}")
    day = day or date(2026, 11, 23)
    rules = load_rule_book()
    month_start = day.replace(day=1)

    stations: list[Station] = []
    names = iter(rng.sample(VILLAGE_NAMES, len(VILLAGE_NAMES)) * 10)
    for s in range(spec.stations):
        lat, lon = CENTRE if s == 0 else _offset(rng, *CENTRE, 1.5, 6.0)
        station = Station(f"S-{s + 1}", "佛堂镇居家养老服务中心" if s == 0
                          else f"{next(names)}村居家养老服务站", lat, lon)
        for v in range(spec.villages_per_station):
            vlat, vlon = (lat, lon) if v == 0 else _offset(rng, lat, lon, 0.6, 2.0)
            station.villages.append({"name": f"{next(names)}村" if v else "镇区社区",
                                     "lat": vlat, "lon": vlon})
        stations.append(station)

    # The centre's clients: every entitled elder met, and 1 in 9 of the others.
    elders: list[ElderRecord] = []
    counts = {"high": 0, "low": 0, "none": 0}
    population = 0
    while len(elders) < spec.clients:
        person = _population_elder(rng, day)
        population += 1
        ent = rules.entitlement(person["facts"], month_start)
        counts[ent.category] += 1
        if ent.category == "none" and rng.random() >= 1 / 9:
            continue
        n = len(elders) + 1
        station = rng.choice(stations)
        village = rng.choice(station.villages)
        lat, lon = _offset(rng, village["lat"], village["lon"], 0.02, 0.25)
        elders.append(ElderRecord(
            elder_id=f"E-{n:05d}", name=_person(rng, person["gender"]),
            gender=person["gender"], birth_date=person["facts"].birth_date, lat=lat, lon=lon,
            address=f"佛堂镇 {village['name']} {rng.randint(1, 120)}号",
            confirmation_code=f"{rng.randint(0, 9999):04d}",
            capability_level=person["capability"], household=person["household"],
            facts=person["facts"].to_json(), category=ent.category,
            entitled_minutes=ent.minutes,
            family_phone="" if person["facts"].no_spouse_no_children
            else f"138{rng.randint(0, 99_999_999):08d}",
            # Elders without an entitlement pay themselves (自费); some entitled ones top up.
            out_of_pocket_agreed=ent.category == "none" or rng.random() < 0.4))
    shares = {k: round(v / population, 4) for k, v in counts.items()}

    caregivers: list[CaregiverRecord] = []
    providers = PROVIDERS[:spec.providers]
    for i in range(spec.caregivers):
        gender = "female" if rng.random() < 0.85 else "male"
        nurse = i % 4 == 3
        skills = list(NURSE_SKILLS if nurse else CARER_SKILLS)
        if not nurse and rng.random() < 0.3:
            skills.remove(rng.choice(["bathing", "mobility"]))
        station = stations[i % len(stations)]
        expires = day + timedelta(days=rng.randint(10, 25) if rng.random() < 0.08
                                  else rng.randint(120, 900))
        start, end = SHIFTS[i % len(SHIFTS)]
        caregivers.append(CaregiverRecord(
            caregiver_id=f"C-{i + 1:04d}", name=_person(rng, gender, old=False), kind="employee",
            gender=gender, skills=skills, provider_id=providers[i % len(providers)][0],
            certificate_expires=expires, certificate_level=rng.choice([1, 2, 2, 3]),
            shift_start=start, shift_end=end, station_lat=station.lat, station_lon=station.lon,
            travel_mode="car" if nurse and rng.random() < 0.5 else "ebike"))
    for i in range(spec.volunteers):
        gender = "female" if rng.random() < 0.7 else "male"
        station = stations[i % len(stations)]
        start, end = ("08:30", "12:00") if i % 2 == 0 else ("13:30", "17:30")
        caregivers.append(CaregiverRecord(
            caregiver_id=f"V-{i + 1:04d}", name=_person(rng, gender, old=False) + "（志愿者）",
            kind="volunteer", gender=gender, skills=["meal"], provider_id=None,
            certificate_expires=None, certificate_level=0, shift_start=start, shift_end=end,
            station_lat=station.lat, station_lon=station.lon, travel_mode="bicycle",
            birth_date=date(day.year - rng.randint(22, 68), rng.randint(1, 12), 15)))

    care_plans, orders, noise = plan_demand(rng, seed, day, elders, caregivers,
                                            spec.emergencies)
    return District(seed=seed, size=size, day=day, service_area_id=service_area_id,
                    centre=CENTRE, stations=stations, elders=elders, caregivers=caregivers,
                    care_plans=care_plans, orders=orders, noise=noise,
                    population_shares=shares,
                    month_so_far=month_so_far(rng, day, elders),
                    credit_gifts=time_credit_family(seed, day, elders, caregivers, orders,
                                                    set(noise.not_home_visits)))


def month_so_far(rng: random.Random, day: date, elders: list[ElderRecord]
                 ) -> list[dict[str, Any]]:
    """Hours entitled elders used earlier in the month: 30-110 % of the entitlement prorated
    to the days gone (some have used it all), as 60-minute cleaning visits."""
    if day.day == 1:
        return []
    gone = (day.day - 1) / 30
    out = []
    for e in elders:
        if not e.entitled_minutes:
            continue
        used = e.entitled_minutes * min(1.0, gone * rng.uniform(0.6, 2.2))
        for n in range(int(used // 60)):
            out.append({"elder_id": e.elder_id, "service_type": "cleaning", "minutes": 60,
                        "day": (day.replace(day=1) + timedelta(
                            days=rng.randrange(day.day - 1))).isoformat(), "n": n})
    return sorted(out, key=lambda v: (v["day"], v["elder_id"], v["n"]))


def plan_demand(rng: random.Random, seed: int, day: date, elders: list[ElderRecord],
                caregivers: list[CaregiverRecord], emergencies: int = 1,
                ) -> tuple[list[CarePlanRecord], list[OrderRecord], Noise]:
    """Care plans, the day's orders and the day's noise for these elders and caregivers (also
    used for imported districts)."""
    pair_volunteers(elders, caregivers)
    # Care plans within the entitlement: weekly or fortnightly visits on the elder's weekdays.
    care_plans: list[CarePlanRecord] = []
    for e in elders:
        if e.entitled_minutes == 0:
            continue
        service, minutes = PLAN_ITEMS[0] if e.capability_level < 2 else rng.choice(PLAN_ITEMS)
        every = 1 if e.entitled_minutes >= 480 and minutes <= 60 else 2
        weekday = rng.randrange(6)
        morning = rng.random() < 0.6
        care_plans.append(CarePlanRecord(
            care_plan_id=f"CP-{e.elder_id}", elder_id=e.elder_id, items=[{
                "service_type": service, "weekdays": [weekday], "every_weeks": every,
                "window_start": "08:30" if morning else "13:30",
                "window_end": "11:30" if morning else "17:00"}],
            monthly_minutes=e.entitled_minutes))

    orders: list[OrderRecord] = []
    for e in elders:
        if rng.random() < 0.33:
            service = _weighted(rng, HOTLINE_MIX)
            morning = rng.random() < 0.55
            orders.append(OrderRecord(
                order_id=f"O-{day:%m%d}-{e.elder_id}", elder_id=e.elder_id,
                service_type=service, window_start="08:30" if morning else "13:00",
                window_end="11:30" if morning else "17:00",
                out_of_pocket_agreed=e.out_of_pocket_agreed))
        if e.household == "alone" and rng.random() < 0.5:
            orders.append(OrderRecord(order_id=f"W-{day:%m%d}-{e.elder_id}",
                                      elder_id=e.elder_id, service_type="welfare_check",
                                      window_start="09:00", window_end="17:00",
                                      source="dispatcher"))
    for k in range(emergencies):
        e = rng.choice(elders)
        orders.append(OrderRecord(order_id=f"SOS-{day:%m%d}-{k + 1}", elder_id=e.elder_id,
                                  service_type="emergency", emergency=True,
                                  at=["10:20", "14:40"][k % 2], source="wearable_sos"))

    employees = [c.caregiver_id for c in caregivers if c.kind == "employee"]
    home = [f"V-{o.order_id}" for o in orders
            if not o.emergency and o.service_type != "welfare_check"]
    welfare = [f"V-{o.order_id}" for o in orders if o.service_type == "welfare_check"]
    not_home = rng.sample(home, min(1, len(home)))
    if welfare:
        not_home.append(rng.choice(welfare))
    noise = Noise(seed=seed, not_home_visits=sorted(not_home),
                  sick_caregiver=employees[-1] if len(employees) >= 3 else None,
                  offline_caregiver=employees[0] if employees else None)
    return care_plans, orders, noise


def pair_volunteers(elders: list[ElderRecord], caregivers: list[CaregiverRecord]) -> None:
    """Each elder living alone gets the nearest volunteer as a pair (no randomness)."""
    volunteers = [c for c in caregivers if c.kind == "volunteer"]
    if not volunteers:
        return
    for e in elders:
        if e.household == "alone" and not e.preferred_caregiver_ids:
            nearest = min(volunteers, key=lambda v: (v.station_lat - e.lat) ** 2
                          + (v.station_lon - e.lon) ** 2)
            e.preferred_caregiver_ids = [nearest.caregiver_id]


def time_credit_family(seed: int, day: date, elders: list[ElderRecord],
                       caregivers: list[CaregiverRecord], orders: list[OrderRecord],
                       not_home: set[str] | None = None) -> list[dict[str, Any]]:
    """One volunteer's parent (an elder without entitlement who ordered care today) pays with
    credits: the volunteer earns them with welfare checks earlier in the month (added to the
    month so far by the caller) and gives them to the parent, whose order uses them."""
    rng = random.Random(f"credits-{seed}")
    volunteers = [c for c in caregivers if c.kind == "volunteer"]
    by_id = {e.elder_id: e for e in elders}
    candidates = [o for o in orders if o.source == "hotline" and not o.emergency
                  and o.service_type in PAID_CARE
                  and by_id[o.elder_id].entitled_minutes == 0
                  and f"V-{o.order_id}" not in (not_home or set())]
    if not volunteers or not candidates or day.day < 3:
        return []
    order = rng.choice(candidates)
    order.use_time_credits = True
    volunteer = rng.choice(volunteers)
    return [{"from": volunteer.caregiver_id, "to": order.elder_id, "minutes": 90,
             "earned_by": [{"elder_id": e.elder_id, "day": (day - timedelta(days=1 + k % 2))
                            .isoformat(), "minutes": 45, "n": k}
                           for k, e in enumerate(rng.sample(elders, min(3, len(elders))))]}]
