"""Pure funding-order rules: taking minutes source by source, splitting actual minutes."""

from contracts.values import FundingSource
from services.ledger.domain.reservations import Source, split_actual, take_in_order


def test_take_in_order_uses_each_source_up_to_what_it_has_then_the_next():
    """Entitlement first, then the package; out of pocket (unlimited) only for the rest."""
    sources = [Source(FundingSource.ENTITLEMENT, "ent", 30),
               Source(FundingSource.FAMILY_PACKAGE, "pkg", 20),
               Source(FundingSource.OUT_OF_POCKET, "oop", None)]
    taken = [(s.source, m) for s, m in take_in_order(90, sources)]
    assert taken == [(FundingSource.ENTITLEMENT, 30), (FundingSource.FAMILY_PACKAGE, 20),
                     (FundingSource.OUT_OF_POCKET, 40)]


def test_take_in_order_skips_empty_and_negative_sources_and_stops_when_covered():
    """A source with nothing (or a negative figure) gives nothing; later sources are not asked."""
    sources = [Source(FundingSource.ENTITLEMENT, "ent", 0),
               Source(FundingSource.FAMILY_PACKAGE, "pkg", -5),
               Source(FundingSource.FAMILY_PACKAGE, "pkg2", 60),
               Source(FundingSource.OUT_OF_POCKET, "oop", None)]
    assert [(s.account, m) for s, m in take_in_order(45, sources)] == [("pkg2", 45)]


def test_split_actual_pays_in_funding_order_never_more_than_held():
    """Fewer actual minutes than held are taken from entitlement first; more are left over."""
    legs = [{"source": "out_of_pocket", "minutes": 10}, {"source": "entitlement", "minutes": 30},
            {"source": "time_credits", "minutes": 20}]
    assert split_actual(40, legs) == [0, 30, 10]
    assert split_actual(75, legs) == [10, 30, 20]  # 15 minutes beyond every hold
