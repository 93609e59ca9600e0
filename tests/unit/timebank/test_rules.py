"""The time bank's rules as pure functions: multipliers by date, caps, confirmation, age."""

from datetime import date

import pytest

from services.timebank.domain.rules import (
    NANJING_LIKE,
    EarningCaps,
    MultiplierRule,
    MultiplierSchedule,
    RedemptionAge,
    assess_earning,
    confirmation_refusal,
)


def test_multiplier_follows_the_rule_in_force_on_the_day():
    """A new version of a rule applies from its effective date, never to earlier service."""
    schedule = MultiplierSchedule((
        MultiplierRule("v1", date(2024, 1, 1), 1000),
        MultiplierRule("v2", date(2026, 7, 1), 1500),
    ))
    assert schedule.rule_for("cleaning", date(2026, 6, 30)).version == "v1"
    assert schedule.rule_for("cleaning", date(2026, 7, 1)).permille == 1500


def test_service_specific_rule_beats_the_newer_catch_all():
    """Body care pays double under the Nanjing-like scheme even after a newer default rule."""
    schedule = NANJING_LIKE.with_rule(MultiplierRule("default-2025", date(2025, 1, 1), 1000))
    assert schedule.rule_for("bathing", date(2026, 1, 1)).permille == 2000
    assert schedule.rule_for("cleaning", date(2026, 1, 1)).version == "default-2025"
    assert schedule.rule_for("bathing", date(2023, 12, 31)).permille == 1000


def test_daily_cap_limits_credit_and_records_the_rest():
    """Above the day's cap, minutes are recorded as not credited, with the reason."""
    a = assess_earning(120, 1000, earned_today=400, balance=0,
                       caps=EarningCaps(per_day_minutes=480, balance_cap_minutes=None))
    assert (a.credited, a.donated, a.not_credited) == (80, 0, 40)
    assert "daily cap" in a.reason


def test_balance_cap_donates_the_excess_to_the_community_fund():
    """Nanjing's 1,500-hour balance cap: what would go above it goes to the community fund."""
    cap = 1500 * 60
    a = assess_earning(60, 2000, earned_today=0, balance=cap - 30, caps=EarningCaps())
    assert (a.credited, a.donated, a.not_credited) == (30, 90, 0)
    off = assess_earning(60, 1000, 0, cap, EarningCaps(excess_to_community_fund=False))
    assert (off.credited, off.donated, off.not_credited) == (0, 0, 60)


def test_multiplier_rounds_down_in_whole_minutes():
    """Credits are integers: 1.5 x 25 minutes is 37, never 37.5."""
    a = assess_earning(25, 1500, 0, 0, EarningCaps(None, None))
    assert a.credited == 37


@pytest.mark.parametrize("method,ok", [("elder_code", True), ("family_proxy", True),
                                       ("signature", False), ("none", False)])
def test_only_elder_code_or_family_proxy_confirms(method, ok):
    """Credit needs both sides: the elder's code or a family proxy confirmed the visit."""
    assert (confirmation_refusal(method) is None) is ok


def test_redemption_age_gate_with_hardship_exception():
    """From 65 by default; from 60 in hardship; an unknown birth date is refused."""
    rule = RedemptionAge()
    on = date(2026, 11, 24)
    assert rule.refusal(date(1961, 11, 24), False, on) is None  # 65 today
    assert "65" in rule.refusal(date(1961, 11, 25), False, on)
    assert rule.refusal(date(1966, 1, 1), True, on) is None  # 60 in hardship
    assert rule.refusal(None, False, on) is not None


def test_rules_from_the_environment():
    """Deployments set caps, the age gate, banks per district and limits without code."""
    from datetime import timedelta

    from services.timebank.domain.rules import TimebankRules

    rules = TimebankRules.from_env({
        "TIMEBANK_BANKS": "yiwu-choucheng=choucheng, yiwu-beiyuan=beiyuan",
        "TIMEBANK_BALANCE_CAP_MINUTES": "", "TIMEBANK_DAY_CAP_MINUTES": "240",
        "TIMEBANK_EXCESS_TO_COMMUNITY_FUND": "no", "TIMEBANK_REDEMPTION_AGE": "70",
        "TIMEBANK_BILATERAL_LIMIT_MINUTES": "600", "TIMEBANK_HOLD_EXPIRY_HOURS": "48"})
    assert rules.bank_of_area("yiwu-beiyuan") == "beiyuan"
    assert rules.bank_of_area("jinhua") == "jinhua"
    assert (rules.caps.per_day_minutes, rules.caps.balance_cap_minutes) == (240, None)
    assert not rules.caps.excess_to_community_fund
    assert (rules.redemption_age.min_age, rules.redemption_age.hardship_min_age) == (70, 60)
    assert rules.bilateral_limit_minutes == 600 and rules.hold_expiry == timedelta(hours=48)
    assert TimebankRules.from_env({}) == TimebankRules()
