"""HTTP adapter of the ledger (thin): entitlements, packages, balances, postings, settlement."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.ledger.access import LedgerAccess
from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts
from services.ledger.domain.settlement import statement_rows
from services.ledger.exports import to_csv, to_xlsx
from services.runtime.auth import Principal
from services.runtime.double_entry import Account, Transfer
from services.runtime.http import OffLoopRoute

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Who did it is the caller the token names (Principal.actor), never what the body says.
IGNORED_BY = "Ignored (kept for older clients): the caller named by the token is recorded"


class ElderFactsIn(BaseModel):
    service_area_id: str = Field(min_length=1)
    birth_date: date
    local_registration: bool = True
    lives_locally: bool = True
    dibao: bool = False
    dibao_margin: bool = False
    disability_qualifies: bool = False
    children_cannot_support: bool = False
    no_spouse_no_children: bool = False
    nursing_subsidy_minutes: int = Field(default=0, ge=0)
    prefers_home_care_hours: bool = False


class PackageIn(BaseModel):
    package_id: str = Field(min_length=1, description="Your idempotency key for the purchase")
    minutes: int = Field(gt=0, le=100 * 60)
    price_fen: int = Field(ge=0)
    expires_on: date
    bought_by: str = Field(min_length=1)


class RuleVersionIn(BaseModel):
    version: str = Field(min_length=1)
    effective_from: date
    minimum_age: int = Field(default=65, ge=0)
    high_minutes: int = Field(default=480, ge=0)
    low_minutes: int = Field(default=240, ge=0)
    high_age: int = 100
    low_age: int = 90
    unsupported_age: int = 70
    stack_with_nursing_subsidy: bool = False
    unused_entitlement: Literal["lapse", "carry_over"] = "lapse"
    added_by: str | None = Field(default=None, description=IGNORED_BY)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1)
    by: str | None = Field(default=None, description=IGNORED_BY)


def transfer_view(t: Transfer, app: LedgerApplication) -> dict[str, Any]:
    return {"transfer_id": str(t.id), "key": t.key, "amount": t.amount, "state": t.state,
            "posted_amount": t.posted_amount,
            "debit_account": app.repository.get(t.debit_account_id).code,
            "credit_account": app.repository.get(t.credit_account_id).code,
            "reason": t.reason, "visit_id": t.visit_id, "cause_event_id": t.cause_event_id,
            "funding_source": t.funding_source, "created_at": t.created_on}


def account_view(a: Account) -> dict[str, Any]:
    return {"code": a.code, "unit": a.unit, "kind": a.kind, "balance": a.balance,
            "available": a.available, "debits_posted": a.debits_posted,
            "credits_posted": a.credits_posted, "debits_pending": a.debits_pending,
            "credits_pending": a.credits_pending}


def _month(month: str | None, app: LedgerApplication) -> str:
    if month is None:
        return datetime.now(UTC).astimezone(app.tz).strftime("%Y-%m")
    if not MONTH.match(month):
        raise HTTPException(422, f"month must look like 2026-11, got {month!r}")
    return month


def build_router(app: LedgerApplication) -> APIRouter:
    router = APIRouter(prefix="/ledger", tags=["ledger"], route_class=OffLoopRoute)
    access = LedgerAccess(app)  # who may call what: services/ledger/access.py

    @router.put("/elders/{elder_id}", dependencies=[access.admin_only])
    def register_elder(elder_id: str, body: ElderFactsIn) -> dict[str, Any]:
        """Register or update the facts an elder's entitlement is computed from."""
        facts = ElderFacts(**body.model_dump(exclude={"service_area_id"}))
        profile = app.register_elder(elder_id, body.service_area_id, facts)
        return {"elder_id": profile.elder_id, "service_area_id": profile.service_area_id,
                "facts": profile.facts}

    @router.get("/elders/{elder_id}/entitlement", dependencies=[access.elder_read])
    def entitlement(elder_id: str, month: str | None = None) -> dict[str, Any]:
        """The month's entitlement, its category, the reason and the rule version used."""
        return {"elder_id": elder_id, "month": _month(month, app),
                **asdict(app.entitlement_for(elder_id, _month(month, app)))}

    @router.get("/elders/{elder_id}/balance", dependencies=[access.elder_read])
    def balance(elder_id: str, month: str | None = Query(
            default=None, description="YYYY-MM in the area's time zone; this month if absent")
            ) -> dict[str, Any]:
        return asdict(app.balance(elder_id, _month(month, app)))

    @router.get("/elders/{elder_id}/history", dependencies=[access.elder_read])
    def history(elder_id: str) -> list[dict[str, Any]]:
        """Every posting on the elder's accounts (entitlement months, packages, out of pocket)."""
        return [{"account": a.code, **transfer_view(t, app)} for a, t in app.history(elder_id)]

    @router.post("/elders/{elder_id}/packages", status_code=201, dependencies=[access.admin_only])
    def buy_package(elder_id: str, body: PackageIn) -> dict[str, Any]:
        package = app.buy_package(elder_id, body.package_id, body.minutes, body.price_fen,
                                  body.expires_on, body.bought_by)
        return {"package_id": package.package_id, "minutes": package.minutes,
                "price_fen": package.price_fen, "expires_on": package.expires_on,
                "account": package.account_code}

    @router.get("/rules", dependencies=[access.rules_read])
    def rules() -> dict[str, Any]:
        return app.rules.to_json()

    @router.post("/rules/versions", status_code=201)
    def add_rule_version(body: RuleVersionIn,
                         principal: Principal = access.admin_only) -> dict[str, Any]:
        """A new version of the entitlement rules, in force from its effective date."""
        data = body.model_dump(exclude={"added_by"})
        data["effective_from"] = body.effective_from.isoformat()
        return app.add_rule_version(data, principal.actor).to_json()

    @router.post("/providers/{provider_id}/blacklist", dependencies=[access.admin_only])
    def blacklist(provider_id: str, body: ReasonIn) -> dict[str, Any]:
        provider = app.blacklist_provider(provider_id, body.reason)
        return {"provider_id": provider_id, "blacklisted": provider.blacklisted}

    @router.post("/providers/{provider_id}/reinstate", dependencies=[access.admin_only])
    def reinstate(provider_id: str, body: ReasonIn) -> dict[str, Any]:
        provider = app.reinstate_provider(provider_id, body.reason)
        return {"provider_id": provider_id, "blacklisted": provider.blacklisted}

    @router.get("/providers/{provider_id}/payable", dependencies=[access.payable_read])
    def payable(provider_id: str, area: str) -> dict[str, Any]:
        """Minutes the sub-district owes the provider, and charges blocked by a blacklist."""
        from services.ledger.domain.books import provider_payable_account

        code = provider_payable_account(provider_id, area)
        account = app.get_or_none(Account.create_id(code))
        return {"provider_id": provider_id, "service_area_id": area,
                "blacklisted": app.is_blacklisted(provider_id),
                "payable_minutes": account.balance if account else 0,
                "held_minutes": account.credits_pending if account else 0,
                "blocked_charges": [{"visit_id": c.visit_id, "minutes": c.charged_minutes}
                                    for c in app.blocked_charges(provider_id)]}

    @router.get("/accounts/{code}", dependencies=[access.books_read])
    def account(code: str) -> dict[str, Any]:
        return account_view(app.account_by_code(code))

    @router.get("/accounts/{code}/postings", dependencies=[access.books_read])
    def postings(code: str) -> list[dict[str, Any]]:
        app.account_by_code(code)
        return [transfer_view(t, app) for t in app.postings(code)]

    @router.get("/visits/{visit_id}/reservation", dependencies=[access.visit_read])
    def reservation(visit_id: str) -> dict[str, Any]:
        r = app.reservation_for(visit_id)
        return {"visit_id": r.visit_id, "state": r.state, "requested_minutes":
                r.requested_minutes, "held_minutes": r.held_minutes, "legs": r.legs,
                "expires_at": r.expires_at, "rejection": r.rejection,
                "release_reason": r.release_reason}

    @router.get("/visits/{visit_id}/charge", dependencies=[access.visit_read])
    def charge(visit_id: str) -> dict[str, Any]:
        c = app.charge_for(visit_id)
        return {"visit_id": c.visit_id, "elder_id": c.elder_id, "provider_id": c.provider_id,
                "charged_minutes": c.charged_minutes, "legs": c.legs, "month": c.service_month,
                "charged_month": c.charged_month, "unfunded_minutes": c.unfunded_minutes,
                "blocked": c.blocked, "reversed": c.reversed, "transfer_ids": c.transfer_ids,
                "cause_event_id": c.cause_event_id}

    @router.post("/visits/{visit_id}/reversal")
    def reverse(visit_id: str, body: ReasonIn,
                principal: Principal = access.visit_reverse) -> dict[str, Any]:
        """Correct a charge with reversing postings (postings are never edited)."""
        c = app.reverse_charge(visit_id, body.reason, principal.actor)
        return {"visit_id": visit_id, "reversed": c.reversed,
                "reversal_transfer_ids": c.reversal_transfer_ids}

    @router.post("/holds/expire", dependencies=[access.admin_only])
    def expire() -> dict[str, int]:
        """Release holds whose time ran out now (also done every minute in the background)."""
        return {"expired": app.expire_holds()}

    @router.get("/areas/{area}/months/{month}/statements", dependencies=[access.month_read])
    def statements(area: str, month: str) -> dict[str, Any]:
        month = _month(month, app)
        return {"service_area_id": area, "month": month,
                "closed": app.is_month_closed(area, month),
                "statements": app.statements(area, month)}

    @router.get("/areas/{area}/months/{month}/statements.{fmt}", dependencies=[access.month_read])
    def statements_file(area: str, month: str, fmt: Literal["csv", "xlsx"]) -> Response:
        month = _month(month, app)
        rows = statement_rows(app.statements(area, month))
        name = f"statements-{area}-{month}.{fmt}"
        headers = {"content-disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
        summary = app.civil_affairs_summary(area, month)
        summary_rows = [["category", "elders", "entitled_minutes", "used_minutes",
                         "utilisation_percent"]] + [
            [k, v["elders"], v["entitled_minutes"], v["used_minutes"], v["utilisation_percent"]]
            for k, v in summary["by_category"].items()] + [
            ["used nothing", len(summary["entitled_elders_who_used_nothing"]),
             ", ".join(summary["entitled_elders_who_used_nothing"]), "", ""]]
        return Response(to_xlsx({"statements": rows, "summary": summary_rows}),
                        media_type="application/vnd.openxmlformats-officedocument."
                                   "spreadsheetml.sheet", headers=headers)

    @router.post("/areas/{area}/months/{month}/close")
    def close(area: str, month: str, body: ReasonIn,
              principal: Principal = access.month_close) -> dict[str, Any]:
        """Close the month: statements are fixed; unused entitlement lapses per the rules."""
        c = app.close_month(area, _month(month, app), principal.actor)
        return {"service_area_id": area, "month": c.month, "closed_by": c.closed_by,
                "lapsed_minutes": c.lapsed_minutes, "statements": c.statements}

    @router.get("/areas/{area}/months/{month}/summary", dependencies=[access.month_read])
    def summary(area: str, month: str) -> dict[str, Any]:
        """For the civil-affairs office: utilisation by category, elders who used nothing."""
        return app.civil_affairs_summary(area, _month(month, app))

    @router.get("/trial-balance", dependencies=[access.books_read])
    def trial_balance() -> dict[str, Any]:
        """The sum of every account's balance per unit: always 0 in double entry."""
        totals = app.trial_balance()
        return {"sum_of_balances": sum(totals.values()), "by_unit": totals}

    return router
