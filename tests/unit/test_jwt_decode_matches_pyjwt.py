"""JwtVerifier decodes tokens itself (PyJWT's algorithm checks the signature): it must judge every
token exactly as ``jwt.decode`` does, with the same outcome and reason.

The reference below is the verification as it was built on ``jwt.decode`` (PyJWT 2.15, the version
the layer pins). Each token of the corpus goes through both, with the same clock: valid ones, and
ones broken in each way ``jwt.decode`` checks (segments, padding, alphabet, canonical base64url,
JSON, the unencoded-payload header, the key's length, the signature, each registered claim and
its type). A token both accept must yield the same claims.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tenantscope import Reason, Unauthorized
from tenantscope._config import get_settings
from tenantscope._jwt import JwksCache, JwtVerifier, StaticJwksSource, _unverified_header
from tenantscope.testing import LocalIssuer
from tests.jwt_forge import b64url as b64
from tests.jwt_forge import rs256

NOW = float(int(time.time()))
LEEWAY = 30
ISSUER = LocalIssuer.DEFAULT_ISSUER
AUDIENCE = LocalIssuer.DEFAULT_AUDIENCE
# PyJWT's errors by name, as tenantscope mapped them when it called jwt.decode.
REASONS = {
    "InvalidSignatureError": Reason.BAD_TOKEN_SIGNATURE,
    "ExpiredSignatureError": Reason.TOKEN_EXPIRED,
    "ImmatureSignatureError": Reason.TOKEN_NOT_YET_VALID,
    "DecodeError": Reason.MALFORMED_TOKEN,
    "InvalidIssuerError": Reason.WRONG_ISSUER,
    "InvalidAudienceError": Reason.WRONG_AUDIENCE,
}

Outcome = tuple[str, Any]  # ("ok", claims) or (reason, detail)


def reference(token: str, keys: JwksCache) -> Outcome:
    """The verification as built on jwt.decode, with PyJWT's clock pinned to NOW."""
    settings = get_settings()
    try:
        if len(token) > settings.max_token_bytes:
            raise Unauthorized(Reason.TOKEN_TOO_LONG)
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in settings.jwt_algorithms:
            raise Unauthorized(Reason.ALGORITHM_NOT_ALLOWED)
        if any(name in header for name in ("jwk", "jku", "x5u", "x5c", "crit")):
            raise Unauthorized(Reason.REFUSED_HEADER)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthorized(Reason.MALFORMED_KID)
        key = keys.get(kid)
        if key is None:
            raise Unauthorized(Reason.UNKNOWN_KID)
        if key.algorithm_name != alg:
            raise Unauthorized(Reason.ALGORITHM_MISMATCH)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=settings.jwt_issuer,
                audience=AUDIENCE,
                leeway=settings.jwt_leeway_seconds,
                options={"require": ["exp", "iat", "iss"], "enforce_minimum_key_length": True},
            )
        except jwt.MissingRequiredClaimError as error:
            if error.claim == "aud":  # no audience and no client_id naming one
                raise Unauthorized(Reason.WRONG_AUDIENCE) from None
            raise Unauthorized(Reason.INVALID_TOKEN, "MissingRequiredClaimError") from None
        except jwt.PyJWTError as error:
            reason = REASONS.get(type(error).__name__)
            raise Unauthorized(
                reason or Reason.INVALID_TOKEN, None if reason else type(error).__name__
            ) from None
        return ("ok", claims)
    except Unauthorized as error:
        return (str(error.reason), error.detail)


def ours(token: str, keys: JwksCache) -> Outcome:
    try:
        return ("ok", JwtVerifier(get_settings(), keys, clock=lambda: NOW).verify(token))
    except Unauthorized as error:
        return (str(error.reason), error.detail)


# --- building tokens byte by byte --------------------------------------------------------------------


def part(value: object) -> str:
    return b64(value if isinstance(value, bytes) else json.dumps(value).encode())


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "tenant_id": "acme", "iat": NOW, "exp": NOW + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def header(**changes: Any) -> dict[str, Any]:
    return {"alg": "RS256", "typ": "JWT", "kid": "dev-key-1", **changes}


def signed(issuer: LocalIssuer, head: object = None, body: object = None) -> str:
    signing_input = f"{part(header() if head is None else head)}.{part(claims() if body is None else body)}"
    return f"{signing_input}.{rs256(issuer.private_key, signing_input)}"


def edit(token: str, index: int, change: Callable[[str], str]) -> str:
    parts = token.split(".")
    parts[index] = change(parts[index])
    return ".".join(parts)


def resigned(issuer: LocalIssuer, head: str, body: str) -> str:
    """Header and payload segments as given, verbatim, correctly signed."""
    return f"{head}.{body}.{rs256(issuer.private_key, f'{head}.{body}')}"


