"""Bearer tokens: what the verifier accepts and refuses, local users, an OIDC provider's JWKS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.runtime.auth import (
    AuthenticationError,
    LocalIssuer,
    Principal,
    TokenVerifier,
    UserStore,
    auth_from_settings,
    jwks_of,
    key_id,
)
from services.runtime.settings import SharedSettings


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


DISPATCHER = Principal(subject="wang", role="dispatcher", service_areas=frozenset({"A1"}))


def test_a_token_round_trips_role_and_scopes(issuer: LocalIssuer) -> None:
    """What the issuer signs, the verifier reads back as the same principal."""
    verifier = TokenVerifier.for_issuer(issuer)
    caregiver = Principal(subject="li", role="caregiver", caregiver_id="C-1")
    assert verifier.verify(issuer.issue(DISPATCHER)) == DISPATCHER
    assert verifier.verify(issuer.issue(caregiver)) == caregiver


@pytest.mark.parametrize("mutation, reason", [
    ("expired", "expired"),
    ("other_key", "does not know"),
    ("other_audience", "(?i)audience"),
    ("other_issuer", "(?i)issuer"),
    ("tampered", "invalid"),
    ("none_alg", "algorithm"),
    ("garbage", "malformed"),
    ("unknown_role", "role"),
])
def test_bad_tokens_are_refused_with_a_reason(issuer: LocalIssuer, mutation: str,
                                              reason: str) -> None:
    """Expired, foreign, tampered, unsigned and role-less tokens are all refused, saying why."""
    verifier = TokenVerifier.for_issuer(issuer)
    now = int(time.time())
    claims = DISPATCHER.claims() | {"iss": issuer.issuer, "aud": issuer.audience,
                                    "exp": now + 600, "iat": now}
    kid = {"kid": key_id(issuer.private_key.public_key())}
    sign = lambda c, key=issuer.private_key: jwt.encode(c, key, "RS256", headers=kid)  # noqa: E731
    token = {
        "expired": lambda: sign(claims | {"exp": now - 3600}),
        "other_key": lambda: jwt.encode(claims, rsa.generate_private_key(65537, 2048), "RS256",
                                        headers={"kid": "someone-else"}),
        "other_audience": lambda: sign(claims | {"aud": "another-system"}),
        "other_issuer": lambda: sign(claims | {"iss": "https://evil.example"}),
        "tampered": lambda: sign(claims)[:-6] + "AAAAAA",
        "none_alg": lambda: jwt.encode(claims, None, "none"),
        "garbage": lambda: "not-a-token",
        "unknown_role": lambda: sign(claims | {"role": "superuser"}),
    }[mutation]()
    with pytest.raises(AuthenticationError, match=reason):
        verifier.verify(token)


def test_local_users_log_in_with_their_password_only(tmp_path: Path) -> None:
    """Passwords are stored hashed (Argon2id), the file is private, and a wrong password or an
    unknown user gets the same answer."""
    users = UserStore(tmp_path / "users.json")
    users.add("wang", "correct horse", DISPATCHER)
    stored = (tmp_path / "users.json").read_text()
    assert "correct horse" not in stored and "$argon2id$" in stored
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0
    assert users.authenticate("wang", "correct horse").service_areas == {"A1"}
    for name, password in [("wang", "wrong password"), ("nobody", "correct horse")]:
        with pytest.raises(AuthenticationError, match="unknown user or wrong password"):
            users.authenticate(name, password)
    with pytest.raises(ValueError, match="8 characters"):
        users.add("short", "1234", DISPATCHER)


def _add_users(path: str, prefix: str) -> None:
    store = UserStore(Path(path))
    for i in range(5):
        store.add(f"{prefix}{i}", "correct horse", DISPATCHER)


def test_processes_adding_users_at_once_lose_none_of_them(tmp_path):
    """The three services of one data directory seed their users at the same moment: every
    user added by any process is there afterwards (no lost update, no clash of temporary
    files), and removing one keeps the others."""
    import multiprocessing

    path = tmp_path / "auth" / "users.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_users, args=(str(path), p)) for p in "abcd"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    users = UserStore(path)
    assert sorted(users.usernames()) == sorted(f"{p}{i}" for p in "abcd" for i in range(5))
    assert users.remove("a0") and not users.remove("a0")
    assert len(users.usernames()) == 19


def test_processes_sharing_a_data_directory_share_the_signing_key(tmp_path: Path) -> None:
    """Two processes of one local deployment accept each other's tokens."""
    settings = SharedSettings(data_dir=tmp_path, auth_mode="local")
    first, second = auth_from_settings(settings), auth_from_settings(settings)
    assert first.issuer is not None
    assert second.verifier.verify(first.issuer.issue(DISPATCHER)) == DISPATCHER
    assert (tmp_path / "auth" / "signing-key.pem").stat().st_mode & 0o077 == 0


class _Provider:
    """An OpenID Connect provider's discovery document and JWKS, served on loopback."""

    def __init__(self) -> None:
        self.keys = [rsa.generate_private_key(65537, 2048)]
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.url, "jwks_uri": provider.url + "/jwks"}
                elif self.path == "/jwks":
                    provider.fetches += 1
                    body = jwks_of(k.public_key() for k in provider.keys)
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, key: rsa.RSAPrivateKey, claims: dict[str, object]) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.url, "aud": "homecare", "iat": now, "exp": now + 300}
                          | claims, key, "RS256", headers={"kid": key_id(key.public_key())})


@pytest.fixture
def provider() -> Iterator[_Provider]:
    p = _Provider()
    yield p
    p.server.shutdown()


def test_oidc_tokens_are_verified_against_the_providers_jwks(provider: _Provider,
                                                             tmp_path: Path) -> None:
    """Production mode finds the JWKS by discovery, accepts the provider's tokens (a list of
    roles is fine), refuses another audience, and picks up a rotated key it has not seen."""
    auth = auth_from_settings(SharedSettings(data_dir=tmp_path, auth_mode="oidc",
                                             oidc_issuer=provider.url))
    assert auth.issuer is None and auth.users is None and auth.verifier.fetches_keys
    auth.verifier = replace(auth.verifier, refetch_cooldown_s=0)
    claims = {"sub": "zhao", "role": ["offline_access", "finance"], "service_areas": ["A1"]}
    principal = auth.verifier.verify(provider.sign(provider.keys[0], claims))
    assert (principal.role, principal.service_areas) == ("finance", {"A1"})
    with pytest.raises(AuthenticationError, match="(?i)audience"):
        auth.verifier.verify(provider.sign(provider.keys[0], claims | {"aud": "other"}))
    provider.keys.append(rsa.generate_private_key(65537, 2048))  # the provider rotates
    assert auth.verifier.verify(provider.sign(provider.keys[1], claims)).subject == "zhao"
    assert provider.fetches == 2
    with pytest.raises(AuthenticationError, match="no signing key"):
        auth.verifier.verify(provider.sign(rsa.generate_private_key(65537, 2048), claims))
