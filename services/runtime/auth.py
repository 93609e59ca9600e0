"""Who is calling: OAuth2 bearer tokens (JWT), verified on every request.

Two ways to get a token, one way to check it:

- **local** (``HOMECARE_AUTH_MODE=local``, the default for ``homecare up`` and the demo): the
  process signs its own tokens (RS256) with a key kept under ``<data_dir>/auth/``; users are added
  with ``homecare users add`` (passwords hashed with Argon2id) and log in at ``POST /auth/token``.
  The public half is published at ``/auth/jwks.json``, as an OpenID Connect provider would.
- **oidc** (production): tokens come from an external OpenID Connect provider; they are verified
  against its JWKS (``HOMECARE_OIDC_JWKS_URL``, or found through the issuer's discovery document),
  with the configured issuer and audience.

Either way a token carries the caller's role and the scope of what is theirs (claims ``role``,
``service_areas``, ``caregiver_id``, ``volunteer_id``, ``elder_ids``), which becomes a `Principal`.
Authorisation of each endpoint is declared next to it with `allow` (see services/runtime/access.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# The roles of DOMAIN.md's actors. Finance staff of a sub-district see the statements of their
# own service areas (a service area is a sub-district's or town's service centre).
ROLES = ("admin", "dispatcher", "caregiver", "volunteer", "elder", "finance", "auditor")
LOCAL_ISSUER = "homecare-local"
DEFAULT_AUDIENCE = "homecare"
ALGORITHMS = ["RS256", "ES256", "EdDSA"]


class AuthenticationError(Exception):
    """No token, or a token that is not valid (401)."""


class AccessDenied(Exception):
    """A valid caller who may not do this (403)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a role and what is theirs."""

    subject: str
    role: str
    service_areas: frozenset[str] = frozenset()
    caregiver_id: str | None = None
    volunteer_id: str | None = None
    # An elder's own number, or the elders a family proxy acts for.
    elder_ids: frozenset[str] = frozenset()
    name: str = ""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], role_claim: str = "role") -> Principal:
        role = claims.get(role_claim)
        if isinstance(role, list):  # providers that send a list of roles: the first of ours
            role = next((r for r in role if r in ROLES), None)
        if role not in ROLES:
            raise AuthenticationError(f"the token names no known role (one of {', '.join(ROLES)})")
        subject = claims.get("sub")
        if not subject:
            raise AuthenticationError("the token has no subject")
        return cls(
            subject=str(subject), role=str(role),
            service_areas=frozenset(_strings(claims.get("service_areas"))),
            caregiver_id=_optional(claims.get("caregiver_id")),
            volunteer_id=_optional(claims.get("volunteer_id")),
            elder_ids=frozenset(_strings(claims.get("elder_ids"))),
            name=str(claims.get("name") or ""),
        )

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.subject, "role": self.role}
        if self.service_areas:
            claims["service_areas"] = sorted(self.service_areas)
        if self.caregiver_id:
            claims["caregiver_id"] = self.caregiver_id
        if self.volunteer_id:
            claims["volunteer_id"] = self.volunteer_id
        if self.elder_ids:
            claims["elder_ids"] = sorted(self.elder_ids)
        if self.name:
            claims["name"] = self.name
        return claims

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return f"{self.role}:{self.subject}"


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    return [str(v) for v in value]


def _optional(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# The caller of the request being served (None outside requests: consumers, periodic tasks).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None)


# Keys and tokens -----------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The local issuer's private key, made once (mode 0600) and reused by every process that
    shares the data directory."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)  # first writer wins when two processes start at once
    tmp.unlink()
    return load_or_create_signing_key(path)


def key_id(public_key: Any) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return uuid.uuid5(uuid.NAMESPACE_OID, der.hex()).hex[:16]


def jwks_of(public_keys: Iterable[Any]) -> dict[str, Any]:
    keys = []
    for public_key in public_keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
        jwk.update({"kid": key_id(public_key), "use": "sig", "alg": "RS256"})
        keys.append(jwk)
    return {"keys": keys}


@dataclass
class LocalIssuer:
    """Signs tokens for local runs (``homecare users``/``homecare token``/``POST /auth/token``)."""

    private_key: rsa.RSAPrivateKey
    issuer: str = LOCAL_ISSUER
    audience: str = DEFAULT_AUDIENCE

    def issue(self, principal: Principal, ttl_s: int = 8 * 3600) -> str:
        now = int(time.time())
        claims = principal.claims() | {"iss": self.issuer, "aud": self.audience, "iat": now,
                                       "nbf": now - 5, "exp": now + ttl_s,
                                       "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.private_key, algorithm="RS256",
                          headers={"kid": key_id(self.private_key.public_key())})

    def jwks(self) -> dict[str, Any]:
        return jwks_of([self.private_key.public_key()])


@dataclass
class TokenVerifier:
    """Checks signature, issuer, audience and lifetime; the key is picked by the token's kid.

    ``keys`` are fixed public keys (local mode); ``jwks_url`` is fetched (and cached, with a
    timeout) for an external provider, refetched when a token names a key not seen yet (rotation).
    """

    issuer: str
    audience: str
    keys: dict[str, Any] = field(default_factory=dict)
    jwks_url: str | None = None
    role_claim: str = "role"
    leeway_s: int = 30
    fetch_timeout_s: float = 5.0
    # A token naming an unknown key refetches the JWKS at most this often (rotation is picked
    # up; a flood of made-up key ids does not hammer the provider).
    refetch_cooldown_s: float = 10.0
    # Verified tokens, by their text, kept for their remaining lifetime (a token never changes,
    # so verifying it again would only repeat the RSA check): at most this many, least
    # recently used first out; 0 turns the cache off.
    cache_size: int = 10_000
    clock: Callable[[], float] = time.time
    _client: Any = None
    _cache: OrderedDict[str, tuple[Principal, float]] = field(default_factory=OrderedDict,
                                                              init=False, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, init=False,
                                        repr=False)

    def __post_init__(self) -> None:
        if self.jwks_url:
            self._client = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300,
                                           timeout=int(max(1, self.fetch_timeout_s)))
            self._client.cooldown_duration = self.refetch_cooldown_s

    @classmethod
    def for_issuer(cls, issuer: LocalIssuer) -> TokenVerifier:
        public = issuer.private_key.public_key()
        return cls(issuer=issuer.issuer, audience=issuer.audience, keys={key_id(public): public})

    @property
    def fetches_keys(self) -> bool:
        """True when verifying may do network I/O (call it off the event loop)."""
        return self._client is not None

    def verify(self, token: str) -> Principal:
        """The caller the token names, once its signature, issuer, audience and lifetime are
        checked; a token verified before is answered from the cache until it expires."""
        if self.cache_size > 0:
            with self._cache_lock:
                hit = self._cache.get(token)
                if hit is not None:
                    principal, expires = hit
                    if self.clock() < expires:
                        self._cache.move_to_end(token)
                        return principal
                    del self._cache[token]
        principal, expires = self._verify(token)
        if self.cache_size > 0:
            with self._cache_lock:
                self._cache[token] = (principal, expires)
                self._cache.move_to_end(token)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """(principal, until when the token is still accepted) or AuthenticationError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise AuthenticationError(f"malformed bearer token: {error}") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError(f"token algorithm {header.get('alg')!r} is not accepted")
        key = self.keys.get(str(header.get("kid")))
        if key is None and len(self.keys) == 1 and not header.get("kid"):
            key = next(iter(self.keys.values()))
        if key is None and self._client is not None:
            try:
                key = self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as error:
                raise AuthenticationError(f"no signing key for this token: {error}") from None
        if key is None:
            raise AuthenticationError("the token was signed by a key this service does not know")
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": ["exp", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired: log in again") from None
        except jwt.PyJWTError as error:
            raise AuthenticationError(f"invalid token: {error}") from None
        # jwt.decode accepted it: exp is a number, and leeway_s past it the token is refused.
        return Principal.from_claims(claims, self.role_claim), float(claims["exp"]) + self.leeway_s


