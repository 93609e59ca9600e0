"""Units of work of the log-following aggregate cache (services/runtime/aggregate_cache.py):
how fresh a read must be, inside and outside a unit; each HTTP request is one. The cache
against real stores is in tests/integration/runtime/test_aggregate_cache.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.runtime import aggregate_cache
from services.runtime.aggregate_cache import UnitOfWorkMiddleware, fresh_as_of, unit_of_work


def test_outside_a_unit_a_read_must_be_as_fresh_as_now() -> None:
    """No unit: every read checks the log again (as fresh as the library's fast-forward)."""
    before = time.monotonic()
    assert before <= fresh_as_of() <= time.monotonic()


def test_inside_a_unit_reads_share_the_moment_it_started_and_nesting_keeps_it() -> None:
    """Every read of a unit, and of a unit opened inside it, needs the log checked only since
    the outer unit started: one check serves them all."""
    with unit_of_work():
        started = fresh_as_of()
        time.sleep(0.01)
        assert fresh_as_of() == started
        with unit_of_work():
            assert fresh_as_of() == started
    assert fresh_as_of() > started


def test_a_long_unit_reads_nothing_older_than_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit that lasts (an event stream) is checked again once it is older than
    MAX_UNIT_AGE_S."""
    monkeypatch.setattr(aggregate_cache, "MAX_UNIT_AGE_S", 0.02)
    with unit_of_work():
        started = fresh_as_of()
        time.sleep(0.05)
        assert fresh_as_of() >= started + 0.03


def test_each_http_request_is_a_unit_its_threads_inherit() -> None:
    """The middleware opens a unit per request; a blocking endpoint run on a worker thread (as
    the services' endpoints are) sees it. Other ASGI traffic (lifespan) passes through."""
    seen: list[float | None] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        def endpoint() -> None:
            seen.append(aggregate_cache._unit_started.get())
        await asyncio.to_thread(endpoint)

    middleware = UnitOfWorkMiddleware(app)

    async def requests() -> None:
        await middleware({"type": "http"}, None, None)
        await middleware({"type": "http"}, None, None)
        await middleware({"type": "lifespan"}, None, None)

    asyncio.run(requests())
    first, second, lifespan = seen
    assert first is not None and second is not None and second > first
    assert lifespan is None
    assert aggregate_cache._unit_started.get() is None