def canonical_twin(segment: str) -> str:
    """The same bytes under a non-canonical encoding: the unused low bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3), "only a partial last quad has unused bits"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]


def partial_quad(build: Callable[[str], object]) -> str:
    """The segment of ``build(filler)`` for the first filler that leaves a partial last quad."""
    return next(p for p in (part(build("x" * n)) for n in range(4)) if len(p) % 4 in (2, 3))


CASES: dict[str, Callable[[LocalIssuer, LocalIssuer], str]] = {
    "valid": lambda i, f: signed(i),
    "valid, issuer-minted": lambda i, f: i.token("acme"),
    "signed by another key under the same kid": lambda i, f: signed(f),
    "payload changed after signing": lambda i, f: edit(
        signed(i), 1, lambda s: part(claims(tenant_id="globex"))
    ),
    "signature removed": lambda i, f: edit(signed(i), 2, lambda s: ""),
    "signature truncated": lambda i, f: edit(signed(i), 2, lambda s: s[:-4]),
    "signature of length 1 mod 4": lambda i, f: edit(signed(i), 2, lambda s: s + "A"),
    "signature non-canonical": lambda i, f: edit(signed(i), 2, canonical_twin),
    "signature with padding": lambda i, f: edit(signed(i), 2, lambda s: s + "=" * (-len(s) % 4)),
    "signature with three =": lambda i, f: edit(signed(i), 2, lambda s: s + "==="),
    "signature with a wrong count of =": lambda i, f: edit(
        signed(i), 2, lambda s: s + "=" * (-len(s) % 4 + 1)
    ),
    "signature with standard base64": lambda i, f: edit(signed(i), 2, lambda s: s.replace("-", "+")),
    "signature one = short of its padding": lambda i, f: edit(signed(i), 2, lambda s: s + "="),
    "signature with six =": lambda i, f: edit(signed(i), 2, lambda s: s + "======"),
    "signature with two letters appended": lambda i, f: edit(signed(i), 2, lambda s: s + "XX"),
    "signature of four characters": lambda i, f: edit(signed(i), 2, lambda s: "AAAA"),
    "signature with a dot": lambda i, f: signed(i) + ".x",
    "two segments": lambda i, f: signed(i).rpartition(".")[0],
    "one segment": lambda i, f: signed(i).partition(".")[0],
    "payload padded": lambda i, f: (lambda h, p: resigned(i, h, p + "=" * (-len(p) % 4)))(
        part(header()), part(claims(sub="uu"))
    ),
    "payload non-canonical": lambda i, f: (lambda h, p: resigned(i, h, canonical_twin(p)))(
        part(header()), part(claims(sub="uuu"))
    ),
    "header non-canonical": lambda i, f: resigned(
        i, canonical_twin(partial_quad(lambda x: header(typ=x))), part(claims())
    ),
    "payload not JSON": lambda i, f: resigned(i, part(header()), b64(b"{not json")),
    "payload a list": lambda i, f: signed(i, body=[claims()]),
    "payload a string": lambda i, f: signed(i, body="claims"),
    "payload in UTF-16": lambda i, f: resigned(i, part(header()), b64(json.dumps(claims()).encode("utf-16"))),
    "payload deeply nested": lambda i, f: resigned(i, part(header()), b64(b"[" * 1500 + b"]" * 1500)),
    "header in UTF-16": lambda i, f: resigned(i, b64(json.dumps(header()).encode("utf-16")), part(claims())),
    "unencoded payload header, empty payload": lambda i, f: resigned(i, part(header(b64=False)), ""),
    "unencoded payload header, with payload": lambda i, f: signed(i, head=header(b64=False)),
    "b64 true is ordinary": lambda i, f: signed(i, head=header(b64=True)),
    "no exp": lambda i, f: signed(i, body=claims(exp=DROP)),
    "null exp": lambda i, f: signed(i, body=claims(exp=None)),
    "no iat": lambda i, f: signed(i, body=claims(iat=DROP)),
    "no iss": lambda i, f: signed(i, body=claims(iss=DROP)),
    "expired beyond the leeway": lambda i, f: signed(i, body=claims(exp=NOW - LEEWAY)),
    "expired within the leeway": lambda i, f: signed(i, body=claims(exp=NOW - LEEWAY + 1)),
    "iat beyond the leeway": lambda i, f: signed(i, body=claims(iat=NOW + LEEWAY + 1)),
    "iat within the leeway": lambda i, f: signed(i, body=claims(iat=NOW + LEEWAY)),
    "nbf beyond the leeway": lambda i, f: signed(i, body=claims(nbf=NOW + LEEWAY + 1)),
    "nbf within the leeway": lambda i, f: signed(i, body=claims(nbf=NOW + LEEWAY)),
    "iat and exp as floats": lambda i, f: signed(i, body=claims(iat=NOW + 0.5, exp=NOW + 600.5)),
    "iat as a numeric string": lambda i, f: signed(i, body=claims(iat=str(int(NOW)))),
    "iat as text": lambda i, f: signed(i, body=claims(iat="yesterday")),
    "iat as a list": lambda i, f: signed(i, body=claims(iat=[NOW])),
    "iat as true": lambda i, f: signed(i, body=claims(iat=True)),
    "iat infinite": lambda i, f: resigned(i, part(header()), b64(json.dumps(claims(iat=1e400)).encode())),
    "exp as text": lambda i, f: signed(i, body=claims(exp="tomorrow")),
    "exp NaN": lambda i, f: resigned(i, part(header()), b64(json.dumps(claims(exp=float("nan"))).encode())),
    "nbf as text": lambda i, f: signed(i, body=claims(nbf="now")),
    "nbf null": lambda i, f: signed(i, body=claims(nbf=None)),
    "iat future and nbf as text": lambda i, f: signed(i, body=claims(iat=NOW + 999, nbf="x")),
    "iss of another issuer": lambda i, f: signed(i, body=claims(iss="https://evil.example")),
    "iss as a list": lambda i, f: signed(i, body=claims(iss=[ISSUER])),
    "sub as a number": lambda i, f: signed(i, body=claims(sub=42)),
    "jti as a number": lambda i, f: signed(i, body=claims(jti=42)),
    "aud of another client": lambda i, f: signed(i, body=claims(aud="other")),
    "aud a list of another client and ours": lambda i, f: signed(i, body=claims(aud=["other", AUDIENCE])),
    "aud a list of ours and a number": lambda i, f: signed(i, body=claims(aud=[AUDIENCE, 5])),
    "aud a list of ours and a list": lambda i, f: signed(i, body=claims(aud=[AUDIENCE, [AUDIENCE]])),
    "aud a number": lambda i, f: signed(i, body=claims(aud=5)),
    "aud empty": lambda i, f: signed(i, body=claims(aud="")),
    "aud an empty list": lambda i, f: signed(i, body=claims(aud=[])),
    "aud null": lambda i, f: signed(i, body=claims(aud=None)),
    "no aud": lambda i, f: signed(i, body=claims(aud=DROP)),
    "aud of another client and sub a number": lambda i, f: signed(i, body=claims(aud="other", sub=42)),
    "duplicate claims": lambda i, f: resigned(
        i, part(header()), b64(json.dumps(claims())[:-1].encode() + b', "tenant_id": "globex"}')
    ),
    "kid not a string": lambda i, f: signed(i, head=header(kid=1)),
    "alg none": lambda i, f: f"{part(header(alg='none'))}.{part(claims())}.",
    "non-ASCII in the signature": lambda i, f: signed(i) + "é",
}


@pytest.fixture(scope="module")
def weak_issuer() -> LocalIssuer:
    """An issuer whose published RSA key is too short (1024 bits) for PyJWT's minimum."""
    return LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=1024), kid="weak-key")


