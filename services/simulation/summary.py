"""The day's summary and KPIs, read back from the services' APIs, with its invariants."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.simulation.district import District

DONE = {"verified"}
NOT_DONE = {"missed", "no_show", "disputed"}
ON_TIME_GRACE = timedelta(minutes=15)


async def _json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    r = await client.get(url, params=params or None)
    return r.json() if r.status_code == 200 else None


async def _wait_for(client: httpx.AsyncClient, urls: list[str], timeout: float
                    ) -> dict[str, Any]:
    """Poll until every url answers 200 (consumers work asynchronously) or time runs out."""
    found: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for url in urls:
            if url not in found and (answer := await _json(client, url)) is not None:
                found[url] = answer
        if len(found) == len(urls) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)


async def summarise(client: httpx.AsyncClient, d: District, *,
                    services: frozenset[str] = frozenset({"dispatch", "ledger", "timebank"}),
                    plan: dict[str, Any] | None = None, log: Any = None,
                    wait_s: float = 60.0) -> dict[str, Any]:
    area, day = d.service_area_id, d.day.isoformat()
    visits = await _json(client, f"/dispatch/areas/{area}/visits", date=day) or []
    orders = await _json(client, f"/dispatch/areas/{area}/orders", date=day) or []
    alerts = await _json(client, f"/dispatch/areas/{area}/alerts") or []
    by_state: dict[str, int] = {}
    for v in visits:
        by_state[v["state"]] = by_state.get(v["state"], 0) + 1
    started = [v for v in visits if v["checked_in_at"]]
    late = [v for v in started if datetime.fromisoformat(v["checked_in_at"])
            > datetime.fromisoformat(v["planned_start"]) + ON_TIME_GRACE]
    unassigned = [o for o in orders if o["state"] == "unassigned"]
    demanded = len(visits) + len(unassigned)
    on_time = len(started) - len(late)
    done = sum(by_state.get(s, 0) for s in DONE)
    cancelled = by_state.get("cancelled", 0)
    missed = sum(by_state.get(s, 0) for s in NOT_DONE)
    verified = [v for v in visits if v["state"] == "verified"]
    paid = [v for v in verified if v["caregiver_kind"] == "employee"]
    volunteer = [v for v in verified if v["caregiver_kind"] == "volunteer"]
    alert_kinds: dict[str, int] = {}
    for a in alerts:
        alert_kinds[a["kind"]] = alert_kinds.get(a["kind"], 0) + 1
    summary: dict[str, Any] = {
        "service_area_id": area, "date": day, "seed": d.seed, "size": d.size,
        "elders": len(d.elders),
        "caregivers": sum(c.kind == "employee" for c in d.caregivers),
        "volunteers": len(d.volunteers),
        "orders": len(orders), "unassigned_orders": len(unassigned),
        "visits": {"planned": len(visits), "done": done, "cancelled": cancelled,
                   "missed": missed, "open": len(visits) - done - cancelled - missed,
                   "late": len(late), "on_time": on_time, "by_state": by_state,
                   "not_done": [{"visit_id": v["visit_id"], "state": v["state"],
                                 "caregiver_id": v["caregiver_id"]}
                                for v in visits if v["state"] in NOT_DONE]},
        "on_time_rate": round(on_time / demanded, 4) if demanded else 1.0,
        "travel_minutes": {"planned": (plan or {}).get("travel_minutes"),
                           "actual": getattr(log, "actual_travel_minutes", None)},
        "alerts": {"total": len(alerts), "by_kind": dict(sorted(alert_kinds.items()))},
        "verified_visits": {"paid": len(paid), "volunteer": len(volunteer)},
        "verified_minutes": {"paid": sum(v["actual_minutes"] or 0 for v in paid),
                             "volunteer": sum(v["actual_minutes"] or 0 for v in volunteer)},
    }
    if "ledger" in services:
        charges = await _wait_for(client, [f"/ledger/visits/{v['visit_id']}/charge"
                                           for v in paid], wait_s)
        by_source: dict[str, int] = {}
        unfunded = 0
        unfunded_visits = {}
        credit_legs: dict[str, int] = {}
        for c in charges.values():
            for leg in c["legs"]:
                if leg["source"] == "time_credits":
                    credit_legs[c["visit_id"]] = credit_legs.get(c["visit_id"], 0) + leg["minutes"]
            unfunded += c["unfunded_minutes"]
            if c["unfunded_minutes"]:
                unfunded_visits[c["visit_id"]] = c["unfunded_minutes"]
            for leg in c["legs"]:
                by_source[leg["source"]] = by_source.get(leg["source"], 0) + leg["minutes"]
        charged = sum(by_source.values())
        summary["ledger"] = {
            "visits_charged": len(charges), "charged_minutes": charged,
            "unfunded_minutes": unfunded, "unfunded_visits": unfunded_visits,
            "hours_by_source": {
                k: round(m / 60, 2) for k, m in sorted(by_source.items())},
            "minutes_by_source": dict(sorted(by_source.items())),
            "trial_balance": (await _json(client, "/ledger/trial-balance") or {}).get(
                "sum_of_balances")}
    if "timebank" in services and "ledger" in services:
        # The time bank redeems from its hold what the ledger charged to time credits.
        redeemed: dict[str, int] = {}
        deadline = asyncio.get_running_loop().time() + wait_s
        while credit_legs:
            for visit_id in credit_legs:
                hold = await _json(client, f"/timebank/visits/{visit_id}/hold")
                redeemed[visit_id] = hold["redeemed_minutes"] if hold else 0
            if redeemed == credit_legs or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)
        summary["ledger"]["time_credit_minutes_by_visit"] = credit_legs
        summary["timebank_redeemed_minutes"] = sum(redeemed.values())
    if "timebank" in services:
        earnings = await _wait_for(client, [f"/timebank/visits/{v['visit_id']}/earning"
                                            for v in volunteer], wait_s)
        summary["timebank"] = {
            "visits_credited": len(earnings),
            "served_minutes": sum(e["served_minutes"] for e in earnings.values()),
            "credited_minutes": sum(e["credited_minutes"] for e in earnings.values()),
            "donated_minutes": sum(e["donated_minutes"] for e in earnings.values()),
            "not_credited_minutes": sum(e["not_credited_minutes"] for e in earnings.values())}
    summary["invariants"] = invariants(summary)
    if log is not None:
        summary["simulation"] = {
            "check_ins": log.check_ins, "check_outs": log.check_outs,
            "no_shows": log.no_shows, "queued_offline": log.queued_records,
            "synced_later": log.synced_records, "sick": log.sick, "offline": log.offline,
            "emergencies": log.emergencies, "reviews": log.reviews,
            "refused": len(log.refused), "wall_seconds": log.wall_seconds}
    return summary


def invariants(s: dict[str, Any]) -> dict[str, bool]:
    """What must hold after any simulated day (checked by the tests)."""
    v = s["visits"]
    out = {"done + cancelled + missed = planned": v["done"] + v["cancelled"] + v["missed"]
           == v["planned"]}
    if "ledger" in s:
        led = s["ledger"]
        out["charged + unfunded = verified minutes of paid visits"] = (
            led["charged_minutes"] + led["unfunded_minutes"] == s["verified_minutes"]["paid"])
        out["every paid verified visit charged"] = (
            led["visits_charged"] == s["verified_visits"]["paid"])
        out["ledger balances sum to zero"] = led["trial_balance"] == 0
    if "timebank_redeemed_minutes" in s:
        out["credits redeemed by the time bank = time-credit minutes charged by the ledger"] = (
            s["timebank_redeemed_minutes"] == s["ledger"]["minutes_by_source"].get(
                "time_credits", 0))
    if "timebank" in s:
        tb = s["timebank"]
        out["every volunteer visit credited"] = (
            tb["visits_credited"] == s["verified_visits"]["volunteer"])
        out["credited volunteer minutes = verified volunteer minutes"] = (
            tb["served_minutes"] == s["verified_minutes"]["volunteer"])
    return out


def format_summary(s: dict[str, Any]) -> str:
    v = s["visits"]
    lines = [
        f"Simulated day {s['date']} in {s['service_area_id']} (seed {s['seed']}, {s['size']}): "
        f"{s['elders']} elders, {s['caregivers']} caregivers, {s['volunteers']} volunteers",
        f"  orders {s['orders']} (unassigned {s['unassigned_orders']}); visits planned "
        f"{v['planned']}: done {v['done']}, cancelled {v['cancelled']}, missed/no-show "
        f"{v['missed']}, late {v['late']}; on-time rate {s['on_time_rate']:.0%}",
        f"  travel minutes: planned {s['travel_minutes']['planned']}, "
        f"actual {s['travel_minutes']['actual']}",
    ]
    if "ledger" in s:
        led = s["ledger"]
        sources = ", ".join(f"{k} {h} h" for k, h in led["hours_by_source"].items()) or "none"
        lines.append(f"  ledger: {led['visits_charged']} visits charged, {sources}; unfunded "
                     f"{led['unfunded_minutes']} min; trial balance {led['trial_balance']}")
    if "timebank" in s:
        tb = s["timebank"]
        lines.append(f"  time bank: {tb['credited_minutes']} credit minutes earned for "
                     f"{tb['served_minutes']} volunteer minutes ({tb['visits_credited']} visits)"
                     f", {s.get('timebank_redeemed_minutes', 0)} redeemed for paid care")
    kinds = ", ".join(f"{k} {n}" for k, n in s["alerts"]["by_kind"].items()) or "none"
    lines.append(f"  alerts {s['alerts']['total']}: {kinds}")
    sim = s.get("simulation")
    if sim:
        lines.append(f"  simulated: {sim['check_ins']} check-ins, {sim['no_shows']} not at "
                     f"home, {sim['queued_offline']} records queued offline and "
                     f"{sim['synced_later']} synced later, ill: {', '.join(sim['sick']) or '-'},"
                     f" {len(sim['emergencies'])} emergencies, {sim['reviews']} reviewed, "
                     f"{sim['refused']} refused; {sim['wall_seconds']} s")
    bad = [k for k, ok in s["invariants"].items() if not ok]
    lines.append("  invariants: " + ("all hold" if not bad else "BROKEN: " + "; ".join(bad)))
    return "\n".join(lines)
