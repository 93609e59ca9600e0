"""GET /<service>/elders/{elder_id}/audit: who did what to an elder's records, and when.

The same endpoint on every service that keeps records about elders (``audit_router`` is
included for each by services/system.py). Who may read a trail: the auditor (any elder), a
dispatcher for elders of their own service areas, the elder (or their family proxy) their own —
a person may see who processed their data (PIPL art. 44-45) — and the administrator.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.runtime.access import allow, anyone, in_own_areas, is_own_elder, own, path
from services.runtime.audit import audit_index, elder_trail, trail_csv
from services.runtime.eventstore import ServiceApplication
from services.runtime.http import OffLoopRoute


def audit_router(service: str, app: ServiceApplication) -> APIRouter:
    router = APIRouter(prefix=f"/{service}", tags=[service], route_class=OffLoopRoute)
    read = allow(
        anyone("auditor"),
        own("dispatcher", "elders of own service areas",
            in_own_areas(lambda f: audit_index(app).area_of(f.path["elder_id"]))),
        own("elder", "themselves", is_own_elder(path("elder_id"))),
    )

    @router.get(
        "/elders/{elder_id}/audit", dependencies=[read],
        responses={200: {"content": {"text/csv": {}},
                         "description": "the trail, oldest first (JSON, or CSV with "
                                        "?format=csv)"}},
    )
    async def elder_audit(elder_id: str, format: Literal["json", "csv"] = Query("json")
                          ) -> Any:
        """Every change to the elder's records in this service: time, who (actor), why (cause:
        the integration event a consumer acted on), which record, which event, and the fields
        it set — personal fields are named, never shown (an erased elder's trail stays
        readable). Empty for an elder this service has no records of."""
        entries = await asyncio.to_thread(elder_trail, app, elder_id)
        rows = [{"service": service, **e.row()} for e in entries]
        if format == "csv":
            return Response(trail_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition":
                    f'attachment; filename="audit-{service}-{elder_id}.csv"'})
        return {"service": service, "elder_id": elder_id, "events": rows}

    return router


def fetch_trails(urls: list[str], elder_id: str, headers: dict[str, str],
                 services: list[str], timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every service's trail of the elder, merged in time order (what ``homecare audit export``
    writes). Each service is asked at each URL (one process may serve all, or each its own); a
    404 means that process does not serve it. Raises RuntimeError for a refusal (401/403) or a
    service that no URL serves."""
    import httpx

    rows: list[dict[str, Any]] = []
    for service in services:
        found = False
        for url in urls:
            r = httpx.get(f"{url.rstrip('/')}/{service}/elders/{elder_id}/audit",
                          headers=headers, timeout=timeout_s)
            if r.status_code == 404:
                continue
            if r.status_code != 200:
                raise RuntimeError(f"{service} at {url} answered {r.status_code}: {r.text[:300]}")
            rows.extend(r.json()["events"])
            found = True
            break
        if not found:
            raise RuntimeError(f"no server at {', '.join(urls)} serves {service}")
    rows.sort(key=lambda row: (row["time"], row["service"], row["aggregate_id"], row["version"]))
    return rows
