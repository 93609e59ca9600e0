"""HTTP adapter of the time bank (thin): members, balances, gifts, redemption, reserve,
federation. Rule violations answer 409 (422 for malformed input), unknown records 404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from services.runtime.auth import Principal
from services.runtime.double_entry import LedgerError
from services.runtime.http import OffLoopRoute
from services.timebank.access import TimebankAccess
from services.timebank.application import NotFound, TimebankApplication
from services.timebank.domain.rules import RuleError

T = TypeVar("T")


def answer(call: Callable[[], T]) -> T:
    """Run a command; the reason in words when a rule refuses it."""
    try:
        return call()
    except NotFound as error:
        raise HTTPException(404, str(error).strip("'\"")) from None
    except (RuleError, LedgerError) as error:
        raise HTTPException(409, str(error)) from None


class JoinBody(BaseModel):
    bank_id: str = Field(min_length=1)
    birth_date: date | None = None
    hardship: bool = False
    display_name: str | None = None


class GiftBody(BaseModel):
    from_person: str = Field(min_length=1)
    to_person: str | None = None  # None: donated to the community fund
    minutes: int = Field(gt=0, strict=True)
    note: str | None = None
    gift_id: str | None = None


class RedemptionBody(BaseModel):
    redeemer_id: str = Field(min_length=1)
    elder_id: str = Field(min_length=1)  # who gets the care: the redeemer or someone they care for
    service_type: str = "companionship"
    minutes: int = Field(gt=0, strict=True)
    requested_date: date
    service_area_id: str = Field(min_length=1)
    beneficiary_birth_date: date | None = None
    hardship: bool | None = None
    notes: str | None = None
    redemption_id: str | None = None


class CancelBody(BaseModel):
    reason: str = Field(min_length=1)
    by: str | None = Field(default=None, description=(
        "Ignored (kept for older clients): the caller named by the token is recorded"))


class GrantBody(BaseModel):
    minutes: int = Field(gt=0, strict=True)
    reference: str = Field(min_length=1)


class CorrectionBody(BaseModel):
    transfer: str = Field(min_length=1)  # the key of the posted movement to reverse
    reason: str = Field(min_length=1)


class ClearingBody(BaseModel):
    period: str = Field(min_length=1)


def _balance(app: TimebankApplication, person_id: str) -> dict[str, Any]:
    b = app.balance(person_id)
    return {**asdict(b), "volunteer_id": b.person_id}


def build_router(app: TimebankApplication) -> APIRouter:
    router = APIRouter(prefix="/timebank", tags=["timebank"], route_class=OffLoopRoute)
    access = TimebankAccess(app)  # who may call what: services/timebank/access.py

    @router.post("/members/{person_id}", status_code=201, dependencies=[access.admin_only])
    def join(person_id: str, body: JoinBody) -> dict[str, Any]:
        answer(lambda: app.join(person_id, body.bank_id, body.birth_date, body.hardship,
                                body.display_name))
        return _balance(app, person_id)

    @router.post("/members/{person_id}/erasure")
    def erase_member(person_id: str, principal: Principal = access.admin_only) -> dict[str, Any]:
        """Erase a member's details on request (crypto-shredding): birth date, hardship and
        name read as erased from now on; the account, its credits and history stay (others'
        balances depend on them). Repeating it is harmless."""
        answer(lambda: app.member(person_id))
        member = app.erase_member(person_id, by=principal.actor, at=datetime.now(UTC))
        assert member is not None
        return {**_balance(app, person_id), "display_name": member.display_name,
                "erased_at": member.erased_at, "erased_by": member.erased_by}

    @router.post("/accounts/{person_id}", status_code=201, dependencies=[access.admin_only])
    def open_account(person_id: str, bank_id: str | None = None) -> dict[str, Any]:
        answer(lambda: app.open_account(person_id, bank_id))
        return _balance(app, person_id)

    @router.get("/accounts/{person_id}", dependencies=[access.account_read])
    def balance(person_id: str) -> dict[str, Any]:
        return answer(lambda: _balance(app, person_id))

    @router.get("/accounts/{person_id}/history", dependencies=[access.account_read])
    def history(person_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return answer(lambda: app.history(person_id, limit))

    @router.get("/volunteers/{person_id}/tasks", dependencies=[access.member_read])
    def tasks(person_id: str) -> list[dict[str, Any]]:
        """Visits dispatch assigned to this volunteer, as the time bank has seen them."""
        return [{"visit_id": t.visit_id, "elder_id": t.elder_id, "service_type": t.service_type,
                 "planned_start": t.planned_start.isoformat(),
                 "planned_end": t.planned_end.isoformat(), "planned_minutes": t.planned_minutes,
                 "service_area_id": t.service_area_id, "state": t.state,
                 "paid_with_credits": t.paid_with_credits} for t in app.tasks_of(person_id)]

    @router.get("/visits/{visit_id}/earning", dependencies=[access.earning_read])
    def earning(visit_id: str) -> dict[str, Any]:
        e = answer(lambda: app.earning_for(visit_id))
        return {"visit_id": e.visit_id, "volunteer_id": e.volunteer_id,
                "served_minutes": e.served_minutes, "credited_minutes": e.credited_minutes,
                "multiplier_permille": e.multiplier_permille,
                "donated_minutes": e.donated_minutes,
                "not_credited_minutes": e.not_credited_minutes, "reason": e.reason,
                "rule_version": e.rule_version}

    @router.get("/visits/{visit_id}/hold", dependencies=[access.hold_read])
    def hold(visit_id: str) -> dict[str, Any]:
        h = answer(lambda: app.hold_for(visit_id))
        return {"reservation_id": h.reservation_id, "visit_id": h.visit_id, "kind": h.kind,
                "account_id": h.account_code, "requested_minutes": h.requested_minutes,
                "held_minutes": h.held_minutes, "state": h.state, "reason": h.reason,
                "redeemed_minutes": h.redeemed_minutes, "released_minutes": h.released_minutes,
                "expires_at": h.expires_at.isoformat()}

    @router.post("/holds/expire", dependencies=[access.admin_only])
    def expire() -> dict[str, Any]:
        return {"released": app.expire_holds(datetime.now(UTC))}

    @router.post("/gifts", status_code=201, dependencies=[access.give])
    def give(body: GiftBody) -> dict[str, Any]:
        g = answer(lambda: app.give(body.from_person, body.minutes, body.to_person, body.note,
                                    body.gift_id))
        return {"gift_id": g.gift_id, "from_account_id": g.from_account,
                "to_account_id": g.to_account, "minutes": g.minutes, "note": g.note}

    @router.post("/redemptions", status_code=201, dependencies=[access.redeem])
    def redeem(body: RedemptionBody) -> dict[str, Any]:
        r = answer(lambda: app.redeem(
            body.redeemer_id, body.elder_id, body.service_type, body.minutes,
            body.requested_date, body.service_area_id, redemption_id=body.redemption_id,
            beneficiary_birth_date=body.beneficiary_birth_date, hardship=body.hardship,
            notes=body.notes))
        return {"redemption_id": r.redemption_id, "order_id": r.order_id,
                "account_id": r.account_code, "elder_id": r.elder_id, "minutes": r.minutes,
                "requested_date": r.requested_date.isoformat()}

    @router.post("/redemptions/{redemption_id}/cancel")
    def cancel_redemption(redemption_id: str, body: CancelBody,
                          principal: Principal = access.cancel_redemption) -> dict[str, Any]:
        """Withdraw a redemption: the order placed for it is cancelled in dispatch (who
        withdrew it is the caller the token names)."""
        r = answer(lambda: app.cancel_redemption(redemption_id, body.reason, principal.actor))
        return {"redemption_id": r.redemption_id, "order_id": r.order_id, "state": r.state}

    @router.post("/banks/{bank_id}/grants", status_code=201, dependencies=[access.admin_only])
    def grant(bank_id: str, body: GrantBody) -> dict[str, Any]:
        t = answer(lambda: app.grant(bank_id, body.minutes, body.reference))
        return {"transfer": t.key, "minutes": t.amount}

    @router.get("/banks/{bank_id}/liability", dependencies=[access.banks_read])
    def liability(bank_id: str) -> dict[str, Any]:
        return asdict(app.liability(bank_id))

    @router.post("/corrections", status_code=201, dependencies=[access.admin_only])
    def correct(body: CorrectionBody) -> dict[str, Any]:
        """Reverse a posted movement by a new one the other way (never an edit)."""
        t = answer(lambda: app.correct(body.transfer, body.reason))
        return {"transfer": t.key, "minutes": t.amount, "reason": t.reason}

    @router.get("/federation/positions", dependencies=[access.banks_read])
    def positions() -> list[dict[str, Any]]:
        return app.positions()

    @router.post("/federation/clearing", dependencies=[access.admin_only])
    def clearing(body: ClearingBody) -> list[dict[str, Any]]:
        return [{"period": s.period, "payer_bank_id": s.payer_bank_id,
                 "payee_bank_id": s.payee_bank_id, "minutes": s.minutes}
                for s in answer(lambda: app.clear(body.period))]

    @router.get("/totals", dependencies=[access.totals_read])
    def totals() -> dict[str, Any]:
        return {"credits_by_bank": app.credit_totals(), "sum_of_balances": app.trial_balance()}

    return router
