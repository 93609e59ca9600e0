"""The caregiver mobile page (护理员签到) and the endpoint only it uses: the offline queue's sync.

`build_router(app)` is picked up by services/system.py. The page is plain HTML/CSS/JS in
./static (no build step, no CDN); its service worker makes it work after a reload with no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.dispatch.access import DispatchAccess
from services.dispatch.web import dashboard
from services.dispatch.web.sync import SyncIn, apply_batch, chain_break
from services.runtime.http import OffLoopRoute, add_page

STATIC = Path(__file__).resolve().parent / "static"
def build_router(app: Any) -> APIRouter:
    router = APIRouter(tags=["caregiver page"], route_class=OffLoopRoute)
    grants = DispatchAccess(app)

    add_page(router, "/dispatch/app", STATIC, "The caregiver page (zh-CN first, English toggle).")

    @router.post("/dispatch/sync", responses={409: {"description": "the queue's hash chain is "
                                                                    "broken; nothing applied"}},
                 dependencies=[grants.sync])
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
