"""HTTP plumbing every service uses: clear errors for rule violations and unknown records."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

from services.runtime.keystore import SubjectErased
from services.runtime.sections import SectionBusy


def install_error_handlers(app: FastAPI, *, not_found: tuple[type[Exception], ...],
                           conflict: tuple[type[Exception], ...],
                           unprocessable: tuple[type[Exception], ...] = ()) -> None:
    """Map domain errors to 404 / 409 / 422 with the reason in words."""

    def handler(status: int):  # type: ignore[no-untyped-def]
        async def respond(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(status_code=status,
                                content={"detail": str(exc).strip("'\""),
                                         "error": type(exc).__name__})
        return respond

    # Two writers changed the same record at once (optimistic concurrency): nothing was saved.
    # Not the client's fault, and not a crash: say so, and that repeating the request is safe.
    async def concurrent(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, headers={"retry-after": "1"}, content={
            "detail": "the record was changed by another request at the same moment; nothing "
                      "was saved: repeat the request", "error": "ConcurrentChange"})

    # A person erased on request cannot be given personal data again (keystore.py).
    async def erased(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc),
                                                      "error": "SubjectErased"})

    # An exclusive section (an area's bookings) stayed busy past the wait: nothing was done.
    async def busy(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, headers={"retry-after": "2"}, content={
            "detail": f"{exc}; nothing was saved: repeat the request", "error": "Busy"})

    app.add_exception_handler(IntegrityError, concurrent)
    app.add_exception_handler(SectionBusy, busy)
    app.add_exception_handler(SubjectErased, erased)
    document_error_responses(app)
    for exc in not_found:
        app.add_exception_handler(exc, handler(404))
    for exc in conflict:
        app.add_exception_handler(exc, handler(409))
    for exc in unprocessable:
        app.add_exception_handler(exc, handler(422))


# The body of every error these handlers (and FastAPI's own) send.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"description": "what is wrong, in words"},
                   "error": {"type": "string", "description": "the kind of error"}},
    "required": ["detail"],
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
BODY_RESPONSES: dict[str, dict[str, Any]] = {
    "400": {"description": "the body is not readable JSON"},
}
RECORD_RESPONSES: dict[str, dict[str, Any]] = {
    "404": {"description": "no such record"},
}
CHANGE_RESPONSES: dict[str, dict[str, Any]] = {
    "409": {"description": "a rule forbids it in the record's present state, or another request "
                           "changed the record at the same moment (nothing was saved)"},
}


# Operations that book an area's caregivers (an exclusive section, services/runtime/sections.py).
BUSY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "the area's bookings stayed busy for 30 s (a long plan run elsewhere); "
                         "nothing was saved: repeat the request after Retry-After",
          "content": _ERROR_CONTENT},
}


def document_error_responses(app: FastAPI) -> None:
    """The errors every service answers with, in the OpenAPI document, once for all routes:
    400 where there is a body (not JSON), 404 where the path or the body names a record, 409
    wherever something is changed (a rule violation or a concurrent write). An operation's own
    ``responses=`` wins. Idempotent: install_error_handlers runs once per service."""
    if getattr(app.state, "error_responses_documented", False):
        return
    app.state.error_responses_documented = True
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
                "Error", ERROR_SCHEMA)
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if not isinstance(operation, dict) or "responses" not in operation:
                        continue
                    documented = dict(BODY_RESPONSES) if "requestBody" in operation else {}
                    if "{" in path or "requestBody" in operation:  # names a record
                        documented.update(RECORD_RESPONSES)
                    if method in ("post", "put", "patch", "delete"):
                        documented.update(CHANGE_RESPONSES)
                    for status, doc in documented.items():
                        operation["responses"].setdefault(status, {**doc,
                                                                   "content": _ERROR_CONTENT})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# Pages ---------------------------------------------------------------------------------------
# Every page is plain HTML/CSS/JS served from its service's static folder: no CDN, no build.
PAGE_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                    ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
                    ".png": "image/png", ".webmanifest": "application/manifest+json"}
# Always revalidate: a page's service worker, not the HTTP cache, is what keeps it offline.
NO_CACHE = {"Cache-Control": "no-cache"}


def add_page(router: APIRouter, path: str, static_dir: Path, description: str) -> None:
    """Serve one page: ``{path}`` redirects to ``{path}/`` (index.html); ``{path}/{name}`` are
    its assets, only files directly in ``static_dir`` with a known type (no ``../``)."""
    static_dir = static_dir.resolve()

    def asset(name: str) -> FileResponse:
        file = (static_dir / name).resolve()
        if file.parent != static_dir or not file.is_file() or file.suffix not in PAGE_MEDIA_TYPES:
            raise HTTPException(404, f"no page asset {name}")
        return FileResponse(file, media_type=PAGE_MEDIA_TYPES[file.suffix], headers=NO_CACHE)

    def root() -> RedirectResponse:
        return RedirectResponse(path + "/")

    def index() -> FileResponse:
        return asset("index.html")

    index.__doc__ = description
    router.add_api_route(path, root, methods=["GET"], include_in_schema=False)
    router.add_api_route(path + "/", index, methods=["GET"], include_in_schema=False)
    router.add_api_route(path + "/{name}", asset, methods=["GET"], include_in_schema=False)


# Blocking work of requests (commands and queries on the event store, ownership checks) runs
# on these threads, handed over by asyncio's executor: anyio's thread hop, which FastAPI uses
# for plain `def` endpoints, cost a check-in about 0.25 ms more CPU (2.4 -> 2.1 ms measured on
# the ASGI app). As many threads as anyio's default limit, so a long request (a day's plan)
# does not hold up the rest.
REQUEST_THREADS = 40
_request_pool = ThreadPoolExecutor(max_workers=REQUEST_THREADS, thread_name_prefix="request")

T = TypeVar("T")


async def off_the_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call on the request threads, in the caller's context (the principal,
    the audit stamp)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _request_pool, functools.partial(context.run, function, *args, **kwargs))


class OffLoopRoute(APIRoute):
    """A route whose plain `def` endpoint runs through :func:`off_the_loop` (FastAPI sees a
    coroutine with the same signature; async endpoints are left as they are)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not (inspect.iscoroutinefunction(endpoint) or inspect.isasyncgenfunction(endpoint)
                or inspect.isgeneratorfunction(endpoint)):
            blocking = endpoint

            @functools.wraps(blocking)
            async def endpoint(*args: Any, **kw: Any) -> Any:
                return await off_the_loop(blocking, *args, **kw)
        super().__init__(path, endpoint, **kwargs)
        # The path's fixed beginning, up to its first parameter: every path this route
        # matches starts with it.
        self.fixed_prefix = self.path_format.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """As FastAPI's, but a path that does not start with the route's fixed beginning is
        turned away before the route's pattern is tried: FastAPI tries each route in turn
        (110 in the whole system), about 100 us per request for a check-in."""
        if (scope["type"] == "http"
                and not get_route_path(scope).startswith(self.fixed_prefix)
                and "effective_route_context" not in scope.get("fastapi", {})):
            return Match.NONE, {}
        return super().matches(scope)
