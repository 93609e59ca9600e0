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

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}


def _asset(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise HTTPException(404, f"no page asset {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


def build_router(app: Any) -> APIRouter:
    router = APIRouter(tags=["volunteer page"])

    @router.get("/timebank/app", include_in_schema=False)
    def app_root() -> RedirectResponse:
        return RedirectResponse("/timebank/app/")

    @router.get("/timebank/app/", include_in_schema=False)
    def page() -> FileResponse:
        """The volunteer page (zh-CN)."""
        return _asset("index.html")

    @router.get("/timebank/app/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        return _asset(name)

    return router
