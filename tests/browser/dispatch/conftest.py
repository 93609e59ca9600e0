"""The dispatch application served by uvicorn in a thread, for the caregiver page's tests.

No broker: the page talks HTTP only, and its router and the API act on the application directly.
The server counts the requests it receives so that a test can tell "served by the service
worker" from "served by the network". Callers are checked with the test key (tests/support/
auth.py tokens); the same issuer also logs in the users of `site.users` through the page's form.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from fastapi import FastAPI, Request

from contracts.values import CaregiverKind, ServiceType
from services.dispatch import api
from services.dispatch.application import DispatchApplication, NotFound, PlaceOrder
from services.dispatch.domain.visits import DispatchError
from services.runtime.access import install_auth
from services.runtime.auth import Auth, UserStore
from services.runtime.http import install_error_handlers
from services.system import with_pages
from tests.support.auth import test_auth

TZ = ZoneInfo("Asia/Shanghai")
STATION = (29.3050, 120.0745)
HOMES = [  # three elders around the station in Yiwu
    ("王秀英", "稠城街道 宾王路 12 号", 29.3069, 120.0760, "4821"),
    ("陈国强", "稠城街道 城中路 88 号", 29.3121, 120.0822, "7315"),
    ("李桂兰", "稠城街道 朝阳路 5 号", 29.2987, 120.0701, "2290"),
]
SERVICES = [ServiceType.MEAL_HELP, ServiceType.CLEANING, ServiceType.MOBILITY]


@dataclass
class Site:
    base_url: str
    app: DispatchApplication
    users: UserStore
    requests: list[str] = field(default_factory=list)
    route_delay_s: float = 0.0  # a weak signal: route answers that take this long


@dataclass(frozen=True)
class Day:
    caregiver_id: str
    visit_ids: list[str]
    homes: list[tuple[str, str, float, float, str]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = Path(tmp_path_factory.mktemp("dispatch"))
    db = folder / "dispatch.sqlite"
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                               "SQLITE_DBNAME": str(db), "SQLITE_LOCK_TIMEOUT": "10"})
    http = FastAPI()
    http.include_router(with_pages("dispatch", app, api.build_router(app)))
    install_error_handlers(http, not_found=(NotFound,), conflict=(DispatchError,))
    # The test key's issuer (bearer()/token() tokens are accepted) with users who log in.
    users = UserStore(folder / "auth" / "users.json")
    install_auth(http, Auth(test_auth().verifier, test_auth().issuer, users))
    port = _free_port()
    served = Site(f"http://127.0.0.1:{port}", app, users)

    @http.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        served.requests.append(f"{request.method} {request.url.path}")
        if served.route_delay_s and request.url.path.endswith("/route"):
            await asyncio.sleep(served.route_delay_s)
        return await call_next(request)

    # Open event streams and slowed-down answers need not be waited for at the end.
    server = uvicorn.Server(uvicorn.Config(http, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield served
    server.should_exit = True
    thread.join(5)
    app.close()


def today() -> date:
    return datetime.now(TZ).date()


def seed_day(app: DispatchApplication, name: str, day: date | None = None) -> Day:
    """One caregiver alone in its own area with three visits on the day, in route order."""
    day = day or today()
    area, caregiver_id = f"area-{name}", f"C-{name}"
    app.register_caregiver(caregiver_id=caregiver_id, name="刘美华", kind=CaregiverKind.EMPLOYEE,
                           service_area_id=area, skills=["meal", "cleaning", "mobility"],
                           station_lat=STATION[0], station_lon=STATION[1],
                           certificate_expires=date(2099, 12, 31), gender="female")
    visit_ids = []
    for i, ((elder, address, lat, lon, code), service) in enumerate(zip(HOMES, SERVICES,
                                                                        strict=True)):
        elder_id = f"E-{name}-{i}"
        app.register_elder(elder_id=elder_id, name=elder, service_area_id=area, lat=lat, lon=lon,
                           confirmation_code=code, address=address)
        _, visit = app.place_order(PlaceOrder(elder_id=elder_id, service_type=service,
                                              requested_date=day, order_id=f"O-{name}-{i}"))
        assert visit is not None and visit.caregiver_id == caregiver_id
        visit_ids.append(visit.visit_id)
    return Day(caregiver_id, visit_ids, list(HOMES))
