"""Monthly subsidised labor-hours (工时) an elder is entitled to, from the facts and a rule set.

The Yiwu rules of DOMAIN.md are the shipped default. A rule set is data with a region and an
effective date; an elder who qualifies several ways gets the highest entitlement once, never the
sum (就高、不重复), and the reason is kept with the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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

    def age_on(self, day: date) -> int:
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - before_birthday


@dataclass(frozen=True)
class Entitlement:
    minutes: int
    reason: str
    rule_set: str


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

    @property
    def name(self) -> str:
        return f"{self.region}/{self.version}"

    def entitlement(self, facts: ElderFacts, month_start: date) -> Entitlement:
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
            return Entitlement(self.high_minutes, "; ".join(high), self.name)
        low: list[str] = []
        if age >= self.unsupported_age and facts.children_cannot_support:
            low.append(f"aged {age} (≥{self.unsupported_age}), children cannot support")
        if facts.no_spouse_no_children:
            low.append("no spouse and no children (孤寡)")
        if age >= self.low_age:
            low.append(f"aged {age} (≥{self.low_age})")
        if low:
            return Entitlement(self.low_minutes, "; ".join(low), self.name)
        return Entitlement(0, "no entitlement category applies", self.name)


YIWU_2019 = EntitlementRuleSet(region="yiwu", version="2019", effective_from=date(2019, 1, 1))
