"""JwtVerifier remembers verified tokens: each way a remembered token stops being accepted.

A token's signature is checked once; every later use re-checks what can change since: its times
against the verifier's clock, and that the JWKS still serves, under its kid, the key that checked
it. Signature checks are counted (a spy on PyJWT's RS256 algorithm that calls through) to tell a
full verification from a remembered one. Fake clocks drive time: the verifier's for the token's
times, the JWKS cache's for its refreshes. Nothing sleeps.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tenantscope import ConfigurationError, KeysUnavailable, Reason, Unauthorized
from tenantscope._config import Settings, get_settings
from tenantscope._jwt import TOKEN_CACHE_SIZE, JwksCache, JwtVerifier, StaticJwksSource
from tenantscope.testing import LocalIssuer, reset_process_state
from tests.fakes import FakeClock

JWKS_TTL = 600.0
LEEWAY = 30  # the default TENANTSCOPE_JWT_LEEWAY_SECONDS


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature checked (a full verification), as the token's subject: PyJWT's RS256
    algorithm, called through."""
    seen: list[str] = []
    real = jwt.algorithms.RSAAlgorithm.verify

    def verify(self: Any, msg: bytes, key: Any, sig: bytes) -> bool:
        payload = msg.split(b".")[1]
        seen.append(json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))["sub"])
        return bool(real(self, msg, key, sig))

    monkeypatch.setattr(jwt.algorithms.RSAAlgorithm, "verify", verify)
    return seen


@pytest.fixture
def clock() -> FakeClock:
    """The verifier's clock, starting at the real time the tokens are minted at."""
    return FakeClock(time.time())


@pytest.fixture
def jwks_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(jwks_source: StaticJwksSource, jwks_clock: FakeClock) -> JwksCache:
    return JwksCache(jwks_source, ttl=JWKS_TTL, clock=jwks_clock)


@pytest.fixture
def verifier(keys: JwksCache, clock: FakeClock) -> JwtVerifier:
    return JwtVerifier(get_settings(), keys, clock=clock)


def refused(verifier: JwtVerifier, token: str) -> Reason:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    return caught.value.reason


# --- a remembered token ----------------------------------------------------------------------------


def test_a_repeated_token_is_verified_once(
    verifier: JwtVerifier, issuer: LocalIssuer, decodes: list[str]
) -> None:
    token = issuer.token("acme")
    # WHEN the same token comes three times
    claims = [verifier.verify(token) for _ in range(3)]
    # THEN its signature was checked once, and each use got the same claims
    assert decodes == ["user-1"]
    assert claims[0] == claims[1] == claims[2]
    assert claims[0]["tenant_id"] == "acme"


def test_each_use_gets_its_own_claims(verifier: JwtVerifier, issuer: LocalIssuer) -> None:
    token = issuer.token("acme")
    first = verifier.verify(token)
    # WHEN a caller changes the claims it was given
    first["tenant_id"] = "globex"
    # THEN the next use of the token is not affected
    assert verifier.verify(token)["tenant_id"] == "acme"


