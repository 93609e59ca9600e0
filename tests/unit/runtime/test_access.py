"""`allow`: who gets through an endpoint, and the access table read back from the routes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from services.runtime.access import (
    access_table,
    allow,
    anyone,
    body,
    check_every_route_guarded,
    in_own_areas,
    is_own_caregiver,
    own,
    path,
)
from tests.support.auth import bearer, install_test_auth

VISIT_CAREGIVER = {"V-1": "C-1", "V-2": "C-2"}


def _app() -> FastAPI:
    router = APIRouter()

    @router.get("/areas/{area}/visits",
                dependencies=[allow(own("dispatcher", "own service areas",
                                        in_own_areas(path("area"))), anyone("auditor"))])
    def visits(area: str) -> dict[str, str]:
        return {"area": area}

    @router.post("/visits/{visit_id}/check-in",
                 dependencies=[allow(own("caregiver", "own visits", is_own_caregiver(
                     lambda f: VISIT_CAREGIVER.get(f.path["visit_id"]))))])
    def check_in(visit_id: str) -> dict[str, str]:
        return {"visit": visit_id}

    @router.post("/orders", dependencies=[allow(own("dispatcher", "own service areas",
                                                    in_own_areas(body("area"))))])
    def order(payload: dict[str, str]) -> dict[str, str]:
        return payload

    @router.get("/stream", dependencies=[allow(anyone("dispatcher"), token_in_query=True)])
    def stream() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router)
    return install_test_auth(app)


async def _status(method: str, url: str, headers: dict[str, str] | None = None,
                  **kwargs: object) -> int:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return (await client.request(method, url, headers=headers, **kwargs)).status_code


@pytest.mark.parametrize("method, url, headers, kwargs, expected", [
    ("GET", "/areas/A1/visits", None, {}, 401),
    ("GET", "/areas/A1/visits", {"authorization": "Bearer junk"}, {}, 401),
    ("GET", "/areas/A1/visits", bearer("dispatcher", service_areas=["A1"]), {}, 200),
    ("GET", "/areas/A2/visits", bearer("dispatcher", service_areas=["A1"]), {}, 403),
    ("GET", "/areas/A2/visits", bearer("auditor"), {}, 200),
    ("GET", "/areas/A2/visits", bearer("admin"), {}, 200),
    ("GET", "/areas/A1/visits", bearer("caregiver", caregiver_id="C-1"), {}, 403),
    ("POST", "/visits/V-1/check-in", bearer("caregiver", caregiver_id="C-1"), {}, 200),
    ("POST", "/visits/V-2/check-in", bearer("caregiver", caregiver_id="C-1"), {}, 403),
    ("POST", "/visits/V-9/check-in", bearer("caregiver", caregiver_id="C-1"), {}, 403),
    ("POST", "/visits/V-9/check-in", bearer("auditor"), {}, 403),
    ("POST", "/orders", bearer("dispatcher", service_areas=["A1"]), {"json": {"area": "A1"}}, 200),
    ("POST", "/orders", bearer("dispatcher", service_areas=["A1"]), {"json": {"area": "A2"}}, 403),
    ("POST", "/orders", bearer("dispatcher", service_areas=["A1"]), {"content": b"{bad"}, 403),
    ("GET", "/stream?access_token=" + bearer("dispatcher")["authorization"][7:], None, {}, 200),
    ("GET", "/areas/A2/visits?access_token=" + bearer("auditor")["authorization"][7:], None,
     {}, 401),
])
async def test_who_gets_through(method: str, url: str, headers: dict[str, str] | None,
                                kwargs: dict[str, object], expected: int) -> None:
    """No token or a bad one: 401; a role not named: 403; an owned grant: only the caller's
    own records; the administrator everywhere; a token in the URL only where declared."""
    assert await _status(method, url, headers, **kwargs) == expected


def test_the_table_is_read_back_from_the_routes() -> None:
    """The access table says per endpoint and role what `allow` declared, admin always yes."""
    rows = {(m, p): cells for m, p, cells in access_table(_app())}
    assert rows[("GET", "/areas/{area}/visits")] == {
        "admin": "yes", "dispatcher": "own: own service areas", "caregiver": "no",
        "volunteer": "no", "elder": "no", "finance": "no", "auditor": "yes"}
    assert rows[("POST", "/visits/{visit_id}/check-in")]["caregiver"] == "own: own visits"
    assert check_every_route_guarded(_app()) == []


def test_an_unguarded_endpoint_is_found() -> None:
    """An endpoint added without `allow` is listed, so the system refuses to start with it."""
    app = _app()

    @app.get("/forgotten")
    def forgotten() -> None:
        return None

    assert check_every_route_guarded(app) == ["GET /forgotten"]


async def test_a_local_user_logs_in_and_is_recognised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """POST /auth/token (OAuth2 password flow) gives a token that /auth/me reads back; the
    OpenAPI document declares the bearer scheme and 401/403 on guarded operations."""
    from services.runtime.auth import Principal, auth_from_settings
    from services.runtime.host import Host, create_http_app
    from services.runtime.settings import SharedSettings

    settings = SharedSettings(data_dir=tmp_path, auth_mode="local")
    auth = auth_from_settings(settings)
    assert auth.users is not None
    auth.users.add("li", "a long password", Principal("li", "caregiver", caregiver_id="C-7"))
    app = create_http_app(Host([], settings, bootstrap_servers="unused:9092"), auth=auth)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        wrong = await client.post("/auth/token", data={"username": "li", "password": "nope"})
        assert wrong.status_code == 401
        login = await client.post("/auth/token",
                                  data={"username": "li", "password": "a long password"})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = await client.get("/auth/me", headers={"authorization": f"Bearer {token}"})
        assert me.json() == {"sub": "li", "role": "caregiver", "caregiver_id": "C-7"}
        assert (await client.get("/auth/me")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        operation = schema["paths"]["/auth/me"]["get"]
        assert operation["security"] and {"401", "403"} <= set(operation["responses"])
