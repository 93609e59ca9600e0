"""HTTP adapter of the time bank (thin): volunteer accounts and earnings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from services.timebank.application import TimebankApplication


def build_router(app: TimebankApplication) -> APIRouter:
    router = APIRouter(prefix="/timebank", tags=["timebank"])

    @router.post("/accounts/{volunteer_id}", status_code=201)
    def open_account(volunteer_id: str) -> dict[str, Any]:
        app.open_account(volunteer_id)
        return asdict(app.balance(volunteer_id))

    @router.get("/accounts/{volunteer_id}")
    def balance(volunteer_id: str) -> dict[str, Any]:
        return asdict(app.balance(volunteer_id))

    @router.get("/visits/{visit_id}/earning")
    def earning(visit_id: str) -> dict[str, Any]:
        e = app.earning_for(visit_id)
        return {"visit_id": e.visit_id, "volunteer_id": e.volunteer_id,
                "served_minutes": e.served_minutes, "credited_minutes": e.credited_minutes,
                "multiplier_permille": e.multiplier_permille}

    return router
