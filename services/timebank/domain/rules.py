"""The time bank's rules (时间银行规则): multipliers, caps, redemption age, gifts, federation.

Rules are plain values, versioned by effective date, so a scheme can change a multiplier from
a given day without rewriting what was earned before. Minutes are integers; multipliers are kept
in permille (1000 = one minute of credit per minute served).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta


class RuleError(ValueError):
    """A time-bank rule forbids the operation; nothing was changed."""


@dataclass(frozen=True)
class MultiplierRule:
    """From ``effective_from`` on, ``service_type`` (None = any other) earns ``permille``."""

    version: str
    effective_from: date
    permille: int
    service_type: str | None = None

    def __post_init__(self) -> None:
        if self.permille <= 0:
            raise ValueError("a multiplier must be positive")


@dataclass(frozen=True)
class MultiplierSchedule:
    rules: tuple[MultiplierRule, ...] = (
        MultiplierRule("default-2020", date(2020, 1, 1), 1000),
    )

    def rule_for(self, service_type: str, on: date) -> MultiplierRule:
        """The newest rule in force on ``on`` for the service type; a rule naming the service type
        beats the catch-all even when the catch-all is newer."""
        in_force = [r for r in self.rules if r.effective_from <= on]
        specific = [r for r in in_force if r.service_type == service_type]
        general = [r for r in in_force if r.service_type is None]
        candidates = specific or general
        if not candidates:
            return MultiplierRule("none", on, 1000)
        return max(candidates, key=lambda r: (r.effective_from, r.version))

    def with_rule(self, rule: MultiplierRule) -> MultiplierSchedule:
        return MultiplierSchedule((*self.rules, rule))


@dataclass(frozen=True)
class EarningCaps:
    """Caps on earning. ``balance_cap`` follows Nanjing (1,500 hours); what would go above it is
    donated to the bank's community fund (or, if not, simply not credited)."""

    per_day_minutes: int | None = 8 * 60
    balance_cap_minutes: int | None = 1500 * 60
    excess_to_community_fund: bool = True


@dataclass(frozen=True)
class EarningAssessment:
    credited: int  # into the volunteer's account
    donated: int  # above the balance cap, into the community fund
    not_credited: int  # above the daily cap (or cap without donation): recorded, not credited
    reason: str


def assess_earning(served_minutes: int, permille: int, earned_today: int, balance: int,
                   caps: EarningCaps) -> EarningAssessment:
    """Split the credit for one verified visit between the volunteer, the community fund and
    nothing, applying the daily cap first and then the balance cap."""
    if served_minutes < 0 or permille <= 0:
        raise ValueError("served minutes must be >= 0 and the multiplier positive")
    credit = served_minutes * permille // 1000
    reasons: list[str] = []
    not_credited = 0
    if caps.per_day_minutes is not None:
        room_today = max(0, caps.per_day_minutes - earned_today)
        if credit > room_today:
            not_credited = credit - room_today
            credit = room_today
            reasons.append(f"daily cap {caps.per_day_minutes} min")
    donated = 0
    if caps.balance_cap_minutes is not None:
        room = max(0, caps.balance_cap_minutes - balance)
        if credit > room:
            excess = credit - room
            credit = room
            if caps.excess_to_community_fund:
                donated = excess
                reasons.append(f"balance cap {caps.balance_cap_minutes} min: excess donated")
            else:
                not_credited += excess
                reasons.append(f"balance cap {caps.balance_cap_minutes} min")
    return EarningAssessment(credit, donated, not_credited, "; ".join(reasons) or "ok")


CONFIRMED = frozenset({"elder_code", "family_proxy"})


def confirmation_refusal(confirmation: str) -> str | None:
    """Credits are earned only when the visit was confirmed by the elder's code or a family
    proxy; the reason in words otherwise."""
    if confirmation in CONFIRMED:
        return None
    return f"visit not confirmed by the elder or family (confirmation={confirmation})"


