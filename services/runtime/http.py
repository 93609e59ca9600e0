"""HTTP plumbing every service uses: clear errors for rule violations and unknown records."""

from __future__ import annotations

from pathlib import Path

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse


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
