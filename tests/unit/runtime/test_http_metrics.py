"""The host's HTTP middleware: correlation ids in and out, latency by route template and status."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.runtime.observability import HTTP_LATENCY, HttpMetricsMiddleware, correlation_id_var


def web() -> FastAPI:
    app = FastAPI()
    app.add_middleware(HttpMetricsMiddleware)

    @app.get("/metrics-test/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str | None]:  # a sync endpoint: runs in a thread
        return {"thing": thing_id, "correlation_id": correlation_id_var.get()}

    @app.get("/metrics-test/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    return app


def count(route: str, status: str) -> float:
    """Observations so far of GET requests to this route template with this status."""
    samples = [s for m in HTTP_LATENCY.collect() for s in m.samples
               if s.name.endswith("_count") and s.labels.get("route") == route
               and s.labels.get("status") == status]
    return samples[0].value if samples else 0.0


def test_the_callers_correlation_id_reaches_the_endpoint_and_comes_back() -> None:
    """A request's x-correlation-id is what the work it causes is stamped with, and the answer
    carries it back."""
    with TestClient(web()) as client:
        r = client.get("/metrics-test/things/T-1", headers={"x-correlation-id": "req-42"})
    assert r.status_code == 200
    assert r.json()["correlation_id"] == "req-42"
    assert r.headers["x-correlation-id"] == "req-42"
    assert r.headers.get_list("x-correlation-id") == ["req-42"]


def test_a_request_without_one_gets_a_fresh_correlation_id() -> None:
    """Without the header a new id is made up, used for the work and sent back."""
    with TestClient(web()) as client:
        r = client.get("/metrics-test/things/T-1")
    made_up = r.headers["x-correlation-id"]
    assert str(uuid.UUID(made_up)) == made_up
    assert r.json()["correlation_id"] == made_up
    assert correlation_id_var.get() is None  # nothing leaks out of the request


def test_latency_is_counted_by_route_template_and_status() -> None:
    """Each request is one observation under its route's template (not the concrete path) and
    its status; an endpoint that raises counts as 500."""
    route = "/metrics-test/things/{thing_id}"
    before_ok, before_404 = count(route, "200"), count("unmatched", "404")
    before_500 = count("/metrics-test/broken", "500")
    with TestClient(web(), raise_server_exceptions=False) as client:
        client.get("/metrics-test/things/T-1")
        client.get("/metrics-test/things/T-2")
        client.get("/metrics-test/nowhere")
        assert client.get("/metrics-test/broken").status_code == 500
    assert count(route, "200") == before_ok + 2
    assert count("unmatched", "404") == before_404 + 1
    assert count("/metrics-test/broken", "500") == before_500 + 1
