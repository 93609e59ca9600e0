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
