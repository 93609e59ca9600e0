"""The volunteer page (时间银行志愿者): my balance and history, my tasks with check-in and
check-out, open tasks nearby, give credits, redeem care for someone I look after.

`build_router(app)` is picked up by services/system.py. Plain HTML/CSS/JS in ./static: no build
step, no CDN. The page reads the time bank's own API; tasks still open for anyone and the
check-in/check-out go to dispatch's endpoints on the same host when dispatch is served there
(the page says so plainly when it is not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from services.runtime.http import OffLoopRoute, add_page

STATIC = Path(__file__).resolve().parent / "static"


def build_router(app: Any) -> APIRouter:
    router = APIRouter(tags=["volunteer page"], route_class=OffLoopRoute)

    add_page(router, "/timebank/app", STATIC, "The volunteer page (zh-CN).")

    return router
