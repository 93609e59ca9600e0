"""HTTP plumbing every service uses: clear errors for rule violations and unknown records."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


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

    for exc in not_found:
        app.add_exception_handler(exc, handler(404))
    for exc in conflict:
        app.add_exception_handler(exc, handler(409))
    for exc in unprocessable:
        app.add_exception_handler(exc, handler(422))
