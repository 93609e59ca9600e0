"""Bearer tokens for tests: a test signing key made once per test session.

    client.get(url, headers=bearer("caregiver", caregiver_id="C-1"))

Apps built by hand in a test call `install_test_auth(app)`; apps made by `create_http_app`
get `auth=TEST_AUTH` (or use `bearer_for(app, ...)` with the app's own issuer); processes
started with a data directory get `bearer_for_data_dir(data_dir, ...)`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.runtime.access import install_auth
from services.runtime.auth import Auth, LocalIssuer, Principal, TokenVerifier


@cache
def test_auth() -> Auth:
    issuer = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return Auth(TokenVerifier.for_issuer(issuer), issuer, None)


test_auth.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def principal(role: str = "admin", subject: str | None = None, **scopes: Any) -> Principal:
    for name in ("service_areas", "elder_ids"):
        if isinstance(scopes.get(name), str):
            scopes[name] = [scopes[name]]
        if name in scopes:
            scopes[name] = frozenset(scopes[name])
    return Principal(subject=subject or f"test-{role}", role=role, **scopes)


def token(role: str = "admin", subject: str | None = None, *, auth: Auth | None = None,
          **scopes: Any) -> str:
    issuer = (auth or test_auth()).issuer
    assert issuer is not None
    return issuer.issue(principal(role, subject, **scopes))


def bearer(role: str = "admin", subject: str | None = None, *, auth: Auth | None = None,
           **scopes: Any) -> dict[str, str]:
    """Headers with a token of this role and scopes (signed by the test key by default)."""
    return {"authorization": "Bearer " + token(role, subject, auth=auth, **scopes)}


def bearer_for(app: FastAPI, role: str = "admin", subject: str | None = None,
               **scopes: Any) -> dict[str, str]:
    """Headers with a token the given app accepts (its own local issuer)."""
    return bearer(role, subject, auth=app.state.auth, **scopes)


def bearer_for_data_dir(data_dir: Path | str, role: str = "admin", subject: str | None = None,
                        **scopes: Any) -> dict[str, str]:
    """Headers with a token for processes sharing this data directory (local mode)."""
    from services.runtime.auth import auth_from_settings
    from services.runtime.settings import SharedSettings

    auth = auth_from_settings(SharedSettings(data_dir=Path(data_dir), auth_mode="local"))
    return bearer(role, subject, auth=auth, **scopes)


def install_test_auth(app: FastAPI) -> FastAPI:
    """Check callers of a hand-built app against the test key (call after including routers)."""
    install_auth(app, test_auth())
    return app
