"""The system started inside this process for a simulation, as `homecare up` starts it.

`full`: the three services with their event stores (SQLite under ``data_dir``), a local tansu
broker, the consumers and outbox relays of services.runtime.host; served over HTTP on a port
(the dashboard can watch) or reached in-process (headless). `dispatch_only`: dispatch's API
alone, without a broker (fast what-if runs whose KPIs are dispatch's: on-time, travel).
Dispatch's clock is the simulation's clock, so check-ins at simulated times are never "in the
future" and the sweep raises late and missed alerts as they would have happened that day.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from services.runtime.settings import SERVICE_NAMES, SharedSettings


def simulator_headers(auth: Any) -> dict[str, str]:
    """The simulator's bearer token (administrator), for a day's run."""
    from services.runtime.auth import Principal

    token = auth.issuer.issue(Principal(subject="simulator", role="admin"), ttl_s=7 * 24 * 3600)
    return {"authorization": f"Bearer {token}"}


@dataclass
class SimClock:
    """Simulated time; only moves forward."""

    now: datetime

    def advance(self, to: datetime) -> None:
        if to > self.now:
            self.now = to

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RunningSystem:
    client: httpx.AsyncClient
    services: frozenset[str]
    applications: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None  # set when served over a real port
    serving: asyncio.Task[None] | None = None  # the HTTP server, when served
    auth: Any = None  # who may call it (local issuer and users), when started here

    @property
    def clock_controlled(self) -> bool:
        return "dispatch" in self.applications


@contextlib.asynccontextmanager
async def running_system(data_dir: Path, clock: Callable[[], datetime] | None = None, *,
                         services: tuple[str, ...] = SERVICE_NAMES, serve: bool = False,
                         host: str = "127.0.0.1", port: int = 8000,
                         broker: bool = True) -> AsyncIterator[RunningSystem]:
    """Start the services (fresh event stores in ``data_dir``), yield a client, stop them."""
    from fastapi import FastAPI

    from services.runtime.access import install_auth
    from services.runtime.auth import auth_from_settings
    from services.runtime.host import Host, create_http_app
    from services.runtime.http import install_error_handlers
    from services.system import build_units

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = SharedSettings(
        data_dir=data_dir, store="sqlite", kafka_bootstrap_servers=None,
        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500,
        consumer_group_prefix=f"sim-{uuid.uuid4().hex[:8]}", consumer_retry_backoff_s=0.05,
        log_level="WARNING")
    units = build_units(list(services), settings)
    applications = {u.name: u.application for u in units}
    # The simulation plays every actor (hotline, caregivers, volunteers): it acts as the
    # administrator, with a token of the run's own local issuer.
    auth = auth_from_settings(settings)
    headers = simulator_headers(auth)
    if clock is not None and "dispatch" in applications:
        applications["dispatch"].clock = clock
    names = frozenset(services)
    if not broker:
        app = FastAPI(title="homecare (simulation, no broker)")
        for unit in units:
            app.include_router(unit.router)
            install_error_handlers(app, not_found=unit.error_types.get(404, ()),
                                   conflict=unit.error_types.get(409, ()),
                                   unprocessable=unit.error_types.get(422, ()))
        install_auth(app, auth)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://sim", timeout=120, headers=headers)
        try:
            yield RunningSystem(client, names, applications, auth=auth)
        finally:
            await client.aclose()
            for unit in units:
                with contextlib.suppress(Exception):
                    unit.application.close()
        return
    system = Host(units, settings)
    app = create_http_app(system, title="homecare demo", auth=auth)
    if not serve:
        await system.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://sim", timeout=120, headers=headers)
        try:
            yield RunningSystem(client, names, applications, auth=auth)
        finally:
            await client.aclose()
            await system.stop()
        return
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    serving = asyncio.create_task(server.serve())
    base = f"http://{host}:{port}"
    client = httpx.AsyncClient(base_url=base, timeout=120, headers=headers)
    try:
        for _ in range(600):
            if serving.done():
                serving.result()  # raises why it stopped
                raise RuntimeError("the server stopped before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        yield RunningSystem(client, names, applications, base_url=base, serving=serving,
                            auth=auth)
    finally:
        await client.aclose()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 30)


@contextlib.asynccontextmanager
async def remote_system(base_url: str,
                        services: tuple[str, ...] = SERVICE_NAMES) -> AsyncIterator[RunningSystem]:
    """A system already running elsewhere (e.g. `homecare up`): its own clock, so the day must
    lie in the past and there is no sweep until the evening."""
    token = os.environ.get("HOMECARE_TOKEN")
    if not token:
        # `homecare up` on this machine: its local issuer's key is under the data directory.
        from services.runtime.auth import auth_from_settings

        token = simulator_headers(auth_from_settings(SharedSettings()))["authorization"][7:]
    async with httpx.AsyncClient(base_url=base_url, timeout=120,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        yield RunningSystem(client, frozenset(services), {}, base_url=base_url)
