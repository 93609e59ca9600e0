"""Load a generated district into a running system over HTTP (the public API only).

Dispatch gets the providers, elders, caregivers, volunteers, care plans and the day's orders
(waiting for the daily plan); the ledger the facts of each elder's entitlement; the time bank the
volunteers' accounts and a reserve grant. Registration is idempotent, so loading twice is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.simulation.district import District, OrderRecord

TZ = ZoneInfo("Asia/Shanghai")
Progress = Callable[[str], None]


class LoadFailed(RuntimeError):
    pass


async def call(client: httpx.AsyncClient, method: str, url: str,
               ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
    """One API call; an unexpected status raises with the answer's text. A write that raced
    another writer of the same record (a consumed event) is sent again."""
    for attempt in range(6):
        r = await client.request(method, url, **kwargs)
        if r.status_code != 409 or "ConcurrentChange" not in r.text:
            break
        await asyncio.sleep(0.05 * (attempt + 1))
    if r.status_code not in ok:
        raise LoadFailed(f"{method} {url} -> {r.status_code}: {r.text[:500]}")
    return r.json() if r.content and r.headers.get("content-type", "").startswith(
        "application/json") else None


def local(day: date, hhmm: str, tz: ZoneInfo = TZ) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m), tz)


async def _each(items: list[Any], work: Callable[[Any], Awaitable[Any]],
                concurrency: int) -> None:
    """Run ``work`` for every item, a few at a time (the stores serialise writes anyway)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


WELFARE = "welfare_check"


def order_body(o: OrderRecord, day: date, tz: ZoneInfo = TZ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "elder_id": o.elder_id, "service_type": o.service_type,
        "requested_date": day.isoformat(), "order_id": o.order_id, "source": o.source,
        "out_of_pocket_agreed": o.out_of_pocket_agreed, "placed_by": "simulation"}
    if o.use_time_credits:
        body["use_time_credits"] = True
    if o.window_start and o.window_end:
        body["window_start"] = local(day, o.window_start, tz).isoformat()
        body["window_end"] = local(day, o.window_end, tz).isoformat()
    if o.emergency:
        body["emergency"] = True
    elif o.service_type != WELFARE:
        body["await_plan"] = True
    return body


async def dispatch_welfare_checks(client: httpx.AsyncClient, d: District,
                                  progress: Progress = lambda _: None) -> int:
    """The community's welfare checks (探访关爱), placed once the day is planned: dispatch gives
    them to a free volunteer first (mutual aid keeps paid hours for care)."""
    placed = 0
    for o in d.orders:
        if o.service_type == WELFARE and not o.emergency:
            answer = await call(client, "POST", "/dispatch/orders", json=order_body(o, d.day))
            placed += answer["visit"] is not None
    progress(f"dispatch: {placed} welfare checks dispatched")
    return placed


async def load_district(client: httpx.AsyncClient, d: District, *,
                        services: frozenset[str] = frozenset({"dispatch", "ledger", "timebank"}),
                        progress: Progress = lambda _: None, concurrency: int = 4,
                        area_settings: dict[str, Any] | None = None) -> dict[str, int]:
    """Register everything of the district and place the day's planned orders (not the
    emergencies: they come in during the day)."""
    area = d.service_area_id
    if "dispatch" in services:
        settings = {"auto_accept_replans": True, "changed_by": "simulation"}
        await call(client, "PATCH", f"/dispatch/areas/{area}/settings",
                   json={**settings, **(area_settings or {})})
        for provider_id, name in d.providers:
            await call(client, "POST", "/dispatch/providers", json={
                "provider_id": provider_id, "name": name, "service_area_id": area})

        async def elder(e: Any) -> None:
            await call(client, "POST", "/dispatch/elders", json={
                "elder_id": e.elder_id, "name": e.name, "service_area_id": area,
                "lat": e.lat, "lon": e.lon, "confirmation_code": e.confirmation_code,
                "address": e.address, "gender": e.gender,
                "capability_level": e.capability_level, "family_phone": e.family_phone,
                "preferred_caregiver_ids": e.preferred_caregiver_ids})

        await _each(d.elders, elder, concurrency)
        progress(f"dispatch: {len(d.elders)} elders")

        async def caregiver(c: Any) -> None:
            await call(client, "POST", "/dispatch/caregivers", json={
                "caregiver_id": c.caregiver_id, "name": c.name, "kind": c.kind,
                "service_area_id": area, "skills": c.skills, "station_lat": c.station_lat,
                "station_lon": c.station_lon, "provider_id": c.provider_id,
                "certificate_expires": (c.certificate_expires.isoformat()
                                        if c.certificate_expires else None),
                "certificate_level": c.certificate_level, "gender": c.gender,
                "shift_start": c.shift_start, "shift_end": c.shift_end,
                "travel_mode": c.travel_mode})

        await _each(d.caregivers, caregiver, concurrency)
        progress(f"dispatch: {len(d.caregivers)} caregivers and volunteers")
    if "ledger" in services:
        async def facts(e: Any) -> None:
            await call(client, "PUT", f"/ledger/elders/{e.elder_id}",
                       json={"service_area_id": area, **e.facts})

        await _each(d.elders, facts, concurrency)
        progress(f"ledger: entitlement facts of {len(d.elders)} elders")
    if "timebank" in services:
        for v in d.volunteers:
            await call(client, "POST", f"/timebank/members/{v.caregiver_id}", ok=(201, 409),
                       json={"bank_id": area, "display_name": v.name,
                             "birth_date": v.birth_date.isoformat() if v.birth_date else None})
        await call(client, "POST", f"/timebank/banks/{area}/grants", ok=(201, 409),
                   json={"minutes": 200 * 60, "reference": f"grant-{area}-{d.day}"})
        progress(f"time bank: {len(d.volunteers)} volunteers")
    orders = 0
    if "dispatch" in services:
        valid_from = d.day - timedelta(days=28)
        for p in d.care_plans:
            await call(client, "POST", "/dispatch/care-plans", json={
                "care_plan_id": p.care_plan_id, "elder_id": p.elder_id, "items": p.items,
                "valid_from": valid_from.isoformat(), "created_by": "simulation",
                "monthly_minutes": p.monthly_minutes})
            week = await call(client, "POST", f"/dispatch/care-plans/{p.care_plan_id}/weeks",
                              params={"week_of": d.day.isoformat()})
            orders += sum(1 for o in week if o["requested_date"] == d.day.isoformat())

        async def place(o: OrderRecord) -> None:
            await call(client, "POST", "/dispatch/orders", json=order_body(o, d.day))

        # Welfare checks go straight to the (paired) volunteers after the daily plan:
        # dispatch_welfare_checks.
        day_orders = [o for o in d.orders if not o.emergency and o.service_type != WELFARE]
        await _each(day_orders, place, concurrency)
        orders += len(day_orders)
        progress(f"dispatch: {len(d.care_plans)} care plans, {orders} orders for {d.day}")
    return {"elders": len(d.elders), "caregivers": len(d.caregivers), "orders": orders}