@pytest.fixture
def keys(issuer: LocalIssuer, weak_issuer: LocalIssuer) -> JwksCache:
    return JwksCache(StaticJwksSource({"keys": [issuer.jwk(), weak_issuer.jwk()]}))


@pytest.fixture(autouse=True)
def pyjwt_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT reads the time from datetime.now; pin it to the verifier's clock."""
    import datetime as real

    class PinnedDatetime(real.datetime):
        @classmethod
        def now(cls, tz: real.tzinfo | None = None) -> PinnedDatetime:  # type: ignore[override]
            return cls.fromtimestamp(NOW, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", PinnedDatetime)


@pytest.mark.parametrize("case", list(CASES))
def test_each_token_is_judged_as_jwt_decode_judges_it(
    case: str, issuer: LocalIssuer, foreign_issuer: LocalIssuer, keys: JwksCache
) -> None:
    token = CASES[case](issuer, foreign_issuer)
    expected = reference(token, keys)
    assert ours(token, keys) == expected


def test_the_corpus_covers_acceptance_and_each_outcome(
    issuer: LocalIssuer, foreign_issuer: LocalIssuer, keys: JwksCache
) -> None:
    outcomes = {reference(build(issuer, foreign_issuer), keys)[0] for build in CASES.values()}
    assert outcomes >= {
        "ok",
        "bad-token-signature",
        "malformed-token",
        "token-expired",
        "token-not-yet-valid",
        "invalid-token",
        "wrong-audience",
    }


def test_a_key_below_the_minimum_length_is_refused_as_jwt_decode_refuses_it(
    weak_issuer: LocalIssuer, keys: JwksCache
) -> None:
    token = signed(weak_issuer, head=header(kid=weak_issuer.kid))
    assert reference(token, keys) == ("invalid-token", "InvalidKeyError")
    assert ours(token, keys) == reference(token, keys)


def test_a_signature_whose_last_character_is_any_letter_is_read() -> None:
    # GIVEN a 3072-bit issuer: its 384-byte signatures fill whole quads, so their last character is
    # any of the 64 (a 2048-bit one ends in A, Q, g or w): here an X, which only "=" may be stripped from
    strong = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=3072), kid="strong")
    keys = JwksCache(StaticJwksSource(strong.jwks()))
    token = next(
        t
        for t in (signed(strong, head=header(kid="strong"), body=claims(jti=str(n))) for n in range(2000))
        if t.endswith("X")
    )
    # THEN it is verified as jwt.decode verifies it
    assert reference(token, keys)[0] == "ok"
    assert ours(token, keys) == reference(token, keys)
