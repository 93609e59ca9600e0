"""The verifier's cache of verified tokens: repeats skip the signature check, nothing else."""

from __future__ import annotations

import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.runtime.auth import AuthenticationError, LocalIssuer, Principal, TokenVerifier


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048))


CAREGIVER = Principal(subject="li", role="caregiver", caregiver_id="C-1")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens jwt.decode (signature and claims check) was called with."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_verified_once_is_not_checked_again(issuer: LocalIssuer,
                                                    decodes: list[str]) -> None:
    """The second and later requests with the same token get the same principal without
    another signature check."""
    verifier = TokenVerifier.for_issuer(issuer)
    token = issuer.issue(CAREGIVER)
    assert [verifier.verify(token) for _ in range(3)] == [CAREGIVER] * 3
    assert decodes == [token]


def test_refused_tokens_are_refused_every_time(issuer: LocalIssuer,
                                               decodes: list[str]) -> None:
    """A refusal is not remembered as anything: each attempt is checked and refused again."""
    verifier = TokenVerifier.for_issuer(issuer)
    tampered = issuer.issue(CAREGIVER)[:-6] + "AAAAAA"
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="invalid"):
            verifier.verify(tampered)
    assert decodes == [tampered, tampered]


def test_a_cached_token_still_expires(issuer: LocalIssuer) -> None:
    """A token accepted from the cache stops being accepted when it expires (plus leeway)."""
    verifier = TokenVerifier.for_issuer(issuer)
    verifier.leeway_s = 0
    token = issuer.issue(CAREGIVER, ttl_s=1)
    assert verifier.verify(token) == CAREGIVER
    time.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"]
                   - time.time()) + 0.05)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(token)


def test_the_cache_expiry_follows_the_verifiers_clock(issuer: LocalIssuer,
                                                      decodes: list[str]) -> None:
    """Past exp + leeway the cached answer is dropped and the token is checked afresh."""
    now = [time.time()]
    verifier = TokenVerifier.for_issuer(issuer)
    verifier.clock = lambda: now[0]
    token = issuer.issue(CAREGIVER, ttl_s=600)
    verifier.verify(token)
    now[0] += 600 + verifier.leeway_s - 5
    verifier.verify(token)
    assert len(decodes) == 1
    now[0] += 10
    verifier.verify(token)  # jwt's own clock still accepts it; the cache asked it again
    assert len(decodes) == 2


def test_the_cache_is_bounded_least_recently_used_out(issuer: LocalIssuer,
                                                      decodes: list[str]) -> None:
    """At most cache_size tokens are kept; the one unused longest is checked again."""
    verifier = TokenVerifier.for_issuer(issuer)
    verifier.cache_size = 2
    first, second, third = (issuer.issue(CAREGIVER) for _ in range(3))
    for token in (first, second, first, third):  # second is the least recently used
        verifier.verify(token)
    assert len(verifier._cache) == 2
    verifier.verify(first)
    verifier.verify(second)
    assert decodes == [first, second, third, second]


def test_verifiers_do_not_share_their_caches(issuer: LocalIssuer) -> None:
    """A verifier for another audience refuses a token another verifier has cached."""
    verifier = TokenVerifier.for_issuer(issuer)
    token = issuer.issue(CAREGIVER)
    verifier.verify(token)
    other = replace(verifier, audience="another-system")
    with pytest.raises(AuthenticationError, match="(?i)audience"):
        other.verify(token)


def test_cache_size_zero_checks_every_time(issuer: LocalIssuer, decodes: list[str]) -> None:
    """cache_size=0 turns the cache off."""
    verifier = replace(TokenVerifier.for_issuer(issuer), cache_size=0)
    token = issuer.issue(CAREGIVER)
    verifier.verify(token)
    verifier.verify(token)
    assert decodes == [token, token]
