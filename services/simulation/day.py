"""A simulated day at accelerated time, through the real API.

Every caregiver and volunteer is an agent that follows its route as dispatch gives it (fetched
again before each stop, so replans and urgent insertions reach it): leaves in time for the next
visit, travels (the router's travel model times seeded traffic noise), checks in at the elder's
door, stays as long as the visit really takes (some run long), checks out with the elder's code
and the catalogue's tasks. The day's noise (services.simulation.district.Noise) adds an elder
not at home (a welfare check escalates to the family), a caregiver falling ill (reported; the
replan is accepted), a phone offline for an hour (its records are queued and sent when it is
back, with their original times) and the emergencies, placed at their time of day.

Time: a discrete-event loop over simulated time. With the system embedded, dispatch's clock is
the simulation's clock (services.simulation.embedded.SimClock), every `at` sent equals the
simulated now, and the area sweep runs every 10 simulated minutes. Against a remote system the
day must lie in the past (every `at` <= now) and there is no sweep until the end.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time as wall
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.dispatch.routing.travel import HaversineProvider, LatLon
from services.simulation.district import CaregiverRecord, District
from services.simulation.embedded import SimClock
from services.simulation.loader import TZ, local, order_body

Progress = Callable[[str], None]
TRAVEL = HaversineProvider()


@dataclass
class Agent:
    caregiver: CaregiverRecord
    position: tuple[float, float]
    done: set[str] = field(default_factory=set)
    stopped: bool = False
    sick: bool = False
    idle: bool = False
    token: int = 0
    offline_until: datetime | None = None
    loses_signal: bool = False  # the next record finds no network (a village without signal)
    queue: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    travel_minutes: int = 0
    visits: int = 0


@dataclass
class DayLog:
    """What the simulator did (for the summary and the what-if report)."""

    actual_travel_minutes: int = 0
    check_ins: int = 0
    check_outs: int = 0
    no_shows: int = 0
    queued_records: int = 0
    synced_records: int = 0
    emergencies: list[dict[str, Any]] = field(default_factory=list)
    sick: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    reviews: int = 0
    wall_seconds: float = 0.0


class DaySimulator:
    def __init__(self, client: httpx.AsyncClient, district: District, clock: SimClock, *,
                 clock_controlled: bool = True, speed: float = 0.0,
                 progress: Progress = lambda _: None, sweep_every_min: int = 10,
                 tick: Callable[[], Awaitable[None]] | None = None) -> None:
        self.client = client
        self.d = district
        self.area = district.service_area_id
        self.day = district.day
        self.clock = clock
        self.controlled = clock_controlled
        self.speed = speed  # simulated seconds per real second; 0: as fast as possible
        self.progress = progress
        self.sweep_every = sweep_every_min
        self.tick = tick
        self.log = DayLog()
        self.elders = {e.elder_id: e for e in district.elders}
        self.agents = {c.caregiver_id: Agent(c, (c.station_lat, c.station_lon))
                       for c in district.caregivers}
        self._heap: list[tuple[datetime, int, Callable[..., Awaitable[None]], tuple[Any, ...]]]
        self._heap = []
        self._seq = itertools.count()

    # Event loop ------------------------------------------------------------------------------
    def at(self, when: datetime, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), handler, args))

    async def run(self) -> DayLog:
        started = wall.monotonic()
        day_start = local(self.day, "07:00", TZ)
        self.clock.advance(day_start)
        for a in self.agents.values():
            self.at(local(self.day, a.caregiver.shift_start, TZ), self._next, a)
        noise = self.d.noise
        if noise.sick_caregiver in self.agents:
            self.at(local(self.day, noise.sick_at, TZ), self._fall_ill,
                    self.agents[noise.sick_caregiver])
        if noise.offline_caregiver in self.agents:
            self.at(local(self.day, noise.offline_from, TZ), self._go_offline,
                    self.agents[noise.offline_caregiver])
        if self.controlled:
            sweep = day_start
            while sweep < local(self.day, "19:30", TZ):
                sweep += timedelta(minutes=self.sweep_every)
                self.at(sweep, self._sweep_and_report)
            for o in self.d.orders:
                if o.emergency and o.at:
                    self.at(local(self.day, o.at, TZ), self._emergency, o)
        real0, sim0 = wall.monotonic(), day_start
        while self._heap:
            when, _, handler, args = heapq.heappop(self._heap)
            if self.speed > 0:
                due = real0 + (when - sim0).total_seconds() / self.speed
                if due > wall.monotonic():
                    await asyncio.sleep(due - wall.monotonic())
            self.clock.advance(when)
            await handler(*args)
            if all(a.stopped for a in self.agents.values()) and all(
                    h == self._sweep_and_report for _, _, h, _ in self._heap):
                break  # only sweeps left: the evening sweep below does their work
            if self.tick is not None:
                await self.tick()
        # Evening: whatever never started is missed; the centre reviews what needs review.
        self.clock.advance(local(self.day, "21:30", TZ))
        await self._sweep()  # a remote system sweeps at its own (later) now: the same result
        await self._review()
        self.log.wall_seconds = round(wall.monotonic() - started, 2)
        self.log.actual_travel_minutes = sum(a.travel_minutes for a in self.agents.values())
        self.progress(await self._status())
        return self.log

    async def _status(self) -> str:
        visits = (await self.client.get(f"/dispatch/areas/{self.area}/visits",
                                        params={"date": self.day.isoformat()})).json()
        states: dict[str, int] = {}
        for v in visits:
            states[v["state"]] = states.get(v["state"], 0) + 1
        text = ", ".join(f"{k} {n}" for k, n in sorted(states.items()))
        return f"{self.clock.now.astimezone(TZ):%H:%M} {len(visits)} visits: {text}"

    async def _sweep_and_report(self) -> None:
        await self._sweep()
        if self.clock.now.minute == 0:
            self.progress(await self._status())

    async def _sweep(self) -> None:
        await self.client.post(f"/dispatch/areas/{self.area}/sweep")

    # Agents ----------------------------------------------------------------------------------
    def _shift_end(self, a: Agent) -> datetime:
        return local(self.day, a.caregiver.shift_end, TZ)

    async def _next(self, a: Agent, token: int | None = None) -> None:
        if a.stopped or (token is not None and token != a.token):
            return
        a.idle = False
        if a.sick:
            self._go_home(a)
            return
        now = self.clock.now
        r = await self.client.get(f"/dispatch/caregivers/{a.caregiver.caregiver_id}/route",
                                  params={"date": self.day.isoformat()})
        stops = [s for s in r.json()["visits"] if s["state"] in ("scheduled", "en_route")
                 and s["visit_id"] not in a.done] if r.status_code == 200 else []
        if not stops:
            if now < self._shift_end(a):
                a.idle = True
                self.at(now + timedelta(minutes=15), self._next, a, a.token)
            else:
                self._go_home(a)
            return
        stop = stops[0]
        base = TRAVEL.minutes(LatLon(*a.position), LatLon(stop["lat"], stop["lon"]),
                              a.caregiver.travel_mode)
        travel = max(0, round(base * self.d.noise.traffic(a.caregiver.caregiver_id,
                                                          stop["visit_id"])))
        planned = datetime.fromisoformat(stop["planned_start"])
        urgent = stop["service_type"] == "emergency"
        leave = now if urgent else max(now, planned - timedelta(minutes=base))
        if leave - now > timedelta(minutes=15):
            # Waiting at the station: look at the route again in a while (an emergency or a
            # replan may change it; an idle agent is woken at once).
            a.idle = True
            self.at(min(leave, now + timedelta(minutes=15)), self._next, a, a.token)
            return
        self.at(leave, self._depart, a, stop, travel)

    def _go_home(self, a: Agent) -> None:
        """The day ends: back to the station (counted as travel, as the plan counts it)."""
        a.stopped = True
        station = LatLon(a.caregiver.station_lat, a.caregiver.station_lon)
        a.travel_minutes += TRAVEL.minutes(LatLon(*a.position), station,
                                           a.caregiver.travel_mode)
        a.position = (station.lat, station.lon)

    async def _depart(self, a: Agent, stop: dict[str, Any], travel: int) -> None:
        if a.sick:
            self._go_home(a)
            return
        ok = await self._send(a, f"/dispatch/visits/{stop['visit_id']}/depart", {
            "caregiver_id": a.caregiver.caregiver_id, "at": self._now(),
            "idempotency_key": f"{stop['visit_id']}:depart"})
        if not ok:
            self.at(self.clock.now, self._next, a)
            return
        self.at(self.clock.now + timedelta(minutes=travel), self._arrive, a, stop, travel)

    async def _arrive(self, a: Agent, stop: dict[str, Any], travel: int) -> None:
        a.position = (stop["lat"], stop["lon"])
        a.travel_minutes += travel
        now = self.clock.now
        visit_id = stop["visit_id"]
        if visit_id in self.d.noise.not_home_visits:
            a.done.add(visit_id)
            ok = await self._send(a, f"/dispatch/visits/{visit_id}/no-show", {
                "caregiver_id": a.caregiver.caregiver_id, "at": self._now(),
                "reason": "elder not at home", "lat": stop["lat"], "lon": stop["lon"],
                "idempotency_key": f"{visit_id}:no-show"})
            if ok:
                self.log.no_shows += 1
                if stop["service_type"] == "welfare_check" and a.offline_until is None:
                    # The centre phones the family, who reach the elder (at a neighbour's).
                    await self.client.post(f"/dispatch/visits/{visit_id}/escalation",
                                           json={"outcome": "reached", "by": "centre"})
            self.at(now + timedelta(minutes=5), self._next, a)
            return
        start = now if stop["service_type"] == "emergency" else max(
            now, datetime.fromisoformat(stop["planned_start"]) - timedelta(minutes=10))
        self.at(start, self._check_in, a, stop)

    async def _check_in(self, a: Agent, stop: dict[str, Any]) -> None:
        visit_id = stop["visit_id"]
        lat, lon = self._jitter(stop, "in")
        ok = await self._send(a, f"/dispatch/visits/{visit_id}/check-in", {
            "caregiver_id": a.caregiver.caregiver_id, "at": self._now(), "lat": lat,
            "lon": lon, "accuracy_m": 15, "idempotency_key": f"{visit_id}:in"})
        if not ok:
            self.at(self.clock.now, self._next, a)
            return
        a.done.add(visit_id)
        self.log.check_ins += 1
        minutes = self.d.noise.visit_length(stop["planned_minutes"], visit_id)
        self.at(self.clock.now + timedelta(minutes=minutes), self._check_out, a, stop)

    async def _check_out(self, a: Agent, stop: dict[str, Any]) -> None:
        visit_id = stop["visit_id"]
        lat, lon = self._jitter(stop, "out")
        elder = self.elders.get(stop["elder_id"])
        body: dict[str, Any] = {
            "caregiver_id": a.caregiver.caregiver_id, "at": self._now(), "lat": lat,
            "lon": lon, "accuracy_m": 15, "tasks_done": list(stop.get("tasks") or []),
            "idempotency_key": f"{visit_id}:out"}
        if stop.get("needs_confirmation") and elder is not None:
            body["confirmation_code"] = elder.confirmation_code
        if await self._send(a, f"/dispatch/visits/{visit_id}/check-out", body):
            self.log.check_outs += 1
            a.visits += 1
        self.at(self.clock.now, self._next, a)

    def _jitter(self, stop: dict[str, Any], step: str) -> tuple[float, float]:
        """A phone position within ~30 m of the door."""
        u = self.d.noise.factor("gps", stop["visit_id"], step)
        angle = 2 * math.pi * self.d.noise.factor("gps-angle", stop["visit_id"], step)
        metres = 30 * u
        return (stop["lat"] + metres * math.cos(angle) / 111_320,
                stop["lon"] + metres * math.sin(angle) / (111_320 * math.cos(
                    math.radians(stop["lat"]))))

    def _now(self) -> str:
        return self.clock.now.isoformat()

    async def _send(self, a: Agent, path: str, body: dict[str, Any]) -> bool:
        """Send a record now, or queue it while the phone is offline (sent later, in order,
        with its original time). False when dispatch refuses it (e.g. moved by a replan)."""
        if a.loses_signal:
            a.loses_signal = False
            a.offline_until = self.clock.now + timedelta(minutes=self.d.noise.offline_minutes)
            self.at(a.offline_until, self._back_online, a)
        if a.offline_until is not None and self.clock.now < a.offline_until:
            a.queue.append((path, body))
            self.log.queued_records += 1
            return True
        r = await self._post(path, body)
        if r.status_code >= 400:
            self.log.refused.append(f"{path} {r.status_code}: {r.text[:200]}")
            return False
        return True

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST, retried when dispatch says the visit changed concurrently (a funding answer
        consumed at the same moment): the phone would simply send again."""
        for attempt in range(5):
            r = await self.client.post(path, json=body)
            if r.status_code != 409 or "ConcurrentChange" not in r.text:
                return r
            await asyncio.sleep(0.05 * (attempt + 1))
        return r

    # Noise -----------------------------------------------------------------------------------
    async def _fall_ill(self, a: Agent) -> None:
        a.sick = True
        self.log.sick.append(a.caregiver.caregiver_id)
        r = await self.client.post(f"/dispatch/caregivers/{a.caregiver.caregiver_id}/sick",
                                   json={"at": self._now(), "reason": "fell ill (simulated)"})
        if r.status_code >= 400:
            self.log.refused.append(f"sick {r.status_code}: {r.text[:200]}")
        self._wake_idle()

    async def _go_offline(self, a: Agent) -> None:
        """From the next record the phone sends on, it has no network for the noise's hour.
        The noise names the phone; if that caregiver has nothing left to do, the first other
        caregiver who has loses the signal instead."""
        others = sorted((x for x in self.agents.values() if x is not a),
                        key=lambda x: x.caregiver.caregiver_id)
        for agent in [a, *others]:
            if agent.stopped or agent.sick:
                continue
            r = await self.client.get(
                f"/dispatch/caregivers/{agent.caregiver.caregiver_id}/route",
                params={"date": self.day.isoformat()})
            if r.status_code == 200 and any(
                    s["state"] in ("scheduled", "en_route") and s["visit_id"] not in agent.done
                    for s in r.json()["visits"]):
                agent.loses_signal = True
                self.log.offline.append(agent.caregiver.caregiver_id)
                return

    async def _back_online(self, a: Agent) -> None:
        a.offline_until = None
        queued, a.queue = a.queue, []
        for path, body in queued:
            r = await self._post(path, body)
            if r.status_code >= 400:
                self.log.refused.append(f"sync {path} {r.status_code}: {r.text[:200]}")
            else:
                self.log.synced_records += 1

    async def _emergency(self, o: Any) -> None:
        body = order_body(o, self.day)
        r = await self.client.post("/dispatch/orders", json=body)
        visit = r.json().get("visit") if r.status_code == 201 else None
        self.log.emergencies.append({"order_id": o.order_id, "elder_id": o.elder_id,
                                     "at": self.clock.now.isoformat(),
                                     "caregiver_id": visit["caregiver_id"] if visit else None})
        self._wake_idle()

    def _wake_idle(self) -> None:
        for agent in self.agents.values():
            if agent.idle and not agent.stopped:
                agent.idle = False
                agent.token += 1
                self.at(self.clock.now, self._next, agent)

    async def _review(self) -> None:
        """The centre's reviewer approves visits that need review (long visits, positions)."""
        visits = (await self.client.get(f"/dispatch/areas/{self.area}/visits",
                                        params={"date": self.day.isoformat()})).json()
        for v in visits:
            if v["state"] == "checked_out" and v["needs_review"]:
                r = await self.client.post(f"/dispatch/visits/{v['visit_id']}/review", json={
                    "decision": "approve", "by": "centre reviewer",
                    "reason": "checked with the elder by phone (simulated)"})
                if r.status_code < 400:
                    self.log.reviews += 1