def discover_jwks_url(issuer: str, timeout_s: float = 5.0) -> str:
    """The provider's jwks_uri from its OpenID Connect discovery document."""
    import httpx

    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    for attempt in range(3):
        try:
            response = httpx.get(url, timeout=timeout_s)
            response.raise_for_status()
            return str(response.json()["jwks_uri"])
        except (httpx.HTTPError, KeyError, ValueError):
            if attempt == 2:
                raise
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


# Users of local runs -------------------------------------------------------------------------


class UserStore:
    """Local users: ``<data_dir>/auth/users.json``, passwords hashed with Argon2id.

    Only for local runs and small installations; production users live in the OIDC provider.
    """

    def __init__(self, path: Path) -> None:
        from argon2 import PasswordHasher

        self.path = path
        self._hasher = PasswordHasher()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The users to change, written back atomically when the block ends; one process at a
        time (the services of one data directory start at once and each seeds the demo
        users: without the lock they raced on the temporary file and lost each other's adds)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            users = self._load()
            yield users
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(users, out, ensure_ascii=False, indent=1)
            tmp.replace(self.path)

    def add(self, username: str, password: str, principal: Principal) -> None:
        if len(password) < 8:
            raise ValueError("a password needs at least 8 characters")
        password_hash = self._hasher.hash(password)  # slow on purpose: outside the lock
        with self._changing() as users:
            users[username] = {"password_hash": password_hash,
                               "claims": principal.claims() | {"sub": username}}

    def remove(self, username: str) -> bool:
        with self._changing() as users:
            return users.pop(username, None) is not None

    def _dummy_hash(self) -> str:
        if not hasattr(self, "_dummy"):
            self._dummy = self._hasher.hash(uuid.uuid4().hex)
        return self._dummy

    def usernames(self) -> list[str]:
        return sorted(self._load())

    def authenticate(self, username: str, password: str) -> Principal:
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self._load().get(username)
        if user is None:
            # Hash anyway: answering faster for unknown users would tell which names exist.
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy_hash(), password)
            raise AuthenticationError("unknown user or wrong password")
        try:
            self._hasher.verify(user["password_hash"], password)
        except (VerificationError, InvalidHashError):
            raise AuthenticationError("unknown user or wrong password") from None
        return Principal.from_claims(user["claims"])




# Wiring from the settings --------------------------------------------------------------------


@dataclass
class Auth:
    """What a process uses to check callers (and, in local mode, to issue tokens)."""

    verifier: TokenVerifier
    issuer: LocalIssuer | None = None
    users: UserStore | None = None


def auth_from_settings(settings: Any) -> Auth:
    """local: keys and users under ``<data_dir>/auth``; oidc: the provider's JWKS."""
    if settings.auth_mode == "oidc":
        if not settings.oidc_issuer:
            raise ValueError("HOMECARE_AUTH_MODE=oidc needs HOMECARE_OIDC_ISSUER")
        jwks_url = settings.oidc_jwks_url or discover_jwks_url(settings.oidc_issuer)
        return Auth(TokenVerifier(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                                  jwks_url=jwks_url, role_claim=settings.oidc_role_claim))
    auth_dir = Path(settings.data_dir) / "auth"
    issuer = LocalIssuer(load_or_create_signing_key(auth_dir / "signing-key.pem"))
    return Auth(TokenVerifier.for_issuer(issuer), issuer, UserStore(auth_dir / "users.json"))
