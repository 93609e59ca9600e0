"""The caregiver mobile page (护理员签到) and the endpoint only it uses: the offline queue's sync.

`build_router(app)` is picked up by services/system.py. The page is plain HTML/CSS/JS in
./static (no build step, no CDN); its service worker makes it work after a reload with no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from services.dispatch.web import dashboard
from services.dispatch.web.sync import SyncIn, apply_batch, chain_break

STATIC = Path(__file__).resolve().parent / "static"
# Always revalidate: the service worker, not the HTTP cache, is what keeps the page offline.
NO_CACHE = {"Cache-Control": "no-cache"}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
               ".webmanifest": "application/manifest+json"}


def _asset(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise HTTPException(404, f"no page asset {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


def build_router(app: Any) -> APIRouter:
    router = APIRouter(tags=["caregiver page"])

    @router.get("/dispatch/app", include_in_schema=False)
    def app_root() -> RedirectResponse:
        return RedirectResponse("/dispatch/app/")

    @router.get("/dispatch/app/", include_in_schema=False)
    def page() -> FileResponse:
        """The caregiver page (zh-CN first, English toggle)."""
        return _asset("index.html")

    @router.get("/dispatch/app/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        return _asset(name)

    @router.post("/dispatch/sync", responses={409: {"description": "the queue's hash chain is "
                                                                    "broken; nothing applied"}})
    def sync(body: SyncIn) -> Any:
        """Apply a phone's queued check-ins/check-outs in order, after verifying their chain.

        Each record is answered `applied`, `duplicate` (sent before; harmless) or `rejected` with
        the reason. A broken chain refuses the whole batch with 409 and `broken_at` (0-based).
        """
        broken = chain_break(body)
        if broken is not None:
            return JSONResponse(status_code=409, content={
                "detail": f"record {broken.index}: {broken.reason}", "broken_at": broken.index,
                "error": "ChainBroken"})
        return {"results": apply_batch(app, body),
                "head": body.records[-1].hash if body.records else None}

    router.include_router(dashboard.build_router(app))
    return router
