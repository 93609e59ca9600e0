"""Monthly subsidised labor-hours (工时) an elder is entitled to, from the facts and a rule set.

Rules are versioned data with a region and an effective date (a `RuleBook` holds the versions of
one region; the Yiwu rules of DOMAIN.md ship as the default in services/ledger/rules/yiwu.json).
An elder who qualifies several ways gets the highest entitlement once, never the sum
(就高、不重复); it does not stack with an existing nursing subsidy either (the higher applies)
unless the elder chooses the home-care hours. The reason is kept with every result.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, Literal

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"


@dataclass(frozen=True)
class ElderFacts:
    birth_date: date
    local_registration: bool = True  # local household registration (户籍)
    lives_locally: bool = True
    dibao: bool = False  # minimum-living-guarantee family (低保)
    dibao_margin: bool = False  # on its margin (低保边缘)
    disability_qualifies: bool = False  # disability reaches the required grade
    children_cannot_support: bool = False
    no_spouse_no_children: bool = False  # 孤寡
    # An existing nursing subsidy, as minutes of care a month it is worth (0: none).
    nursing_subsidy_minutes: int = 0
    # The elder may choose the home-care hours over a higher nursing subsidy.
    prefers_home_care_hours: bool = False

    def age_on(self, day: date) -> int:
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - before_birthday

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["birth_date"] = self.birth_date.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ElderFacts:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        birth = values["birth_date"]
        values["birth_date"] = birth if isinstance(birth, date) else date.fromisoformat(birth)
        return cls(**values)


# "erased": the elder's facts were erased on request; the category is no longer known.
Category = Literal["high", "low", "none", "erased"]


@dataclass(frozen=True)
class Entitlement:
    minutes: int
    reason: str
    rule_set: str
    category: Category = "none"


@dataclass(frozen=True)
class EntitlementRuleSet:
    """One version of a region's rules; amounts in minutes a month."""

    region: str
    version: str
    effective_from: date
    minimum_age: int = 65
    high_minutes: int = 8 * 60
    low_minutes: int = 4 * 60
    high_age: int = 100
    low_age: int = 90
    unsupported_age: int = 70
    stack_with_nursing_subsidy: bool = False
    unused_entitlement: Literal["lapse", "carry_over"] = "lapse"

    @property
    def name(self) -> str:
        return f"{self.region}/{self.version}"

    def entitlement(self, facts: ElderFacts, month_start: date) -> Entitlement:
        found = self._by_category(facts, month_start)
        subsidy = facts.nursing_subsidy_minutes
        if found.minutes and subsidy and not self.stack_with_nursing_subsidy:
            if subsidy >= found.minutes and not facts.prefers_home_care_hours:
                return Entitlement(0, f"{found.reason}; the nursing subsidy ({subsidy} min) is "
                                      "higher and does not stack (the higher applies)",
                                   self.name, "none")
            if subsidy >= found.minutes:
                return Entitlement(found.minutes, f"{found.reason}; the elder chose the home-care "
                                                  "hours over the nursing subsidy",
                                   self.name, found.category)
        return found

    def _by_category(self, facts: ElderFacts, month_start: date) -> Entitlement:
        age = facts.age_on(month_start)
        if not (facts.local_registration and facts.lives_locally):
            return Entitlement(0, "no local household registration or not living locally",
                               self.name)
        if age < self.minimum_age:
            return Entitlement(0, f"aged {age}, under {self.minimum_age}", self.name)
        high: list[str] = []
        if (facts.dibao or facts.dibao_margin) and facts.disability_qualifies:
            high.append("低保 or 低保边缘 family with qualifying disability")
        if age >= self.high_age:
            high.append(f"aged {age} (≥{self.high_age})")
        if high:
            return Entitlement(self.high_minutes, "; ".join(high), self.name, "high")
        low: list[str] = []
        if age >= self.unsupported_age and facts.children_cannot_support:
            low.append(f"aged {age} (≥{self.unsupported_age}), children cannot support")
        if facts.no_spouse_no_children:
            low.append("no spouse and no children (孤寡)")
        if age >= self.low_age:
            low.append(f"aged {age} (≥{self.low_age})")
        if low:
            return Entitlement(self.low_minutes, "; ".join(low), self.name, "low")
        return Entitlement(0, "no entitlement category applies", self.name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["effective_from"] = self.effective_from.isoformat()
        data.pop("region")
        return data

    @classmethod
    def from_json(cls, region: str, data: dict[str, Any]) -> EntitlementRuleSet:
        known = {f.name for f in fields(cls)} - {"region"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["effective_from"] = date.fromisoformat(str(values["effective_from"]))
        return cls(region=region, **values)


@dataclass(frozen=True)
class RuleBook:
    """All versions of one region's rules; the version in force on a day is the latest one whose
    effective date is not after that day."""

    region: str
    versions: tuple[EntitlementRuleSet, ...]
    rates_fen_per_hour: dict[str, int] = field(default_factory=dict)
    hold_ttl_hours: int = 72

    def in_force(self, day: date) -> EntitlementRuleSet:
        candidates = [v for v in self.versions if v.effective_from <= day]
        if not candidates:
            raise LookupError(f"no {self.region} rules in force on {day}")
        return max(candidates, key=lambda v: v.effective_from)

    def entitlement(self, facts: ElderFacts, month_start: date) -> Entitlement:
        return self.in_force(month_start).entitlement(facts, month_start)

    def with_version(self, version: EntitlementRuleSet) -> RuleBook:
        if any(v.version == version.version for v in self.versions):
            raise ValueError(f"{self.region} already has a rule version {version.version!r}")
        if any(v.effective_from == version.effective_from for v in self.versions):
            raise ValueError(f"a {self.region} rule version already takes effect on "
                             f"{version.effective_from}")
        return RuleBook(self.region, (*self.versions, version), self.rates_fen_per_hour,
                        self.hold_ttl_hours)

    def rate_fen_per_hour(self, service_type: str) -> int:
        return self.rates_fen_per_hour.get(service_type, self.rates_fen_per_hour.get("default", 0))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleBook:
        region = data["region"]
        versions = tuple(EntitlementRuleSet.from_json(region, v) for v in data["versions"])
        rates = {k: int(v) for k, v in data.get("rates_fen_per_hour", {}).items()}
        return cls(region, versions, rates, int(data.get("hold_ttl_hours", 72)))

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "versions": [v.to_json() for v in self.versions],
                "rates_fen_per_hour": dict(self.rates_fen_per_hour),
                "hold_ttl_hours": self.hold_ttl_hours}


def load_rule_book(path: Path | str | None = None, region: str = "yiwu") -> RuleBook:
    path = Path(path) if path else RULES_DIR / f"{region}.json"
    return RuleBook.from_json(json.loads(path.read_text(encoding="utf-8")))


YIWU_2019 = EntitlementRuleSet(region="yiwu", version="2019", effective_from=date(2019, 1, 1))
