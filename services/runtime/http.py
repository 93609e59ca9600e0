"""HTTP plumbing every service uses: clear errors for rule violations and unknown records."""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError
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

    # Two writers changed the same record at once (optimistic concurrency): nothing was saved.
    # Not the client's fault, and not a crash: say so, and that repeating the request is safe.
    async def concurrent(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, headers={"retry-after": "1"}, content={
            "detail": "the record was changed by another request at the same moment; nothing "
                      "was saved: repeat the request", "error": "ConcurrentChange"})

    app.add_exception_handler(IntegrityError, concurrent)
    for exc in not_found:
        app.add_exception_handler(exc, handler(404))
    for exc in conflict:
        app.add_exception_handler(exc, handler(409))
    for exc in unprocessable:
        app.add_exception_handler(exc, handler(422))
