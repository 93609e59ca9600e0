"""HTTP adapter of the ledger (thin): elders' entitlement facts, balances and postings."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.double_entry import Account, Transfer

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


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


def build_router(app: LedgerApplication) -> APIRouter:
    router = APIRouter(prefix="/ledger", tags=["ledger"])

    @router.put("/elders/{elder_id}")
    def register_elder(elder_id: str, body: ElderFactsIn) -> dict[str, Any]:
        facts = ElderFacts(**body.model_dump(exclude={"service_area_id"}))
        profile = app.register_elder(elder_id, body.service_area_id, facts)
        return {"elder_id": profile.elder_id, "service_area_id": profile.service_area_id,
                "facts": profile.facts}

    @router.get("/elders/{elder_id}/balance")
    def balance(elder_id: str, month: str | None = Query(default=None,
                description="YYYY-MM in the service area's time zone; this month if absent")
                ) -> dict[str, Any]:
        if month is None:
            month = datetime.now(UTC).astimezone(app.tz).strftime("%Y-%m")
        if not MONTH.match(month):
            raise HTTPException(422, f"month must look like 2026-11, got {month!r}")
        return asdict(app.balance(elder_id, month))

    @router.get("/accounts/{code}")
    def account(code: str) -> dict[str, Any]:
        return account_view(app.account_by_code(code))

    @router.get("/accounts/{code}/postings")
    def postings(code: str) -> list[dict[str, Any]]:
        app.account_by_code(code)
        return [transfer_view(t, app) for t in app.postings(code)]

    @router.get("/visits/{visit_id}/charge")
    def charge(visit_id: str) -> dict[str, Any]:
        c = app.charge_for(visit_id)
        return {"visit_id": c.visit_id, "elder_id": c.elder_id, "provider_id": c.provider_id,
                "charged_minutes": c.charged_minutes, "legs": c.legs, "month": c.month,
                "transfer_ids": c.transfer_ids, "cause_event_id": c.cause_event_id}

    @router.get("/trial-balance")
    def trial_balance() -> dict[str, int]:
        """The sum of every account's balance: always 0 in double entry."""
        return {"sum_of_balances": app.trial_balance()}

    return router
