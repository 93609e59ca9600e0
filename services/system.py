"""Composition: builds the three services (or some of them) from the settings."""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import APIRouter

from services.runtime.eventstore import ServiceApplication, ensure_postgres_schema, event_store_env
from services.runtime.host import ServiceUnit
from services.runtime.settings import SERVICE_NAMES, SharedSettings


def build_unit(name: str, settings: SharedSettings) -> ServiceUnit:
    if settings.store == "postgres":
        ensure_postgres_schema(name, settings)
    env = event_store_env(name, settings)
    if name == "dispatch":
        from services.dispatch import api, messaging
        from services.dispatch.application import DispatchApplication, NotFound
        from services.dispatch.domain.visits import DispatchError

        app = DispatchApplication(env, timezone=settings.timezone)
        return ServiceUnit(name, app, api.build_router(app), messaging.messaging_spec(app),
                           {404: (NotFound,), 409: (DispatchError,)})
    if name == "ledger":
        from services.ledger import api, messaging
        from services.ledger.application import LedgerApplication, NotFound, UnknownElder
        from services.runtime.double_entry import LedgerError

        app = LedgerApplication(env, timezone=settings.timezone)
        return ServiceUnit(name, app, api.build_router(app), messaging.messaging_spec(app),
                           {404: (NotFound, UnknownElder), 409: (LedgerError,),
                            422: (ValueError,)})
    if name == "timebank":
        from services.timebank import api, messaging
        from services.timebank.application import NotFound, TimebankApplication

        app = TimebankApplication(env)
        return ServiceUnit(name, app, api.build_router(app), messaging.messaging_spec(app),
                           {404: (NotFound,)})
    raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")


def with_pages(name: str, app: object, router: APIRouter) -> APIRouter:
    """The service's API plus its pages: a service that serves pages has a `web` package whose
    `build_router(app)` returns their routes (static files and the endpoints only pages use)."""
    module = f"services.{name}.web"
    if importlib.util.find_spec(module) is None:
        return router
    return flat_router(router, importlib.import_module(module).build_router(app))


def with_audit(name: str, app: ServiceApplication, router: APIRouter) -> APIRouter:
    """The service's routes plus its audit trail per elder (every service keeps records about
    elders: GET /<service>/elders/{elder_id}/audit, services/runtime/audit_api.py)."""
    from services.runtime.audit_api import audit_router

    return flat_router(router, audit_router(name, app))


def flat_router(*routers: APIRouter) -> APIRouter:
    """One router holding the routes of these (prefixes and dependencies are already in each
    route). FastAPI keeps an included router as a branch and matches a request through every
    level again on the way down: with the pages and the audit trail included around the API,
    routing was a tenth of a check-in's CPU."""
    combined = APIRouter()
    for router in routers:
        combined.routes.extend(router.routes)
    return combined


def build_units(names: list[str], settings: SharedSettings) -> list[ServiceUnit]:
    units = [build_unit(n, settings) for n in names]
    for unit in units:
        unit.router = with_pages(unit.name, unit.application, unit.router)
        unit.router = with_audit(unit.name, unit.application, unit.router)
    return units
