"""Authorisation declared next to each endpoint, enforced on every request, tabulated from code.

An endpoint names the roles that may call it with `allow(...)`; a grant is either for any record
(``anyone("auditor")``) or only for the caller's own (``own("caregiver", "own visits",
check)``), where the check looks at the request (path, query, JSON body) and, if it must, at the
service's records. The administrator may call every endpoint. Nothing is allowed by default: an
endpoint without `allow` answers 401 to everyone (see `check_every_route_guarded`).

`access_table(app)` reads the grants back from the routes; ``homecare security table`` writes it
to docs/security/access.md and tests/unit/runtime/test_access_table.py keeps both in step and
calls every cell.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.security.utils import get_authorization_scheme_param

from services.runtime.auth import (
    ROLES,
    Auth,
    AuthenticationError,
    Principal,
    current_principal,
)
from services.runtime.http import OffLoopRoute, off_the_loop

# Documents the scheme in OpenAPI (the "Authorize" button of /docs); the check is ours.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)

# Answer documented on every guarded endpoint.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no bearer token, or an invalid or expired one"},
    403: {"description": "the caller's role, or the record's owner, does not allow this"},
}


@dataclass(frozen=True)
class RequestFacts:
    """What an ownership check may look at."""

    path: dict[str, str]
    query: dict[str, str]
    body: Any = None


Check = Callable[[Principal, RequestFacts], bool]


@dataclass(frozen=True)
class Grant:
    role: str
    # Words for the access table: empty when any record is allowed.
    scope: str = ""
    check: Check | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")


def anyone(*roles: str) -> list[Grant]:
    """These roles, for any record."""
    return [Grant(role) for role in roles]


def own(role: str, scope: str, check: Check) -> Grant:
    """This role, only where `check(principal, facts)` says the record is the caller's."""
    return Grant(role, scope, check)


# Common checks -------------------------------------------------------------------------------


def in_own_areas(area_of: Callable[[RequestFacts], str | None]) -> Check:
    """The record's service area is one of the caller's."""
    return lambda p, f: (area := area_of(f)) is not None and area in p.service_areas


def is_own_caregiver(caregiver_of: Callable[[RequestFacts], str | None]) -> Check:
    return lambda p, f: p.caregiver_id is not None and caregiver_of(f) == p.caregiver_id


def is_own_volunteer(person_of: Callable[[RequestFacts], str | None]) -> Check:
    return lambda p, f: p.volunteer_id is not None and person_of(f) == p.volunteer_id


def is_own_elder(elder_of: Callable[[RequestFacts], str | None]) -> Check:
    return lambda p, f: (elder := elder_of(f)) is not None and elder in p.elder_ids


def path(name: str) -> Callable[[RequestFacts], str | None]:
    return lambda f: f.path.get(name)


def body(name: str) -> Callable[[RequestFacts], str | None]:
    def value(f: RequestFacts) -> str | None:
        if isinstance(f.body, dict) and f.body.get(name) is not None:
            return str(f.body[name])
        return None
    return value


def query(name: str) -> Callable[[RequestFacts], str | None]:
    return lambda f: f.query.get(name)


# Enforcement ---------------------------------------------------------------------------------


def _auth_of(request: Request) -> Auth:
    auth = getattr(request.app.state, "auth", None)
    if auth is None:  # fail closed: an app built without install_auth serves nobody
        raise HTTPException(503, "authentication is not configured on this server")
    return auth


async def authenticate(request: Request, token: str | None, *,
                       token_in_query: bool = False) -> Principal:
    if not token and token_in_query:
        # EventSource (server-sent events) cannot send headers: the stream takes the token in
        # the query string instead, for that endpoint only.
        token = request.query_params.get("access_token")
    if not token:
        scheme, param = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() == "bearer" and param:
            token = param
    if not token:
        raise HTTPException(401, "log in first: send 'Authorization: Bearer <token>' "
                                 "(POST /auth/token issues one)",
                            headers={"WWW-Authenticate": "Bearer"})
    auth = _auth_of(request)
    try:
        if auth.verifier.fetches_keys:
            return await asyncio.to_thread(auth.verifier.verify, token)
        return auth.verifier.verify(token)
    except AuthenticationError as error:
        raise HTTPException(401, str(error), headers={
            "WWW-Authenticate": 'Bearer error="invalid_token"'}) from None


async def _facts(request: Request) -> RequestFacts:
    data: Any = None
    if request.method in ("POST", "PUT", "PATCH"):
        raw = await request.body()
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None  # the endpoint answers 422 for it after the check
    return RequestFacts(dict(request.path_params), dict(request.query_params), data)


def allow(*grants: Grant | Iterable[Grant], token_in_query: bool = False) -> Any:
    """The dependency that lets only these grants (and the administrator) through."""
    flat: list[Grant] = [Grant("admin")]
    for grant in grants:
        flat.extend([grant] if isinstance(grant, Grant) else grant)

    async def authorize(request: Request, token: str | None = Depends(bearer_scheme)
                        ) -> Principal:
        principal = await authenticate(request, token, token_in_query=token_in_query)
        mine = [g for g in flat if g.role == principal.role]
        if not mine:
            raise HTTPException(403, f"the role {principal.role} may not "
                                     f"{request.method} {request.url.path}")
        if all(g.check is not None for g in mine):
            facts = await _facts(request)
            checks = [g.check for g in mine if g.check is not None]
            # Checks may read the service's records: off the event loop.
            allowed = await off_the_loop(
                lambda: any(check(principal, facts) for check in checks))
            if not allowed:
                scopes = " or ".join(g.scope for g in mine)
                raise HTTPException(403, f"a {principal.role} may do this only for {scopes}")
        current_principal.set(principal)
        return principal

    authorize.grants = tuple(flat)  # type: ignore[attr-defined]
    return Depends(authorize)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    in_schema: bool
    grants: tuple[Grant, ...] | None


