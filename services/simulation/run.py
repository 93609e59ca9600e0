"""One simulated day end to end: start the system, load the district, plan, simulate, summarise.

The run directory keeps what a what-if needs to replay the day: ``district.json`` (people, plans,
orders and the day's noise, all seeded), ``summary.json``, and the services' event stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from services.runtime.settings import SERVICE_NAMES
from services.simulation.day import DaySimulator
from services.simulation.district import District
from services.simulation.embedded import SimClock, remote_system, running_system
from services.simulation.loader import (
    TZ,
    Progress,
    call,
    dispatch_welfare_checks,
    load_district,
    local,
    serve_month_so_far,
)


def yesterday() -> date:
    """The last full day in Yiwu: every check-in time of it lies in the past."""
    return (datetime.now(TZ) - timedelta(days=1)).date()


@dataclass
class Policy:
    """What a what-if changes about the recorded day."""

    name: str = "baseline"
    entitlement_low_minutes: int | None = None  # e.g. 360: the 4 h category gets 6 h
    extra_caregivers: int = 0
    routing_time_limit_s: float | None = None
    volunteers_do_welfare_checks: bool = True
    notes: list[str] = field(default_factory=list)

    def apply(self, d: District) -> District:
        """The district as this policy would have it (a copy)."""
        out = District.from_json(d.to_json())
        employees = [c for c in out.caregivers if c.kind == "employee"]
        for i in range(self.extra_caregivers):
            model = employees[i % len(employees)]
            out.caregivers.append(replace(
                model, caregiver_id=f"C-X{i + 1:03d}", name=f"{model.name[:1]}新{i + 1}",
                skills=sorted(set(model.skills) | {"meal", "cleaning", "mobility"})))
        return out


async def simulate_day(district: District, run_dir: Path, *, policy: Policy | None = None,
                       services: tuple[str, ...] = SERVICE_NAMES, serve: bool = False,
                       host: str = "127.0.0.1", port: int = 8000, speed: float = 0.0,
                       broker: bool = True, progress: Progress = print,
                       plan_time_limit_s: float = 2.0, wait_s: float = 60.0,
                       on_ready: Any = None, linger: bool = False,
                       url: str | None = None) -> dict[str, Any]:
    """Run the day in a fresh system under ``run_dir``; returns the summary (also written).
    With ``url``: load the district into the system running there and plan the day, only."""
    from services.simulation.summary import summarise

    policy = policy or Policy()
    d = policy.apply(district)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "district.json").write_text(json.dumps(d.to_json(), ensure_ascii=False, indent=1),
                                           encoding="utf-8")
    clock = SimClock(local(d.day, "06:30", TZ))
    context = remote_system(url, services) if url else running_system(
        run_dir / "stores", clock, services=services, serve=serve, host=host, port=port,
        broker=broker)
    async with context as system:
        client = system.client
        if "dispatch" in system.applications:
            # Replans (illness, overruns) search as long as the daily plan may.
            system.applications["dispatch"].plan_time_limit_s = (
                policy.routing_time_limit_s or plan_time_limit_s)
        if on_ready is not None:
            on_ready(system, d)
        if policy.entitlement_low_minutes is not None and "ledger" in system.services:
            await call(client, "POST", "/ledger/rules/versions", json={
                "version": f"whatif-{policy.name}", "effective_from":
                    d.day.replace(day=1).isoformat(),
                "low_minutes": policy.entitlement_low_minutes, "added_by": "what-if"})
            for p in d.care_plans:  # plans use the entitlement they are given
                if p.monthly_minutes == 240:
                    p.monthly_minutes = policy.entitlement_low_minutes
        if not policy.volunteers_do_welfare_checks:
            await call(client, "PATCH", f"/dispatch/areas/{d.service_area_id}/catalogue/"
                       "welfare_check", json={"volunteer_allowed": False,
                                              "changed_by": "what-if"})
        loaded = await load_district(client, d, services=system.services, progress=progress)
        if "ledger" in system.services and not url:
            loaded["month_so_far"] = await serve_month_so_far(client, d, progress)
        limit = policy.routing_time_limit_s or plan_time_limit_s
        plan = await call(client, "POST", f"/dispatch/areas/{d.service_area_id}/plans",
                          params={"date": d.day.isoformat(), "time_limit_s": limit})
        progress(f"plan: {len(plan['scheduled'])} visits scheduled, {len(plan['unassigned'])} "
                 f"unassigned, {plan['travel_minutes']} travel minutes "
                 f"({plan['solve_seconds']} s, status {plan['status']})")
        loaded["welfare_checks"] = await dispatch_welfare_checks(client, d, progress)
        if url:
            # A running system sweeps with its own clock: a simulated day there would be
            # marked missed as it is played. Load and plan only.
            return {"loaded": loaded, "plan": plan, "url": url}
        simulator = DaySimulator(client, d, clock, clock_controlled=system.clock_controlled,
                                 speed=speed, progress=progress)
        log = await simulator.run()
        summary = await summarise(client, d, services=system.services, plan=plan, log=log,
                                  wait_s=wait_s)
        summary["policy"] = policy.name
        summary["loaded"] = loaded
        summary["refused"] = log.refused[:20]
        (run_dir / "summary.json").write_text(
            json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
        if linger and system.serving is not None:
            from services.simulation.summary import format_summary

            progress(format_summary(summary))
            progress(f"serving on {system.base_url} until Ctrl-C")
            await system.serving  # until Ctrl-C stops the server
    return summary