def test_tokens_are_remembered_by_a_digest_never_by_their_text(
    verifier: JwtVerifier, issuer: LocalIssuer
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    remembered = verifier._verified
    assert remembered is not None
    entries = list(remembered._values.items())
    assert len(entries) == 1
    digest, entry = entries[0]
    # THEN the key is a 32-byte digest, and nothing remembered holds the token or a part of it
    assert isinstance(digest, bytes)
    assert len(digest) == 32
    held = repr(digest) + repr(entry.claims) + entry.kid
    assert all(part not in held for part in token.split(".") if part)


def test_a_different_token_of_the_same_user_is_verified_on_its_own(
    verifier: JwtVerifier, issuer: LocalIssuer, decodes: list[str]
) -> None:
    verifier.verify(issuer.token("acme"))
    # WHEN the same user brings a new token (another jti, the same claims otherwise)
    verifier.verify(issuer.token("acme"))
    # THEN it is a new token: verified in full
    assert decodes == ["user-1", "user-1"]


# --- failures are never remembered -----------------------------------------------------------------


def test_a_forged_token_is_refused_every_time_in_full(
    verifier: JwtVerifier, issuer: LocalIssuer, foreign_issuer: LocalIssuer, decodes: list[str]
) -> None:
    forged = foreign_issuer.token("acme")  # same kid and claims, another key
    assert [refused(verifier, forged) for _ in range(2)] == [Reason.BAD_TOKEN_SIGNATURE] * 2
    # AND the real token with the same claims is not taken for it
    assert verifier.verify(issuer.token("acme"))["tenant_id"] == "acme"


def test_a_token_refused_after_its_signature_is_not_remembered(
    verifier: JwtVerifier, issuer: LocalIssuer, decodes: list[str]
) -> None:
    # GIVEN a correctly signed token for another audience
    token = issuer.token("acme", claims={"aud": "another-client"})
    # WHEN it comes twice
    assert [refused(verifier, token) for _ in range(2)] == [Reason.WRONG_AUDIENCE] * 2
    # THEN both were judged in full
    assert decodes == ["user-1", "user-1"]


def test_a_malformed_token_is_refused_before_any_verification(
    verifier: JwtVerifier, decodes: list[str]
) -> None:
    header_without_alg = "e30.e30."  # {} . {} .
    assert [refused(verifier, header_without_alg) for _ in range(2)] == [Reason.ALGORITHM_NOT_ALLOWED] * 2
    assert refused(verifier, "x" * 9000) == Reason.TOKEN_TOO_LONG
    assert decodes == []
    assert verifier._verified is not None
    assert len(verifier._verified) == 0


# --- expiry and not-before, against the verifier's clock -------------------------------------------


def test_a_remembered_token_expires_at_its_exp_plus_the_leeway(
    verifier: JwtVerifier, issuer: LocalIssuer, clock: FakeClock, decodes: list[str]
) -> None:
    token = issuer.token("acme", lifetime=60)
    exp = verifier.verify(token)["exp"]
    # WHEN the clock reaches one second before exp + leeway, the token is still good, from memory
    clock.now = exp + LEEWAY - 1
    assert verifier.verify(token)["tenant_id"] == "acme"
    assert decodes == ["user-1"]
    # THEN at exp + leeway it is refused as expired, without a new verification
    clock.now = exp + LEEWAY
    assert refused(verifier, token) == Reason.TOKEN_EXPIRED
    assert decodes == ["user-1"]
    # AND it is forgotten: were the clock to go back, the token would be verified in full again
    clock.now = exp - 10
    verifier.verify(token)
    assert decodes == ["user-1", "user-1"]


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_remembered_token_is_not_valid_before_its_nbf_or_iat_minus_the_leeway(
    verifier: JwtVerifier, issuer: LocalIssuer, clock: FakeClock, claim: str, decodes: list[str]
) -> None:
    start = int(time.time()) + 20  # within the leeway: accepted when first verified
    token = issuer.token("acme", claims={claim: start})
    verifier.verify(token)
    # WHEN the clock is set back to exactly start - leeway THEN the remembered token is still valid
    clock.now = start - LEEWAY
    assert verifier.verify(token)["tenant_id"] == "acme"
    # WHEN the clock is set back before start - leeway (a clock corrected backwards)
    clock.now = start - LEEWAY - 1
    # THEN the remembered token is refused as not yet valid, and forgotten: once the clock is right
    # again, it is verified in full
    assert refused(verifier, token) == Reason.TOKEN_NOT_YET_VALID
    clock.now = start
    verifier.verify(token)
    assert decodes == ["user-1", "user-1"]


def test_a_token_of_exactly_the_maximum_length_is_verified(keys: JwksCache, issuer: LocalIssuer) -> None:
    token = issuer.token("acme")
    at_the_cap = JwtVerifier(Settings.load(max_token_bytes=len(token)), keys)
    assert at_the_cap.verify(token)["tenant_id"] == "acme"
    below_it = JwtVerifier(Settings.load(max_token_bytes=len(token) - 1), keys)
    assert refused(below_it, token) == Reason.TOKEN_TOO_LONG


# --- the signing key: withdrawn, replaced, republished ---------------------------------------------


def test_a_token_dies_when_its_kid_leaves_the_key_set(
    verifier: JwtVerifier,
    issuer: LocalIssuer,
    jwks_source: StaticJwksSource,
    jwks_clock: FakeClock,
    decodes: list[str],
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    # GIVEN the issuer withdrew the key: its JWKS now has another kid only
    jwks_source.document = LocalIssuer.generate(kid="dev-key-2").jwks()
    # WHEN the JWKS cache refreshes (its TTL passed)
    jwks_clock.advance(JWKS_TTL + 1)
    # THEN the remembered token is refused: its kid is unknown
    assert refused(verifier, token) == Reason.UNKNOWN_KID


def test_a_key_replaced_under_the_same_kid_ends_the_tokens_of_the_old_key(
    verifier: JwtVerifier,
    issuer: LocalIssuer,
    foreign_issuer: LocalIssuer,
    jwks_source: StaticJwksSource,
    jwks_clock: FakeClock,
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    # GIVEN the JWKS now serves another key under the same kid
    assert foreign_issuer.kid == issuer.kid
    jwks_source.document = foreign_issuer.jwks()
    jwks_clock.advance(JWKS_TTL + 1)
    # THEN the token signed by the old key is refused: its signature no longer verifies
    assert refused(verifier, token) == Reason.BAD_TOKEN_SIGNATURE
    # AND a token of the new key is accepted
    assert verifier.verify(foreign_issuer.token("acme"))["tenant_id"] == "acme"


def test_a_key_republished_unchanged_costs_one_verification_per_refresh(
    verifier: JwtVerifier, issuer: LocalIssuer, jwks_clock: FakeClock, decodes: list[str]
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    # WHEN the JWKS refreshes with the same key
    jwks_clock.advance(JWKS_TTL + 1)
    verifier.verify(token)
    verifier.verify(token)
    # THEN the token was verified again once, against the key as now published, then remembered
    assert decodes == ["user-1", "user-1"]


def test_a_remembered_token_within_the_jwks_ttl_is_judged_as_a_fresh_one_would_be(
    verifier: JwtVerifier, issuer: LocalIssuer, jwks_source: StaticJwksSource, decodes: list[str]
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    # GIVEN the issuer withdrew the key, but the JWKS cache has not refreshed yet (within its TTL)
    jwks_source.document = {"keys": []}
    # THEN the token is accepted, as a full verification against the cached keys would accept it
    assert verifier.verify(token)["tenant_id"] == "acme"
    assert decodes == ["user-1"]


def test_keys_that_never_loaded_are_an_outage_not_a_remembered_success(
    keys: JwksCache, jwks_source: StaticJwksSource, issuer: LocalIssuer, clock: FakeClock
) -> None:
    jwks_source.fail = True
    verifier = JwtVerifier(get_settings(), keys, clock=clock)
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.token("acme"))


# --- the bound -------------------------------------------------------------------------------------


def test_the_cache_keeps_the_most_recently_used_tokens(
    keys: JwksCache, issuer: LocalIssuer, clock: FakeClock, decodes: list[str]
) -> None:
    verifier = JwtVerifier(get_settings(), keys, cache_size=2, clock=clock)
    a, b, c = (issuer.token("acme", subject=name) for name in "abc")
    # GIVEN a and b remembered, then a used again (b is now the least recently used)
    for token in (a, b, a):
        verifier.verify(token)
    assert decodes == ["a", "b"]
    # WHEN c arrives, the bound drops b
    verifier.verify(c)
    # THEN a is still remembered and b is verified in full again
    verifier.verify(a)
    verifier.verify(b)
    assert decodes == ["a", "b", "c", "b"]


def test_the_default_bound_is_documented(keys: JwksCache) -> None:
    verifier = JwtVerifier(get_settings(), keys)
    assert verifier._verified is not None
    assert verifier._verified._maxsize == TOKEN_CACHE_SIZE
    performance = (Path(__file__).parents[2] / "docs" / "performance.md").read_text()
    assert f"{TOKEN_CACHE_SIZE:,} most recently used tokens" in performance


def test_a_cache_size_of_zero_remembers_nothing(
    keys: JwksCache, issuer: LocalIssuer, decodes: list[str]
) -> None:
    verifier = JwtVerifier(get_settings(), keys, cache_size=0)
    token = issuer.token("acme")
    verifier.verify(token)
    verifier.verify(token)
    assert decodes == ["user-1", "user-1"]


@pytest.fixture
def forgotten() -> Iterator[None]:
    yield
    reset_process_state()


def test_reset_process_state_forgets_every_remembered_token(
    verifier: JwtVerifier, issuer: LocalIssuer, decodes: list[str], forgotten: None
) -> None:
    token = issuer.token("acme")
    verifier.verify(token)
    reset_process_state()
    verifier.verify(token)
    assert decodes == ["user-1", "user-1"]


# --- what is derived from a remembered token's claims ----------------------------------------------


def test_a_remembered_tokens_tenant_is_derived_once(verifier: JwtVerifier, issuer: LocalIssuer) -> None:
    derived: list[str] = []

    def tenant_of(claims: Any) -> str:
        derived.append(claims["tenant_id"])
        return str(claims["tenant_id"])

    token = issuer.token("acme")
    assert [verifier.verify_as(token, tenant_of) for _ in range(3)] == ["acme"] * 3
    assert derived == ["acme"]
    # AND another function derives its own value
    assert verifier.verify_as(token, lambda claims: claims["sub"]) == "user-1"


def test_a_derivation_that_fails_is_not_remembered(verifier: JwtVerifier, issuer: LocalIssuer) -> None:
    calls: list[int] = []

    def refuse(claims: Any) -> str:
        calls.append(1)
        raise Unauthorized(Reason.INVALID_TENANT_CLAIM)

    token = issuer.token("acme")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify_as(token, refuse)
    assert len(calls) == 2


def test_a_derived_value_dies_with_its_token(
    verifier: JwtVerifier, issuer: LocalIssuer, clock: FakeClock, decodes: list[str]
) -> None:
    token = issuer.token("acme", lifetime=60)
    first = verifier.verify_as(token, tuple)
    exp = verifier.verify(token)["exp"]
    clock.now = exp + LEEWAY
    with pytest.raises(Unauthorized) as refusal:
        verifier.verify_as(token, tuple)
    assert refusal.value.reason is Reason.TOKEN_EXPIRED
    # WHEN the clock goes back, the token is verified and derived anew
    clock.now = exp - 10
    assert verifier.verify_as(token, tuple) == first
    assert decodes == ["user-1", "user-1"]


def test_an_api_token_used_again_keeps_its_tenant_context(issuer: LocalIssuer, jwks: JwksCache) -> None:
    from tenantscope._resolve import resolve_api_event
    from tenantscope.testing import http_api_event

    verifier = JwtVerifier(get_settings(), jwks)
    event = http_api_event(issuer.token("acme"))
    first = resolve_api_event(event, verifier, get_settings())
    again = resolve_api_event(event, verifier, get_settings())
    assert again is first
    assert first.tenant_id == "acme"
    assert first.claims["sub"] == "user-1"


def test_a_cache_of_one_remembers_one_token(keys: JwksCache, issuer: LocalIssuer, decodes: list[str]) -> None:
    verifier = JwtVerifier(get_settings(), keys, cache_size=1)
    token = issuer.token("acme")
    verifier.verify(token)
    verifier.verify(token)
    assert decodes == ["user-1"]


@pytest.mark.parametrize("missing", ["jwt_issuer", "jwt_audience"])
def test_a_verifier_needs_both_an_issuer_and_an_audience(
    monkeypatch: pytest.MonkeyPatch, keys: JwksCache, missing: str
) -> None:
    monkeypatch.delenv(f"TENANTSCOPE_{missing.upper()}")
    with pytest.raises(ConfigurationError) as refusal:
        JwtVerifier(Settings.load(), keys)
    assert (refusal.value.reason, refusal.value.detail) == (
        Reason.MISSING_SETTING,
        "TENANTSCOPE_JWT_ISSUER and TENANTSCOPE_JWT_AUDIENCE",
    )
