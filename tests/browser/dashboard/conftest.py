"""The dispatch application served by uvicorn in a thread, for the dispatcher dashboard's tests.

No broker and no ledger or time bank in this process: the dashboard shows their KPIs as
unavailable. The application's clock is fixed (and moved by the tests) so that the day's plan,
the checker's "not before now" and late colouring do not depend on when the suite runs.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from fastapi import FastAPI

from contracts.values import CaregiverKind, ServiceType
from services.dispatch import api
from services.dispatch.application import DispatchApplication, NotFound, PlaceOrder
from services.dispatch.domain.visits import DispatchError
from services.runtime.http import install_error_handlers
from services.system import with_pages
from tests.browser.conftest import log_in_as
from tests.support.auth import install_test_auth, token

TZ = ZoneInfo("Asia/Shanghai")
STATION = (29.3050, 120.0745)
HOMES = [  # five elders around the station in Yiwu (稠城街道)
    ("王秀英", "宾王路 12 号", 29.3069, 120.0760),
    ("陈国强", "城中路 88 号", 29.3121, 120.0822),
    ("李桂兰", "朝阳路 5 号", 29.2987, 120.0701),
    ("张德明", "工人路 21 号", 29.3155, 120.0655),
    ("吴翠花", "稠州路 7 号", 29.3010, 120.0830),
]
# (home, service): the nursing visit only the nurse may do.
ORDERS = [(0, ServiceType.MEAL_HELP), (1, ServiceType.CLEANING), (2, ServiceType.MOBILITY),
          (3, ServiceType.REHABILITATION_NURSING), (4, ServiceType.CLEANING)]


@dataclass
class Site:
    base_url: str
    app: DispatchApplication
    now: datetime = field(default_factory=lambda: datetime.now(TZ))


@dataclass(frozen=True)
class SeededDay:
    area: str
    day: date
    carer: str  # meals, cleaning, mobility, personal care
    nurse: str  # nursing, escort, cleaning
    volunteer: str
    elders: list[str]
    visits: dict[str, str]  # order id -> visit id
    unplaceable_order: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = Path(tmp_path_factory.mktemp("dashboard")) / "dispatch.sqlite"
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                               "SQLITE_DBNAME": str(db), "SQLITE_LOCK_TIMEOUT": "10"})
    # Tomorrow 07:30 in the area: every visit of the seeded day lies ahead.
    tomorrow = datetime.now(TZ).date() + timedelta(days=1)
    served = Site("", app, datetime.combine(tomorrow, datetime.min.time(), TZ)
                  + timedelta(hours=7, minutes=30))
    app.clock = lambda: served.now
    app.plan_time_limit_s = 0.3  # "plan the day" and replans from the page: a small day
    http = FastAPI()
    http.include_router(with_pages("dispatch", app, api.build_router(app)))
    install_error_handlers(http, not_found=(NotFound,), conflict=(DispatchError,))
    install_test_auth(http)
    port = _free_port()
    served.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(http, host="127.0.0.1", port=port, log_level="warning"))
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


def seed_day(site: Site, name: str) -> SeededDay:
    """An area with a carer, a nurse and a volunteer, five elders and their orders planned by
    the router; plus one order nobody can serve (its window lies after every shift)."""
    app, day = site.app, site.now.date()
    area = f"dash-{name}"
    people = {"carer": (f"C-{name}-1", "刘美华", CaregiverKind.EMPLOYEE,
                        ["meal", "cleaning", "bathing", "personal_care", "mobility"], "female"),
              "nurse": (f"C-{name}-2", "赵建军", CaregiverKind.EMPLOYEE,
                        ["nursing", "escort", "mobility", "equipment", "cleaning"], "male"),
              "volunteer": (f"V-{name}-3", "周丽", CaregiverKind.VOLUNTEER, ["meal"], "female")}
    for caregiver_id, person, kind, skills, gender in people.values():
        app.register_caregiver(
            caregiver_id=caregiver_id, name=person, kind=kind, service_area_id=area,
            skills=skills, station_lat=STATION[0], station_lon=STATION[1], gender=gender,
            certificate_expires=date(2099, 12, 31) if kind is CaregiverKind.EMPLOYEE else None)
    elders = []
    for i, (elder, address, lat, lon) in enumerate(HOMES):
        elder_id = f"E-{name}-{i}"
        app.register_elder(elder_id=elder_id, name=elder, service_area_id=area, lat=lat,
                           lon=lon, confirmation_code="4821", address=address)
        elders.append(elder_id)
    for i, (home, service) in enumerate(ORDERS):
        app.place_order(PlaceOrder(elder_id=elders[home], service_type=service,
                                   requested_date=day, order_id=f"O-{name}-{i}",
                                   await_plan=True))
    late = datetime.combine(day, datetime.min.time(), TZ) + timedelta(hours=21)
    app.place_order(PlaceOrder(elder_id=elders[0], service_type=ServiceType.SHOPPING,
                               requested_date=day, order_id=f"O-{name}-late",
                               window_start=late, window_end=late + timedelta(hours=1),
                               await_plan=True))
    app.plan_day(area, day, time_limit_s=0.3)
    visits = {o.order_id: o.visit_ids[-1] for o in app.list_orders(area, day) if o.visit_ids}
    return SeededDay(area, day, people["carer"][0], people["nurse"][0], people["volunteer"][0],
                     elders, visits, f"O-{name}-late")


def open_dashboard(page, site: Site, seeded: SeededDay) -> None:  # type: ignore[no-untyped-def]
    """The dashboard on an office screen, showing the seeded area's day, for a dispatcher of
    that area."""
    log_in_as(page, token("dispatcher", service_areas=[seeded.area]))
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{site.base_url}/dispatch/dashboard/?area={seeded.area}")
    page.wait_for_selector("#gantt .bar.planned")
    page.wait_for_selector("#live.on")