def _grants(dependant: Any) -> tuple[Grant, ...] | None:
    for sub in getattr(dependant, "dependencies", None) or ():
        grants = getattr(sub.call, "grants", None)
        if grants is not None:
            return grants  # type: ignore[no-any-return]
    return None


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every HTTP endpoint of the app with its grants, through included routers too (FastAPI
    keeps included routers as branches: their effective routes carry the full path)."""
    found: list[Endpoint] = []

    def visit(route: Any, full_path: str, in_schema: bool, dependant: Any) -> None:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods):
                found.append(Endpoint(method, full_path, in_schema, _grants(dependant)))

    for route in app.routes:
        if isinstance(route, APIRoute):
            visit(route, route.path_format, route.include_in_schema, route.dependant)
        elif hasattr(route, "effective_route_contexts"):
            for ctx in route.effective_route_contexts():
                visit(ctx.original_route, ctx.path_format or ctx.path, ctx.include_in_schema,
                      ctx.dependant or getattr(ctx.original_route, "dependant", None))
    return found


# Routes that answer without a token: health, login and the pages' static files (the pages
# then log in; their data comes from guarded endpoints).
PUBLIC_PATHS = {"/healthz", "/readyz", "/asyncapi/{service}", "/auth/token", "/auth/jwks.json",
                "/auth/login.js"}


def is_public(endpoint: Endpoint) -> bool:
    return endpoint.path in PUBLIC_PATHS or not endpoint.in_schema


def check_every_route_guarded(app: FastAPI) -> list[str]:
    """Endpoints in the API that are neither public nor guarded (should be none)."""
    return [f"{e.method} {e.path}" for e in endpoints(app)
            if not is_public(e) and e.grants is None]


def document_auth_responses(app: FastAPI) -> None:
    """401 and 403 in the OpenAPI document of every operation that needs a token."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        responses = operation.setdefault("responses", {})
                        for status, doc in AUTH_RESPONSES.items():
                            responses.setdefault(str(status), dict(doc))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def access_table(app: FastAPI) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, {role: "yes" | "own: …" | "no"}) for every guarded endpoint."""
    rows = []
    for endpoint in endpoints(app):
        if is_public(endpoint):
            continue
        grants = endpoint.grants or ()
        cells = {}
        for role in ROLES:
            mine = [g for g in grants if g.role == role]
            if not mine:
                cells[role] = "no"
            elif any(g.check is None for g in mine):
                cells[role] = "yes"
            else:
                cells[role] = "own: " + " or ".join(g.scope for g in mine)
        rows.append((endpoint.method, endpoint.path, cells))
    return sorted(rows, key=lambda r: (r[1], r[0]))


def access_table_markdown(app: FastAPI) -> str:
    lines = [
        "# Who may call what",
        "",
        "Generated from the code by `homecare security table` (do not edit by hand); the tests",
        "compare this file with the code and call every cell with a token of that role.",
        "\"yes\": any record; \"own: …\": only the caller's own records (from the token's",
        "claims); \"no\": 403. Without a token every endpoint below answers 401.",
        "",
        "| endpoint | " + " | ".join(ROLES) + " |",
        "| --- | " + " | ".join("---" for _ in ROLES) + " |",
    ]
    for method, route_path, cells in access_table(app):
        lines.append(f"| `{method} {route_path}` | " + " | ".join(cells[r] for r in ROLES) + " |")
    return "\n".join(lines) + "\n"


# Wiring --------------------------------------------------------------------------------------


def install_auth(app: FastAPI, auth: Auth) -> None:
    """Check callers on this app: the token endpoints, and 401/403 documented on every guarded
    endpoint. Call after the routers are included."""
    app.state.auth = auth
    router = APIRouter(prefix="/auth", tags=["auth"], route_class=OffLoopRoute)

    @router.post("/token", responses={401: {"description": "unknown user or wrong password"},
                                      404: {"description": "this server issues no tokens"}})
    async def token(form: OAuth2PasswordRequestForm = Depends()) -> dict[str, Any]:
        """Log in (OAuth2 password flow, local runs only): an access token for the user."""
        if auth.users is None or auth.issuer is None:
            raise HTTPException(404, "this server issues no tokens: log in at the identity "
                                     "provider")
        try:
            principal = await asyncio.to_thread(auth.users.authenticate, form.username,
                                                form.password)
        except AuthenticationError as error:
            raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None
        ttl = 12 * 3600 if principal.role in ("caregiver", "volunteer") else 8 * 3600
        return {"access_token": auth.issuer.issue(principal, ttl), "token_type": "bearer",
                "expires_in": ttl, "role": principal.role}

    @router.get("/jwks.json", responses={404: {"description": "this server issues no tokens"}})
    async def jwks() -> dict[str, Any]:
        """The public keys of this server's tokens (local runs)."""
        if auth.issuer is None:
            raise HTTPException(404, "this server issues no tokens")
        return auth.issuer.jwks()

    @router.get("/me")
    async def me(principal: Principal = allow(anyone(*ROLES))) -> dict[str, Any]:
        """Who the token says the caller is, and what is theirs."""
        return principal.claims()

    @router.get("/login.js", include_in_schema=False)
    async def login_js() -> FileResponse:
        return FileResponse(LOGIN_SCRIPT, media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.include_router(router)
    document_auth_responses(app)


LOGIN_SCRIPT = Path(__file__).with_name("login.js")
