"""Who may call which ledger endpoint: the ledger's whole policy in one place (issue #8).

The administrator may call everything (implicit in `allow`). Civil-affairs operations (elder
facts, family packages, rule versions, provider blacklist, expiring holds) are the
administrator's alone. Finance settles the months of its own service areas and reads the books;
a dispatcher reads the ledger of the elders and visits of their own areas (and the month's
figures the dispatch dashboard shows); an elder or family proxy reads their own entitlement,
balance and history; the auditor reads everything and writes nothing. Caregivers and
volunteers have nothing here.

Ownership is looked up in the ledger's own records (`area_of_elder`, `area_of_visit`): a record
the ledger does not know belongs to no one, so scoped roles get 403 and the administrator and
auditor the endpoint's own 404.
"""

from __future__ import annotations

from typing import Any

from services.ledger.application import LedgerApplication
from services.runtime.access import (
    RequestFacts,
    allow,
    anyone,
    in_own_areas,
    is_own_elder,
    own,
    path,
    query,
)

OWN_AREAS = "own service areas"


class LedgerAccess:
    """The `allow` dependency of each kind of ledger endpoint, its ownership checks bound to
    the application whose records they read."""

    def __init__(self, app: LedgerApplication) -> None:
        def elder_area(f: RequestFacts) -> str | None:
            return app.area_of_elder(f.path["elder_id"])

        def visit_area(f: RequestFacts) -> str | None:
            return app.area_of_visit(f.path["visit_id"])

        # Civil-affairs operations: elder facts, packages, rules versions, blacklist, holds.
        self.admin_only: Any = allow()
        # An elder's entitlement, balance and posting history.
        self.elder_read: Any = allow(
            own("dispatcher", "elders of own service areas", in_own_areas(elder_area)),
            own("elder", "own record", is_own_elder(path("elder_id"))),
            anyone("auditor"))
        # What the ledger holds or charged for a visit.
        self.visit_read: Any = allow(
            own("dispatcher", "visits of own service areas", in_own_areas(visit_area)),
            anyone("auditor"))
        # Correcting a charge by reversing postings.
        self.visit_reverse: Any = allow(
            own("finance", "charges of own service areas", in_own_areas(visit_area)))
        # A month's statements and the civil-affairs summary (the dashboard shows both).
        self.month_read: Any = allow(
            own("finance", OWN_AREAS, in_own_areas(path("area"))),
            own("dispatcher", OWN_AREAS, in_own_areas(path("area"))),
            anyone("auditor"))
        # Closing a month fixes its statements and lapses unused entitlement.
        self.month_close: Any = allow(own("finance", OWN_AREAS, in_own_areas(path("area"))))
        # What the sub-district owes a provider (the area is in the query).
        self.payable_read: Any = allow(
            own("finance", OWN_AREAS, in_own_areas(query("area"))), anyone("auditor"))
        # The books: accounts, their postings, the trial balance.
        self.books_read: Any = allow(anyone("finance", "auditor"))
        # The entitlement rules in force (the dispatch dashboard reads them too).
        self.rules_read: Any = allow(anyone("finance", "dispatcher", "auditor"))