async def serve_month_so_far(client: httpx.AsyncClient, d: District,
                             progress: Progress = lambda _: None) -> int:
    """The entitled visits earlier this month, placed and served with their past times (all
    before the simulated day, so never in the future): the ledger starts the day with the
    month's usage so far. Returns the visits served."""
    elders = {e.elder_id: e for e in d.elders}
    served = 0
    for v in d.month_so_far:
        day = date.fromisoformat(v["day"])
        answer = await call(client, "POST", "/dispatch/orders", json={
            "elder_id": v["elder_id"], "service_type": v["service_type"],
            "requested_date": v["day"], "order_id": f"M-{v['elder_id']}-{v['day']}-{v['n']}",
            "duration_minutes": v["minutes"], "placed_by": "simulation (month so far)",
            "window_start": local(day, "08:00").isoformat(),
            "window_end": local(day, "17:30").isoformat()})
        visit = answer["visit"]
        if visit is None:
            continue
        elder = elders[v["elder_id"]]
        where = {"caregiver_id": visit["caregiver_id"], "lat": elder.lat, "lon": elder.lon,
                 "accuracy_m": 10}
        await call(client, "POST", f"/dispatch/visits/{visit['visit_id']}/check-in",
                   json={**where, "at": visit["planned_start"]})
        await call(client, "POST", f"/dispatch/visits/{visit['visit_id']}/check-out",
                   json={**where, "at": visit["planned_end"], "tasks_done": [],
                         "confirmation_code": elder.confirmation_code})
        served += 1
    progress(f"month so far: {served} entitled visits served before {d.day}")
    for gift in d.credit_gifts:
        served += await _earn_and_give(client, d, gift, progress)
    return served


async def _earn_and_give(client: httpx.AsyncClient, d: District, gift: dict[str, Any],
                         progress: Progress) -> int:
    """The volunteer's welfare checks of the last days (credits earned), then the gift to the
    parent, who joins the bank (redemption is age-gated on the birth date)."""
    volunteer, parent = gift["from"], d.elder(gift["to"])
    shift = next(c for c in d.caregivers if c.caregiver_id == volunteer)
    served = 0
    for v in gift["earned_by"]:
        day = date.fromisoformat(v["day"])
        elder = d.elder(v["elder_id"])
        answer = await call(client, "POST", "/dispatch/orders", json={
            "elder_id": elder.elder_id, "service_type": "companionship",
            "requested_date": v["day"], "order_id": f"M-{volunteer}-{v['day']}-{v['n']}",
            "duration_minutes": v["minutes"], "placed_by": "simulation (month so far)",
            "window_start": local(day, shift.shift_start).isoformat(),
            "window_end": local(day, shift.shift_end).isoformat()})
        visit = answer["visit"]
        if visit is None or visit["caregiver_id"] != volunteer:
            continue  # another caregiver took it: no credits for our volunteer
        where = {"caregiver_id": volunteer, "lat": elder.lat, "lon": elder.lon,
                 "accuracy_m": 10}
        await call(client, "POST", f"/dispatch/visits/{visit['visit_id']}/check-in",
                   json={**where, "at": visit["planned_start"]})
        await call(client, "POST", f"/dispatch/visits/{visit['visit_id']}/check-out",
                   json={**where, "at": visit["planned_end"], "tasks_done": [],
                         "confirmation_code": elder.confirmation_code})
        served += 1
    await call(client, "POST", f"/timebank/members/{parent.elder_id}", json={
        "bank_id": d.service_area_id, "birth_date": parent.birth_date.isoformat(),
        "display_name": parent.name})
    for _ in range(100):  # the time bank credits the volunteer asynchronously
        account = await call(client, "GET", f"/timebank/accounts/{volunteer}")
        if account["available_minutes"] >= gift["minutes"]:
            await call(client, "POST", "/timebank/gifts", json={
                "from_person": volunteer, "to_person": parent.elder_id,
                "minutes": gift["minutes"], "note": "for my parent (simulation)",
                "gift_id": f"gift-{volunteer}-{parent.elder_id}-{d.day}"})
            progress(f"time bank: {volunteer} gave {gift['minutes']} min of credits to "
                     f"{parent.elder_id}")
            break
        await asyncio.sleep(0.2)
    else:
        progress(f"time bank: {volunteer} had not earned {gift['minutes']} min to give")
    return served
