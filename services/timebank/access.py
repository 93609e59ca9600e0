"""Who may call which time-bank endpoint: the time bank's whole policy in one place (issue #8).

The administrator may call everything (implicit in `allow`); membership, bank grants,
corrections, expiring holds and federation clearing are the administrator's alone. A volunteer
reads their own account, history and tasks, gives from and redeems with their own credits,
withdraws their own redemptions and reads what their visits earned. A dispatcher reads
accounts, tasks, earnings and holds; finance reads the banks' liability, the federation's
positions and the totals; the auditor reads everything and writes nothing. An elder who is a
member (the token's elder_ids, for an elder or a family proxy, name the member's person id)
reads their own account and history, redeems their own credits for care and withdraws their
own redemptions. Caregivers have nothing here.

A volunteer's token names their time-bank person (`volunteer_id`) and their dispatch caregiver
(`caregiver_id`); earnings are recorded against the caregiver who served, so either counts as
theirs. Ownership of a redemption or an earning is looked up in the time bank's records
(`redeemer_of`, `earner_of`): an unknown record belongs to no one (403 for a volunteer, the
endpoint's own 404 for the administrator and the auditor).
"""

from __future__ import annotations

from typing import Any

from services.runtime.access import (
    RequestFacts,
    allow,
    anyone,
    body,
    is_own_elder,
    is_own_volunteer,
    own,
    path,
)
from services.runtime.auth import Principal
from services.timebank.application import TimebankApplication


class TimebankAccess:
    """The `allow` dependency of each kind of time-bank endpoint, its ownership checks bound to
    the application whose records they read."""

    def __init__(self, app: TimebankApplication) -> None:
        def redeemer(f: RequestFacts) -> str | None:
            return app.redeemer_of(f.path["redemption_id"])

        def earned_by_caller(p: Principal, f: RequestFacts) -> bool:
            earner = app.earner_of(f.path["visit_id"])
            return earner is not None and earner in {p.volunteer_id, p.caregiver_id}

        # Membership, bank grants, corrections, holds expiry, federation clearing.
        self.admin_only: Any = allow()
        # A person's account and its history: a volunteer's, or an elder member's own.
        self.account_read: Any = allow(
            own("volunteer", "own account", is_own_volunteer(path("person_id"))),
            own("elder", "own account", is_own_elder(path("person_id"))),
            anyone("dispatcher", "auditor"))
        # The tasks dispatch gave a volunteer.
        self.member_read: Any = allow(
            own("volunteer", "own account", is_own_volunteer(path("person_id"))),
            anyone("dispatcher", "auditor"))
        # What a visit earned.
        self.earning_read: Any = allow(own("volunteer", "own visits", earned_by_caller),
                                       anyone("dispatcher", "auditor"))
        # The credits held for a visit paid with credits.
        self.hold_read: Any = allow(anyone("dispatcher", "auditor"))
        # Giving credits, from the caller's own account only.
        self.give: Any = allow(
            own("volunteer", "gifts from own account", is_own_volunteer(body("from_person"))))
        # Redeeming credits for care, paid from the caller's own account only.
        self.redeem: Any = allow(
            own("volunteer", "paid from own account", is_own_volunteer(body("redeemer_id"))),
            own("elder", "paid from own account", is_own_elder(body("redeemer_id"))))
        # Withdrawing a redemption: only the one who redeemed.
        self.cancel_redemption: Any = allow(
            own("volunteer", "own redemptions", is_own_volunteer(redeemer)),
            own("elder", "own redemptions", is_own_elder(redeemer)))
        # A bank's liability and the federation's positions between banks.
        self.banks_read: Any = allow(anyone("finance", "auditor"))
        # Credits per bank and the sum of balances (the dispatch dashboard reads them too).
        self.totals_read: Any = allow(anyone("finance", "dispatcher", "auditor"))
