"""The Yiwu entitlement rule: highest single category, never the sum, with the reason kept."""

from datetime import date

import pytest

from services.ledger.domain.entitlement import YIWU_2019, ElderFacts

NOV = date(2026, 11, 1)


@pytest.mark.parametrize(
    ("facts", "minutes", "reason_part"),
    [
        (ElderFacts(birth_date=date(1926, 10, 1)), 480, "aged 100"),
        (ElderFacts(birth_date=date(1950, 1, 1), dibao=True, disability_qualifies=True), 480,
         "低保"),
        (ElderFacts(birth_date=date(1950, 1, 1), dibao_margin=True, disability_qualifies=True),
         480, "低保"),
        (ElderFacts(birth_date=date(1935, 1, 1)), 240, "aged 91"),
        (ElderFacts(birth_date=date(1955, 1, 1), no_spouse_no_children=True), 240, "孤寡"),
        (ElderFacts(birth_date=date(1955, 1, 1), children_cannot_support=True), 240,
         "children cannot support"),
        (ElderFacts(birth_date=date(1959, 1, 1), children_cannot_support=True), 0,
         "no entitlement"),
        (ElderFacts(birth_date=date(1950, 1, 1), dibao=True), 0, "no entitlement"),
        (ElderFacts(birth_date=date(1965, 1, 1), no_spouse_no_children=True), 0, "under 65"),
        (ElderFacts(birth_date=date(1930, 1, 1), local_registration=False), 0, "registration"),
    ],
)
def test_category_gives_its_monthly_minutes(facts, minutes, reason_part):
    """Each category of DOMAIN.md yields its 8 h / 4 h / 0 entitlement and says why."""
    result = YIWU_2019.entitlement(facts, NOV)
    assert result.minutes == minutes
    assert reason_part in result.reason
    assert result.rule_set == "yiwu/2019"


def test_several_categories_give_the_highest_once_not_the_sum():
    """就高、不重复: aged 100, 孤寡 and 低保 with disability still gives 8 h, not 16 or 20."""
    facts = ElderFacts(birth_date=date(1925, 1, 1), no_spouse_no_children=True, dibao=True,
                       disability_qualifies=True)
    assert YIWU_2019.entitlement(facts, NOV).minutes == 480


def test_age_is_taken_on_the_first_of_the_month():
    """An elder turning 90 during the month qualifies from the next month on."""
    facts = ElderFacts(birth_date=date(1936, 11, 15))
    assert YIWU_2019.entitlement(facts, date(2026, 11, 1)).minutes == 0
    assert YIWU_2019.entitlement(facts, date(2026, 12, 1)).minutes == 240
