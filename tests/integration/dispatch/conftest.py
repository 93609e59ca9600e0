"""An in-process dispatch service over HTTP (no broker: the paths tested here do not need it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dispatch import api
from services.dispatch.application import DispatchApplication, NotFound
from services.dispatch.domain.visits import DispatchError
from services.runtime.http import install_error_handlers
from tests.support.auth import bearer, install_test_auth

AREA = "test-area"
HOME = {"E-1": (29.3069, 120.0760), "E-2": (29.3121, 120.0822), "E-3": (29.2987, 120.0701),
        "E-4": (29.3155, 120.0655)}
STATION = (29.3050, 120.0745)


def http_app(app: DispatchApplication) -> FastAPI:
    """The dispatch router with the same error mapping and token check the host installs."""
    web = FastAPI()
    web.include_router(api.build_router(app))
    install_error_handlers(web, not_found=(NotFound,), conflict=(DispatchError,))
    return install_test_auth(web)


@pytest.fixture
def dispatch_app() -> Iterator[DispatchApplication]:
    app = DispatchApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.plan_time_limit_s = 1.0
    yield app
    app.close()


@pytest.fixture
def client(dispatch_app: DispatchApplication) -> Iterator[TestClient]:
    """An administrator's client (tests of who may do what send their own headers)."""
    with TestClient(http_app(dispatch_app), headers=bearer("admin")) as c:
        yield c


def seed(client: TestClient, *, certificate_expires: date = date(2027, 12, 31)) -> None:
    """Four elders and three caregivers (two employees, one volunteer) in one area."""
    codes = {"E-1": "1111", "E-2": "2222", "E-3": "3333", "E-4": "4444"}
    names = {"E-1": "王秀英", "E-2": "陈国强", "E-3": "李桂兰", "E-4": "张德明"}
    for elder_id, (lat, lon) in HOME.items():
        r = client.post("/dispatch/elders", json={
            "elder_id": elder_id, "name": names[elder_id], "service_area_id": AREA,
            "lat": lat, "lon": lon, "confirmation_code": codes[elder_id],
            "address": f"稠城街道 {elder_id} 号", "family_phone": "13800000000"})
        assert r.status_code == 201, r.text
    caregivers: list[dict[str, Any]] = [
        {"caregiver_id": "C-1", "name": "刘美华", "kind": "employee", "gender": "female",
         "skills": ["meal", "cleaning", "bathing", "personal_care", "mobility"],
         "provider_id": "P-1", "certificate_expires": certificate_expires.isoformat()},
        {"caregiver_id": "C-2", "name": "赵建军", "kind": "employee", "gender": "male",
         "skills": ["nursing", "escort", "mobility", "cleaning", "meal"],
         "provider_id": "P-2", "certificate_expires": "2027-06-30"},
        {"caregiver_id": "V-1", "name": "周丽", "kind": "volunteer", "gender": "female",
         "skills": ["meal"]},
    ]
    for c in caregivers:
        r = client.post("/dispatch/caregivers", json={
            **c, "service_area_id": AREA, "station_lat": STATION[0],
            "station_lon": STATION[1], "work_days": [0, 1, 2, 3, 4, 5, 6]})
        assert r.status_code == 201, r.text