@dataclass(frozen=True)
class RedemptionAge:
    """Who may redeem credits for their own care (e.g. from 65; from 60 in hardship)."""

    min_age: int = 65
    hardship_min_age: int = 60

    def refusal(self, birth_date: date | None, hardship: bool, on: date) -> str | None:
        if birth_date is None:
            return "birth date unknown: age rule cannot be checked"
        age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
        needed = self.hardship_min_age if hardship else self.min_age
        if age < needed:
            return f"redemption from age {needed}; the beneficiary is {age}"
        return None


@dataclass(frozen=True)
class GiftLimits:
    max_per_gift_minutes: int = 20 * 60
    max_per_month_minutes: int = 40 * 60


@dataclass(frozen=True)
class TimebankRules:
    multipliers: MultiplierSchedule = field(default_factory=MultiplierSchedule)
    caps: EarningCaps = field(default_factory=EarningCaps)
    redemption_age: RedemptionAge = field(default_factory=RedemptionAge)
    gifts: GiftLimits = field(default_factory=GiftLimits)
    hold_expiry: timedelta = timedelta(days=14)
    # Federation: service area -> bank (one bank per district); unknown areas are their own bank.
    banks_by_area: dict[str, str] = field(default_factory=dict)
    # Most credits one bank may owe another before clearing (bilateral position limit).
    bilateral_limit_minutes: int = 600 * 60
    default_bank_id: str = "default"

    def bank_of_area(self, service_area_id: str) -> str:
        return self.banks_by_area.get(service_area_id, service_area_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TimebankRules:
        """Rules from ``TIMEBANK_*`` settings (the rest keep their defaults):
        ``TIMEBANK_BANKS`` (``area=bank,area=bank``), ``TIMEBANK_DAY_CAP_MINUTES``,
        ``TIMEBANK_BALANCE_CAP_MINUTES`` (empty: no cap), ``TIMEBANK_EXCESS_TO_COMMUNITY_FUND``,
        ``TIMEBANK_REDEMPTION_AGE`` / ``_HARDSHIP_AGE``, ``TIMEBANK_BILATERAL_LIMIT_MINUTES``,
        ``TIMEBANK_HOLD_EXPIRY_HOURS``."""
        rules = cls()

        def number(name: str, default: int | None) -> int | None:
            raw = environ.get(f"TIMEBANK_{name}")
            if raw is None:
                return default
            return int(raw) if raw.strip() else None

        banks = dict(pair.split("=", 1) for pair in
                     environ.get("TIMEBANK_BANKS", "").replace(" ", "").split(",") if pair)
        caps = EarningCaps(
            per_day_minutes=number("DAY_CAP_MINUTES", rules.caps.per_day_minutes),
            balance_cap_minutes=number("BALANCE_CAP_MINUTES", rules.caps.balance_cap_minutes),
            excess_to_community_fund=environ.get("TIMEBANK_EXCESS_TO_COMMUNITY_FUND", "1")
            .strip().lower() not in {"0", "false", "no", "off"})
        age = RedemptionAge(
            number("REDEMPTION_AGE", rules.redemption_age.min_age) or 0,
            number("REDEMPTION_HARDSHIP_AGE", rules.redemption_age.hardship_min_age) or 0)
        expiry = number("HOLD_EXPIRY_HOURS", None)
        return replace(
            rules, caps=caps, redemption_age=age, banks_by_area=banks,
            bilateral_limit_minutes=number("BILATERAL_LIMIT_MINUTES",
                                           rules.bilateral_limit_minutes) or 0,
            hold_expiry=timedelta(hours=expiry) if expiry else rules.hold_expiry)


# A Nanjing-like scheme: body care (bathing, dressing, rehabilitation) earns double from 2024.
BODY_CARE = ("bathing", "dressing", "rehabilitation_nursing")
NANJING_LIKE = MultiplierSchedule((
    MultiplierRule("default-2020", date(2020, 1, 1), 1000),
    *(MultiplierRule("body-care-2024", date(2024, 1, 1), 2000, s) for s in BODY_CARE),
))
