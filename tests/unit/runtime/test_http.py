"""HTTP error mapping shared by every service."""

from eventsourcing.persistence import IntegrityError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.runtime.http import install_error_handlers


class Missing(LookupError):
    pass


class Broken(ValueError):
    pass


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, not_found=(Missing,), conflict=(Broken,))

    @app.get("/missing")
    def missing() -> None:
        raise Missing("no elder E-9")

    @app.get("/broken")
    def broken() -> None:
        raise Broken("cannot check in a visit that is verified")

    @app.post("/race")
    def race() -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    return app


def test_domain_errors_become_4xx_with_the_reason():
    """Unknown records are 404 and broken rules 409, each with the reason in words."""
    client = TestClient(_app())
    assert client.get("/missing").json() == {"detail": "no elder E-9", "error": "Missing"}
    response = client.get("/broken")
    assert response.status_code == 409 and "verified" in response.json()["detail"]


def test_a_command_racing_another_writer_gets_a_409_not_a_500():
    """A save that collides with a concurrent write answers 409 'repeat the request'."""
    response = TestClient(_app()).post("/race")
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    assert "repeat the request" in response.json()["detail"]


def test_a_page_serves_its_index_and_assets_and_nothing_else(tmp_path):
    """{path} redirects to {path}/; known asset types in the folder are served, never revalidated
    from cache; anything else (unknown types, other folders) is 404."""
    from fastapi import APIRouter

    from services.runtime.http import add_page

    (tmp_path / "index.html").write_text("<h1>页面</h1>", encoding="utf-8")
    (tmp_path / "app.js").write_text("1;", encoding="utf-8")
    (tmp_path / "secret.py").write_text("x", encoding="utf-8")
    router = APIRouter()
    add_page(router, "/svc/app", tmp_path, "A page.")
    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/svc/app", follow_redirects=False).headers["location"] == "/svc/app/"
    index = client.get("/svc/app/")
    assert index.status_code == 200 and "页面" in index.text
    script = client.get("/svc/app/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache"
    assert client.get("/svc/app/secret.py").status_code == 404
    assert client.get("/svc/app/..%2Fsecret.py").status_code == 404


def test_plain_endpoints_run_on_request_threads_in_the_request_context():
    """A plain `def` endpoint of an OffLoopRoute router runs off the event loop, on a request
    thread, and sees what a dependency put in the context (the principal, the audit stamp);
    its parameters and response model are FastAPI's as before; async endpoints stay on the
    loop."""
    import contextvars
    import threading

    from fastapi import APIRouter, Depends
    from pydantic import BaseModel

    from services.runtime.http import OffLoopRoute

    caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="nobody")

    async def who(name: str = "anon") -> None:
        caller.set(name)

    class Body(BaseModel):
        n: int

    router = APIRouter(route_class=OffLoopRoute, dependencies=[Depends(who)])

    @router.post("/plain/{item}")
    def plain(item: str, body: Body) -> dict[str, object]:
        return {"item": item, "n": body.n, "caller": caller.get(),
                "thread": threading.current_thread().name}

    @router.get("/async")
    async def on_loop() -> dict[str, str]:
        return {"thread": threading.current_thread().name}

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        answer = client.post("/plain/x?name=carer", json={"n": 3}).json()
        assert answer["item"] == "x" and answer["n"] == 3 and answer["caller"] == "carer"
        assert answer["thread"].startswith("request")
        assert client.post("/plain/x", json={"n": "three"}).status_code == 422
        assert not client.get("/async").json()["thread"].startswith("request")


def test_routes_turning_away_paths_early_route_every_request_as_before() -> None:
    """OffLoopRoute turns away a path that does not start with its fixed beginning without
    trying its pattern. For a path made from every route of the whole system, with every
    method, the route chosen (the first full match, else the first partial one: 405) is the
    one FastAPI's own matching chooses."""
    from fastapi.routing import APIRoute
    from starlette.routing import Match

    from services.cli import system_http_app
    from services.runtime.http import OffLoopRoute

    routes = system_http_app().router.routes
    assert sum(isinstance(r, OffLoopRoute) for r in routes) > 50

    def chosen(scope: dict, match: object) -> object:
        partial = None
        for route in routes:
            found, _ = match(route, scope)
            if found is Match.FULL:
                return route
            if found is Match.PARTIAL and partial is None:
                partial = route
        return partial

    def plain(route: object, scope: dict) -> object:
        return (APIRoute.matches(route, scope) if isinstance(route, APIRoute)
                else route.matches(scope))

    turned_away = 0
    for route in routes:
        path = getattr(route, "path_format", None)
        if path is None:
            continue
        sample = "/".join("x-1" if part.startswith("{") else part for part in path.split("/"))
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            scope = {"type": "http", "method": method, "path": sample, "root_path": "",
                     "headers": []}
            assert chosen(scope, lambda r, s: r.matches(s)) is chosen(scope, plain), (
                method, sample)
        turned_away += sum(isinstance(r, OffLoopRoute) and not sample.startswith(r.fixed_prefix)
                           for r in routes)
    assert turned_away > 0
