"""Entitlement rules as versioned data: the file, versions by effective date, subsidy stacking."""

from datetime import date

import pytest

from services.ledger.domain.entitlement import ElderFacts, EntitlementRuleSet, load_rule_book


def test_shipped_yiwu_file_loads_with_rates():
    """The default rule file is the Yiwu 2019 rule set, with contracted rates per service."""
    book = load_rule_book()
    rule = book.in_force(date(2026, 11, 1))
    assert (rule.name, rule.high_minutes, rule.low_minutes) == ("yiwu/2019", 480, 240)
    assert book.rate_fen_per_hour("bathing") == 4500
    assert book.rate_fen_per_hour("companionship") == book.rates_fen_per_hour["default"]


def test_the_version_in_force_is_the_latest_effective_one():
    """A 6-hour version from 2027 applies from its date on, and not a day before."""
    book = load_rule_book()
    newer = EntitlementRuleSet.from_json("yiwu", {"version": "2027", "effective_from":
                                                  "2027-01-01", "low_minutes": 360})
    book = book.with_version(newer)
    facts = ElderFacts(birth_date=date(1930, 1, 1))
    assert book.entitlement(facts, date(2026, 12, 1)).minutes == 240
    assert book.entitlement(facts, date(2027, 1, 1)).minutes == 360
    assert book.entitlement(facts, date(2027, 1, 1)).rule_set == "yiwu/2027"


def test_a_version_cannot_be_added_twice_or_with_unknown_fields():
    """Versions are unique by name and by date; a typo in a rule field is refused."""
    book = load_rule_book()
    with pytest.raises(ValueError, match="already has"):
        book.with_version(EntitlementRuleSet.from_json("yiwu", {"version": "2019",
                                                                "effective_from": "2030-01-01"}))
    with pytest.raises(ValueError, match="unknown rule fields: hgih_minutes"):
        EntitlementRuleSet.from_json("yiwu", {"version": "x", "effective_from": "2030-01-01",
                                              "hgih_minutes": 1})


def test_a_higher_nursing_subsidy_replaces_the_hours_unless_the_elder_chooses_them():
    """不重复: with a nursing subsidy worth more, no hours — unless the elder prefers the hours."""
    rule = load_rule_book().in_force(date(2026, 11, 1))
    facts = ElderFacts(birth_date=date(1930, 1, 1), nursing_subsidy_minutes=300)
    assert rule.entitlement(facts, date(2026, 11, 1)).minutes == 0
    chosen = ElderFacts(birth_date=date(1930, 1, 1), nursing_subsidy_minutes=300,
                        prefers_home_care_hours=True)
    result = rule.entitlement(chosen, date(2026, 11, 1))
    assert result.minutes == 240 and "chose" in result.reason
    lower = ElderFacts(birth_date=date(1930, 1, 1), nursing_subsidy_minutes=100)
    assert rule.entitlement(lower, date(2026, 11, 1)).minutes == 240
