"""A catalogue of JWT and tenant-claim attacks (RFC 8725, OWASP JWT cheat sheet), each through a real handler.

Every refusal is checked the same way: the status (401 for a bad token or header, 403 for a bad or
mismatched tenant), a body without internals, the handler body never ran, STS was never called, and
the token never reached the logs. A positive control proves the same machinery accepts a good token,
so that the refusals mean something.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.issuer import DEV_AUDIENCE, DEV_ISSUER
from tenantscope import Reason, api_handler, current_tenant
from tenantscope._config import Settings
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache, StaticJwksSource, jwks_cache_for
from tenantscope.testing import LocalIssuer, reset_process_state
from tests.conftest import LambdaContext, http_api_event
from tests.jwt_forge import b64url, rs256

# --------------------------------------------------------------------------------------------------
# Hand-made tokens: base64url + JSON + a signer, so that any header or claim can be forged.
# --------------------------------------------------------------------------------------------------


def segment(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs256(secret: bytes, signing_input: str) -> str:
    # Computed by hand: PyJWT refuses PEM and JWK strings as HMAC secrets, an attacker does not.
    return b64url(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())


def omit(mapping: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in names}


def parts(token: str) -> list[str]:
    return token.split(".")


@dataclass(frozen=True)
class Keys:
    """The real issuer, a foreign key pair with the same kid, and an attacker with its own key."""

    issuer: LocalIssuer
    foreign: LocalIssuer
    attacker: LocalIssuer

    def header(self, **changes: Any) -> dict[str, Any]:
        return {"alg": "RS256", "typ": "JWT", "kid": self.issuer.kid, **changes}

    def claims(self, **changes: Any) -> dict[str, Any]:
        return {**self.issuer.claims("acme"), **changes}

    def forge(
        self,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        *,
        sign: Callable[[str], str] | None = None,
    ) -> str:
        """A compact token; ``sign`` maps the signing input to a signature segment (default: none)."""
        signing_input = f"{segment(self.header() if header is None else header)}."
        signing_input += segment(self.claims() if claims is None else claims)
        return f"{signing_input}.{sign(signing_input) if sign else ''}"

    def signed(
        self,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        *,
        by: LocalIssuer | None = None,
    ) -> str:
        """A token RS256-signed by ``by`` (default: the real issuer)."""
        signer = by or self.issuer
        return self.forge(header, claims, sign=lambda signing_input: rs256(signer.private_key, signing_input))


@pytest.fixture(scope="session")
def attacker() -> LocalIssuer:
    """An attacker's own key pair; it claims to be the development issuer."""
    return LocalIssuer.generate(kid="attacker-key")


@pytest.fixture
def keys(issuer: LocalIssuer, foreign_issuer: LocalIssuer, attacker: LocalIssuer) -> Keys:
    return Keys(issuer, foreign_issuer, attacker)


# --------------------------------------------------------------------------------------------------
# One real @api_handler, and the one way every refusal is checked.
# --------------------------------------------------------------------------------------------------


@dataclass
class Api:
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    sts: FakeSts
    source: StaticJwksSource
    caplog: pytest.LogCaptureFixture
    ran: list[str] = field(default_factory=list)

    def call(self, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        return self.handler(event, context or LambdaContext())

    def assert_refused(
        self, response: dict[str, Any], status: int, reason: Reason, secret: str | None = None
    ) -> None:
        assert response["statusCode"] == status
        message = "Unauthorized" if status == 401 else "Forbidden"
        headers = {"Content-Type": "application/json"}
        if status == 401:  # RFC 6750 3.1: no error code for a request without any token
            no_token = reason is Reason.MISSING_TOKEN
            headers["WWW-Authenticate"] = "Bearer" if no_token else 'Bearer error="invalid_token"'
        # nothing else: no reason, no claim, no token
        assert response == {
            "statusCode": status,
            "headers": headers,
            "body": json.dumps({"message": message}),
        }
        # refused for this reason, logged once: a check that refuses for another reason is a bug too
        assert [r.reason for r in self.caplog.records if hasattr(r, "reason")] == [reason]
        assert self.ran == [], "the handler body ran"
        assert self.sts.requests == [], "STS was called"
        if secret:
            assert secret not in self.caplog.text, "the token reached the logs"


@pytest.fixture
def api(
    jwks: JwksCache,
    vendor: CredentialVendor,
    fake_sts: FakeSts,
    jwks_source: StaticJwksSource,
    caplog: pytest.LogCaptureFixture,
) -> Api:
    caplog.set_level(logging.DEBUG, logger="tenantscope")
    ran: list[str] = []

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ran.append(current_tenant().tenant_id)
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    return Api(handler, fake_sts, jwks_source, caplog, ran)


Build = Callable[[Keys], str]

# --------------------------------------------------------------------------------------------------
# Positive controls: the same helpers and handler accept good tokens.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda k: k.issuer.token("acme"), id="issuer-minted"),
        pytest.param(lambda k: k.signed(), id="hand-forged-with-the-real-key"),
        pytest.param(
            lambda k: k.signed(claims=omit(k.claims(client_id=DEV_AUDIENCE), "aud")),
            id="cognito-access-token-client-id",
        ),
    ],
)
def test_control_good_token_is_accepted(api: Api, keys: Keys, build: Build) -> None:
    # GIVEN a token the real issuer signed, built by the same helpers as the attacks
    # WHEN it is presented
    response = api.call(http_api_event(build(keys)))
    # THEN the handler runs as its tenant with scoped credentials
    assert response == {"statusCode": 200, "body": "acme"}
    assert api.ran == ["acme"]
    assert [r.tenant_id for r in api.sts.requests] == ["acme"]


# --------------------------------------------------------------------------------------------------
# Token attacks: 401
# --------------------------------------------------------------------------------------------------


def now() -> int:
    return int(time.time())


TOKEN_ATTACKS = [
    # alg "none" in any spelling, with an empty signature (RFC 8725 2.1, 3.1)
    *(
        pytest.param(
            lambda k, alg=alg: k.forge(k.header(alg=alg)), Reason.ALGORITHM_NOT_ALLOWED, id=f"alg-{alg}"
        )
        for alg in ("none", "None", "NONE", "nOnE")
    ),
    pytest.param(
        lambda k: k.forge(omit(k.header(alg="none"), "kid")),
        Reason.ALGORITHM_NOT_ALLOWED,
        id="alg-none-without-kid",
    ),
    pytest.param(
        lambda k: ".".join([*parts(k.issuer.token())[:2], ""]),
        Reason.BAD_TOKEN_SIGNATURE,
        id="signature-stripped",
    ),
    pytest.param(
        lambda k: ".".join([*parts(k.issuer.token("globex"))[:2], parts(k.issuer.token("acme"))[2]]),
        Reason.BAD_TOKEN_SIGNATURE,
        id="signature-of-another-token-spliced-on",
    ),
    pytest.param(
        lambda k: ".".join(
            [parts(k.issuer.token())[0], segment(k.claims(tenant_id="globex")), parts(k.issuer.token())[2]]
        ),
        Reason.BAD_TOKEN_SIGNATURE,
        id="payload-tampered-signature-kept",
    ),
    # algorithms outside the allow-list, even with the real key
    pytest.param(
        lambda k: k.issuer.token(headers={"alg": "RS512"}),
        Reason.ALGORITHM_NOT_ALLOWED,
        id="alg-RS512-not-allowed",
    ),
    pytest.param(
        lambda k: k.signed(k.header(alg="PS256")), Reason.ALGORITHM_NOT_ALLOWED, id="alg-PS256-not-allowed"
    ),
    pytest.param(
        lambda k: k.signed(k.header(alg="ES256")), Reason.ALGORITHM_NOT_ALLOWED, id="alg-ES256-not-allowed"
    ),
    pytest.param(lambda k: k.signed(k.header(alg=["RS256"])), Reason.ALGORITHM_NOT_ALLOWED, id="alg-list"),
    pytest.param(lambda k: k.signed(omit(k.header(), "alg")), Reason.ALGORITHM_NOT_ALLOWED, id="alg-missing"),
    # key confusion: HS256 with the issuer's public key as the HMAC secret (RFC 8725 2.1)
    pytest.param(
        lambda k: k.forge(k.header(alg="HS256"), sign=lambda s: hs256(k.issuer.public_pem(), s)),
        Reason.ALGORITHM_NOT_ALLOWED,
        id="hs256-public-key-pem",
    ),
    pytest.param(
        lambda k: k.forge(
            k.header(alg="HS256"), sign=lambda s: hs256(json.dumps(k.issuer.jwk()).encode(), s)
        ),
        Reason.ALGORITHM_NOT_ALLOWED,
        id="hs256-public-key-jwk-json",
    ),
    pytest.param(
        lambda k: k.forge(
            k.header(alg="HS256"),
            sign=lambda s: hs256(jwt.algorithms.RSAAlgorithm.to_jwk(k.issuer.public_key).encode(), s),
        ),
        Reason.ALGORITHM_NOT_ALLOWED,
        id="hs256-public-key-pyjwt-jwk",
    ),
    # key material or key locations chosen by the token's author
    pytest.param(
        lambda k: k.signed(k.header(kid=k.attacker.kid, jwk=k.attacker.jwk()), by=k.attacker),
        Reason.REFUSED_HEADER,
        id="embedded-jwk-attacker-key",
    ),
    pytest.param(
        lambda k: k.signed(k.header(jwk=k.attacker.jwk()), by=k.attacker),
        Reason.REFUSED_HEADER,
        id="embedded-jwk-with-our-kid",
    ),
    *(
        pytest.param(
            lambda k, name=name, real=real: k.signed(
                k.header(**{name: "https://attacker.example/.well-known/jwks.json"}),
                by=k.issuer if real else k.attacker,
            ),
            Reason.REFUSED_HEADER,
            id=f"{name}-attacker-url-signed-by-{'real-key' if real else 'attacker'}",
        )
        for name in ("jku", "x5u")
        for real in (False, True)
    ),
    pytest.param(
        lambda k: k.signed(k.header(x5c=["MIIBattackercert"])),
        Reason.REFUSED_HEADER,
        id="x5c-signed-by-real-key",
    ),
    pytest.param(lambda k: k.signed(k.header(crit=["exp"])), Reason.REFUSED_HEADER, id="crit-header"),
    pytest.param(
        lambda k: k.issuer.token(headers={"crit": ["b64"], "b64": False}),
        Reason.MALFORMED_AUTHORIZATION,
        id="crit-b64-false",
    ),
    pytest.param(
        lambda k: k.signed(k.header(b64=False)), Reason.MALFORMED_TOKEN, id="b64-false-unencoded-payload"
    ),
    # kid: unknown, hostile, or missing
    pytest.param(
        lambda k: k.signed(k.header(kid="unknown-kid"), by=k.attacker), Reason.UNKNOWN_KID, id="kid-unknown"
    ),
    pytest.param(
        lambda k: k.signed(k.header(kid="dev-key-2")), Reason.UNKNOWN_KID, id="kid-unknown-signed-by-real-key"
    ),
    pytest.param(
        lambda k: k.signed(k.header(kid="../../etc/passwd")), Reason.UNKNOWN_KID, id="kid-path-traversal"
    ),
    pytest.param(lambda k: k.signed(k.header(kid="' OR 1=1 --")), Reason.MALFORMED_KID, id="kid-sql"),
    pytest.param(
        lambda k: k.signed(k.header(kid="x" * 10 * 1024)), Reason.MALFORMED_AUTHORIZATION, id="kid-10kb"
    ),
    pytest.param(lambda k: k.signed(k.header(kid="x" * 129)), Reason.MALFORMED_KID, id="kid-129-chars"),
    pytest.param(
        lambda k: k.signed(k.header(kid=k.issuer.kid + "\n")), Reason.MALFORMED_KID, id="kid-trailing-newline"
    ),
    pytest.param(
        lambda k: k.signed(k.header(kid=k.issuer.kid + " ")), Reason.MALFORMED_KID, id="kid-trailing-space"
    ),
    pytest.param(lambda k: k.signed(k.header(kid="")), Reason.MALFORMED_KID, id="kid-empty"),
    pytest.param(lambda k: k.signed(k.header(kid=1)), Reason.MALFORMED_KID, id="kid-number"),
    pytest.param(lambda k: k.signed(k.header(kid=[k.issuer.kid])), Reason.MALFORMED_KID, id="kid-list"),
    pytest.param(
        lambda k: k.signed(k.header(kid={"kid": k.issuer.kid})), Reason.MALFORMED_KID, id="kid-object"
    ),
    pytest.param(lambda k: k.signed(k.header(kid=None)), Reason.MALFORMED_KID, id="kid-null"),
    pytest.param(lambda k: k.signed(k.header(kid=True)), Reason.MALFORMED_KID, id="kid-true"),
    pytest.param(lambda k: k.signed(omit(k.header(), "kid")), Reason.MALFORMED_KID, id="kid-missing"),
    # a valid signature by another issuer's key that reuses our kid
    pytest.param(lambda k: k.foreign.token("acme"), Reason.BAD_TOKEN_SIGNATURE, id="foreign-issuer-same-kid"),
    pytest.param(
        lambda k: k.signed(by=k.attacker), Reason.BAD_TOKEN_SIGNATURE, id="attacker-key-with-our-kid"
    ),
    # issuer: exact, typed match only
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": "https://evil.example"}), Reason.WRONG_ISSUER, id="iss-wrong"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": DEV_ISSUER[:-1]}), Reason.WRONG_ISSUER, id="iss-prefix"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": "https://issuer"}),
        Reason.WRONG_ISSUER,
        id="iss-short-prefix",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": DEV_ISSUER + "/evil"}),
        Reason.WRONG_ISSUER,
        id="iss-extended-path",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": DEV_ISSUER + "."}),
        Reason.WRONG_ISSUER,
        id="iss-extended-dot",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": DEV_ISSUER + "/"}),
        Reason.WRONG_ISSUER,
        id="iss-trailing-slash",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": DEV_ISSUER.upper()}), Reason.WRONG_ISSUER, id="iss-uppercase"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iss": "x" + DEV_ISSUER}),
        Reason.WRONG_ISSUER,
        id="iss-contains-ours",
    ),
    pytest.param(lambda k: k.signed(claims=k.claims(iss=[DEV_ISSUER])), Reason.WRONG_ISSUER, id="iss-list"),
    pytest.param(lambda k: k.signed(claims=k.claims(iss=123)), Reason.WRONG_ISSUER, id="iss-number"),
    pytest.param(lambda k: k.signed(claims=k.claims(iss=None)), Reason.INVALID_TOKEN, id="iss-null"),
    pytest.param(lambda k: k.issuer.token(drop=("iss",)), Reason.INVALID_TOKEN, id="iss-missing"),
    # audience (or client_id for Cognito access tokens)
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": "another-client"}), Reason.WRONG_AUDIENCE, id="aud-wrong"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": ["a-client", "b-client"]}),
        Reason.WRONG_AUDIENCE,
        id="aud-list-without-ours",
    ),
    pytest.param(lambda k: k.issuer.token(claims={"aud": []}), Reason.WRONG_AUDIENCE, id="aud-empty-list"),
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": DEV_AUDIENCE + "-evil"}),
        Reason.WRONG_AUDIENCE,
        id="aud-extended",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": DEV_AUDIENCE[:-1]}), Reason.WRONG_AUDIENCE, id="aud-prefix"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": {DEV_AUDIENCE: True}}), Reason.WRONG_AUDIENCE, id="aud-object"
    ),
    pytest.param(lambda k: k.issuer.token(claims={"aud": 123}), Reason.WRONG_AUDIENCE, id="aud-number"),
    pytest.param(
        lambda k: k.issuer.token(drop=("aud",)), Reason.WRONG_AUDIENCE, id="aud-and-client-id-missing"
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"client_id": "another-client"}, drop=("aud",)),
        Reason.WRONG_AUDIENCE,
        id="client-id-wrong",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"aud": "another-client", "client_id": DEV_AUDIENCE}),
        Reason.WRONG_AUDIENCE,
        id="aud-wrong-client-id-right",
    ),
    # time claims
    pytest.param(
        lambda k: k.issuer.token(claims={"exp": now() - 31, "iat": now() - 3600}),
        Reason.TOKEN_EXPIRED,
        id="exp-just-beyond-leeway",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"exp": now() - 3600, "iat": now() - 7200}),
        Reason.TOKEN_EXPIRED,
        id="exp-an-hour-ago",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"nbf": now() + 600}),
        Reason.TOKEN_NOT_YET_VALID,
        id="nbf-in-the-future",
    ),
    pytest.param(
        lambda k: k.issuer.token(claims={"iat": now() + 600}),
        Reason.TOKEN_NOT_YET_VALID,
        id="iat-in-the-future",
    ),
    pytest.param(lambda k: k.issuer.token(drop=("exp",)), Reason.INVALID_TOKEN, id="exp-missing"),
    pytest.param(lambda k: k.issuer.token(drop=("iat",)), Reason.INVALID_TOKEN, id="iat-missing"),
    pytest.param(lambda k: k.issuer.token(claims={"exp": None}), Reason.INVALID_TOKEN, id="exp-null"),
    pytest.param(
        lambda k: k.issuer.token(claims={"exp": "tomorrow"}), Reason.MALFORMED_TOKEN, id="exp-string"
    ),
    pytest.param(
        lambda k: k.signed(claims=k.claims(exp=float("inf"))), Reason.MALFORMED_TOKEN, id="exp-infinity"
    ),
    # structure and size
    pytest.param(
        lambda k: k.issuer.token(claims={"pad": "x" * 9000}),
        Reason.MALFORMED_AUTHORIZATION,
        id="oversized-token",
    ),
    pytest.param(lambda k: "abc.def.ghi", Reason.MALFORMED_TOKEN, id="garbage-segments"),
    pytest.param(lambda k: "a.b.c", Reason.MALFORMED_TOKEN, id="segments-of-one-char"),
    pytest.param(lambda k: "!!!.???.***", Reason.MALFORMED_AUTHORIZATION, id="not-base64url"),
    pytest.param(
        lambda k: k.issuer.token().replace("-", "+").replace("_", "/") + "==",
        Reason.MALFORMED_AUTHORIZATION,
        id="base64-not-url",
    ),
    pytest.param(
        lambda k: f"{b64url(b'not json')}.{segment(k.claims())}.AAAA",
        Reason.MALFORMED_TOKEN,
        id="header-not-json",
    ),
    pytest.param(
        lambda k: f"{segment([k.header()])}.{segment(k.claims())}.AAAA",
        Reason.MALFORMED_TOKEN,
        id="header-json-array",
    ),
    pytest.param(
        lambda k: f"{segment('RS256')}.{segment(k.claims())}.AAAA",
        Reason.MALFORMED_TOKEN,
        id="header-json-string",
    ),
    pytest.param(
        lambda k: f"{b64url(b'[' * 3000)}.{segment(k.claims())}.AAAA",
        Reason.MALFORMED_TOKEN,
        id="header-deeply-nested",
    ),
    pytest.param(lambda k: f"{segment(k.header())}.a.AAAA", Reason.MALFORMED_TOKEN, id="payload-bad-base64"),
    pytest.param(
        lambda k: (lambda s: f"{s}.{rs256(k.issuer.private_key, s)}")(
            f"{segment(k.header())}.{b64url(b'not json')}"
        ),
        Reason.MALFORMED_TOKEN,
        id="payload-not-json-signed-by-real-key",
    ),
    pytest.param(
        lambda k: k.signed(claims=[k.claims()]),
        Reason.MALFORMED_TOKEN,
        id="payload-json-array-signed-by-real-key",
    ),  # type: ignore[arg-type]
    pytest.param(
        lambda k: ".".join(parts(k.issuer.token())[:2]), Reason.MALFORMED_AUTHORIZATION, id="two-segments"
    ),
    pytest.param(lambda k: k.issuer.token() + ".AAAA", Reason.MALFORMED_AUTHORIZATION, id="four-segments"),
    pytest.param(
        lambda k: k.issuer.token() + ".AAAA.BBBB",
        Reason.MALFORMED_AUTHORIZATION,
        id="five-segments-jwe-shape",
    ),
    pytest.param(lambda k: "", Reason.MALFORMED_AUTHORIZATION, id="empty"),
]


@pytest.mark.parametrize(("build", "reason"), TOKEN_ATTACKS)
def test_token_attack_is_401(api: Api, keys: Keys, build: Build, reason: Reason) -> None:
    # GIVEN a forged, tampered or otherwise unacceptable token
    token = build(keys)
    # WHEN it is presented as a bearer token
    response = api.call(http_api_event(token))
    # THEN it is refused before the handler or STS, and leaves no trace of itself
    api.assert_refused(response, 401, reason, secret=token or None)


def test_flood_of_unknown_kids_fetches_jwks_a_bounded_number_of_times(api: Api, keys: Keys) -> None:
    # GIVEN 1,000 tokens with random kids (signatures are random: kids are looked up before any check)
    tokens = [
        keys.forge(
            keys.header(kid=secrets.token_urlsafe(16)), sign=lambda _: b64url(secrets.token_bytes(256))
        )
        for _ in range(1000)
    ]
    # WHEN they are all presented
    responses = [api.call(http_api_event(token)) for token in tokens]
    # THEN every one is refused and the JWKS was fetched at most a couple of times
    assert {r["statusCode"] for r in responses} == {401}
    assert api.ran == []
    assert api.sts.requests == []
    assert 1 <= api.source.fetches <= 2
    # AND a good token is still accepted without another fetch storm
    assert api.call(http_api_event(keys.issuer.token("acme")))["statusCode"] == 200
    assert api.source.fetches <= 2


@pytest.mark.parametrize(
    ("algorithms", "build"),
    [
        pytest.param(
            "RS256,HS256",
            lambda k: k.forge(k.header(alg="HS256"), sign=lambda s: hs256(k.issuer.public_pem(), s)),
            id="hs256-allowed-public-pem-as-secret",
        ),
        pytest.param(
            "RS256,HS256",
            lambda k: k.forge(
                k.header(alg="HS256"), sign=lambda s: hs256(json.dumps(k.issuer.jwk()).encode(), s)
            ),
            id="hs256-allowed-public-jwk-as-secret",
        ),
        pytest.param("RS256,none", lambda k: k.forge(k.header(alg="none")), id="none-allowed"),
        pytest.param("RS256,RS512", lambda k: k.issuer.token(headers={"alg": "RS512"}), id="rs512-allowed"),
    ],
)
def test_widened_algorithm_list_still_binds_the_algorithm_to_the_key(
    monkeypatch: pytest.MonkeyPatch, api: Api, keys: Keys, algorithms: str, build: Build
) -> None:
    # GIVEN a misconfigured function that allows more algorithms than its issuer's RS256 key
    monkeypatch.setenv("TENANTSCOPE_JWT_ALGORITHMS", algorithms)
    reset_process_state()
    token = build(keys)
    # WHEN a token claims one of the extra algorithms for the RSA key's kid
    response = api.call(http_api_event(token))
    # THEN the key's own algorithm wins: refused
    api.assert_refused(response, 401, Reason.ALGORITHM_MISMATCH, secret=token)


def test_symmetric_key_in_the_jwks_is_never_used_even_when_hs256_is_allowed(
    monkeypatch: pytest.MonkeyPatch, api: Api, keys: Keys
) -> None:
    # GIVEN an issuer whose JWKS also publishes a symmetric ("oct") key, which anyone can read,
    # and a function misconfigured to allow HS256
    secret = secrets.token_bytes(32)
    oct_key = {"kty": "oct", "kid": "hmac-key", "alg": "HS256", "use": "sig", "k": b64url(secret)}
    api.source.document = {"keys": [keys.issuer.jwk(), oct_key]}
    monkeypatch.setenv("TENANTSCOPE_JWT_ALGORITHMS", "RS256,HS256")
    reset_process_state()
    # WHEN a token is HS256-signed with that published secret, under its kid
    token = keys.forge(keys.header(alg="HS256", kid="hmac-key"), sign=lambda s: hs256(secret, s))
    response = api.call(http_api_event(token))
    # THEN the key was never loaded: its kid is unknown
    api.assert_refused(response, 401, Reason.UNKNOWN_KID, secret=token)
    assert api.source.fetches >= 1


def test_token_signed_by_a_short_rsa_key_in_the_jwks_is_refused(api: Api, keys: Keys) -> None:
    # GIVEN an issuer that publishes a 1024-bit RSA key beside its good one
    weak = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=1024), kid="weak-key")
    api.source.document = {"keys": [keys.issuer.jwk(), weak.jwk()]}
    # WHEN a token with good claims is signed by the short key, under its kid
    token = keys.signed(keys.header(kid=weak.kid), by=weak)
    response = api.call(http_api_event(token))
    # THEN it is refused as PyJWT's minimum key length refuses the key, though its signature verifies
    api.assert_refused(response, 401, Reason.INVALID_TOKEN, secret=token)
    assert "InvalidKeyError" in api.caplog.text


def test_handlers_of_two_issuers_never_share_keys(vendor: CredentialVendor, keys: Keys) -> None:
    # GIVEN two functions' handlers in one process, each trusting its own issuer and JWKS,
    # whose keys share a kid
    first, second = keys.issuer, keys.foreign
    assert first.kid == second.kid

    def settings_of(issuer: LocalIssuer, name: str) -> Settings:
        jwks = "inline:" + json.dumps(issuer.jwks())
        return Settings.load(jwt_issuer=f"https://{name}.example", jwt_audience=name, jwks_url=jwks)

    def handler_of(settings: Settings) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        @api_handler(settings=settings, vendor=vendor)
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return {"statusCode": 200, "body": current_tenant().tenant_id}

        return handler

    def token(signer: LocalIssuer, settings: Settings) -> str:
        claims = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience[0]}
        return signer.token("acme", claims=claims)

    settings_a, settings_b = settings_of(first, "issuer-a"), settings_of(second, "issuer-b")
    handler_a, handler_b = handler_of(settings_a), handler_of(settings_b)
    # WHEN the first handler has loaded its issuer's keys
    assert handler_a(http_api_event(token(first, settings_a)), LambdaContext())["statusCode"] == 200
    # THEN the second checks its tokens with its own issuer's key only: a token with its claims
    # signed by the first issuer's key is refused, and its own issuer's token accepted
    assert handler_b(http_api_event(token(first, settings_b)), LambdaContext())["statusCode"] == 401
    assert handler_b(http_api_event(token(second, settings_b)), LambdaContext())["statusCode"] == 200
    # AND the first still accepts its own tokens only
    assert handler_a(http_api_event(token(second, settings_a)), LambdaContext())["statusCode"] == 401
    # AND handlers trusting the same JWKS share one cache of it
    assert jwks_cache_for(settings_a) is jwks_cache_for(Settings.load(jwks_url=settings_a.jwks_url))


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"token_use": "id"}, id="id-token"),
        pytest.param({"token_use": "ID"}, id="id-token-uppercase-access"),
        pytest.param({"token_use": ["access"]}, id="token-use-list"),
        pytest.param({"token_use": None}, id="token-use-null"),
    ],
)
def test_id_token_where_access_token_is_required_is_401(
    monkeypatch: pytest.MonkeyPatch, api: Api, keys: Keys, claims: dict[str, Any]
) -> None:
    # GIVEN a function that requires access tokens
    monkeypatch.setenv("TENANTSCOPE_JWT_TOKEN_USE", "access")
    reset_process_state()
    token = keys.issuer.token("acme", claims=claims)
    # WHEN an id token (or no token_use) is presented
    response = api.call(http_api_event(token))
    # THEN it is refused
    api.assert_refused(response, 401, Reason.WRONG_TOKEN_USE, secret=token)


def test_access_token_is_accepted_when_access_tokens_are_required(
    monkeypatch: pytest.MonkeyPatch, api: Api, keys: Keys
) -> None:
    monkeypatch.setenv("TENANTSCOPE_JWT_TOKEN_USE", "access")
    reset_process_state()
    assert api.call(http_api_event(keys.issuer.token("acme")))["statusCode"] == 200


def test_missing_token_use_is_401_when_access_tokens_are_required(
    monkeypatch: pytest.MonkeyPatch, api: Api, keys: Keys
) -> None:
    monkeypatch.setenv("TENANTSCOPE_JWT_TOKEN_USE", "access")
    reset_process_state()
    token = keys.issuer.token("acme", drop=("token_use",))
    api.assert_refused(api.call(http_api_event(token)), 401, Reason.WRONG_TOKEN_USE, secret=token)


# --------------------------------------------------------------------------------------------------
# Authorization header attacks: 401
# --------------------------------------------------------------------------------------------------


def with_authorization(value: Any) -> Callable[[Keys], dict[str, Any]]:
    def build(k: Keys) -> dict[str, Any]:
        event = http_api_event(None)
        event["headers"]["authorization"] = value(k) if callable(value) else value
        return event

    return build


@pytest.mark.parametrize(
    ("build_event", "reason"),
    [
        pytest.param(lambda k: http_api_event(None), Reason.MISSING_TOKEN, id="missing"),
        pytest.param(
            lambda k: {**http_api_event(None), "headers": None}, Reason.MISSING_TOKEN, id="headers-null"
        ),
        pytest.param(with_authorization("Basic abc"), Reason.MALFORMED_AUTHORIZATION, id="basic-scheme"),
        pytest.param(
            with_authorization(lambda k: f"Basic {k.issuer.token()}"),
            Reason.MALFORMED_AUTHORIZATION,
            id="basic-with-valid-token",
        ),
        pytest.param(
            with_authorization(lambda k: f"Token {k.issuer.token()}"),
            Reason.MALFORMED_AUTHORIZATION,
            id="other-scheme-valid-token",
        ),
        pytest.param(
            with_authorization(lambda k: k.issuer.token()),
            Reason.MALFORMED_AUTHORIZATION,
            id="no-scheme-valid-token",
        ),
        pytest.param(with_authorization("Bearer"), Reason.MALFORMED_AUTHORIZATION, id="bearer-only"),
        pytest.param(with_authorization("Bearer "), Reason.MALFORMED_AUTHORIZATION, id="bearer-space"),
        pytest.param(with_authorization(""), Reason.MALFORMED_AUTHORIZATION, id="empty"),
        pytest.param(
            with_authorization("Bearer  two words"), Reason.MALFORMED_AUTHORIZATION, id="bearer-two-words"
        ),
        pytest.param(
            with_authorization(lambda k: f"Bearer {k.issuer.token()} extra"),
            Reason.MALFORMED_AUTHORIZATION,
            id="bearer-token-and-more",
        ),
        pytest.param(
            with_authorization(lambda k: f"Bearer\t{k.issuer.token()}"),
            Reason.MALFORMED_AUTHORIZATION,
            id="bearer-tab",
        ),
        pytest.param(with_authorization(123), Reason.MALFORMED_AUTHORIZATION, id="value-number"),
        pytest.param(with_authorization(None), Reason.MALFORMED_AUTHORIZATION, id="value-null"),
        pytest.param(
            with_authorization(lambda k: [f"Bearer {k.issuer.token()}"]),
            Reason.MALFORMED_AUTHORIZATION,
            id="value-list",
        ),
        pytest.param(
            with_authorization(lambda k: {"Bearer": k.issuer.token()}),
            Reason.MALFORMED_AUTHORIZATION,
            id="value-object",
        ),
        pytest.param(
            with_authorization(lambda k: f"Bearer {k.issuer.token()}".encode()),
            Reason.MALFORMED_AUTHORIZATION,
            id="value-bytes",
        ),
    ],
)
def test_bad_authorization_header_is_401(
    api: Api, keys: Keys, build_event: Callable[[Keys], dict[str, Any]], reason: Reason
) -> None:
    response = api.call(build_event(keys))
    api.assert_refused(response, 401, reason)


# --------------------------------------------------------------------------------------------------
# Tenant claim attacks: a valid token whose tenant is refused, 403
# --------------------------------------------------------------------------------------------------

_MISSING = object()


@pytest.mark.parametrize(
    "tenant",
    [
        pytest.param(_MISSING, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("*", id="wildcard"),
        pytest.param("acme*", id="wildcard-suffix"),
        pytest.param("acme?", id="wildcard-question"),
        pytest.param("acme#x", id="key-delimiter"),
        pytest.param("\u0430cme", id="cyrillic-a-look-alike"),
        pytest.param("ACME", id="uppercase"),
        pytest.param("acme\n", id="trailing-newline"),
        pytest.param(" acme", id="leading-space"),
        pytest.param("acme/../globex", id="path"),
        pytest.param("a", id="too-short"),
        pytest.param("a" * 65, id="too-long"),
        pytest.param(123, id="number"),
        pytest.param(["acme"], id="list"),
        pytest.param({"id": "acme"}, id="object"),
        pytest.param(True, id="true"),
        pytest.param(None, id="null"),
    ],
)
def test_bad_tenant_claim_is_403(api: Api, keys: Keys, tenant: object) -> None:
    # GIVEN a genuinely signed token whose tenant claim breaks the tenant id grammar
    if tenant is _MISSING:
        token = keys.issuer.token("acme", drop=("tenant_id",))
    else:
        token = keys.issuer.token(tenant)
    # WHEN it is presented
    response = api.call(http_api_event(token))
    # THEN the identity is valid but the tenant is refused
    api.assert_refused(response, 403, Reason.INVALID_TENANT_CLAIM, secret=token)


@pytest.mark.parametrize("lambda_tenant", ["globex", "ACME", "acme ", "acme\n", ""])
def test_token_tenant_differs_from_lambda_tenant_id_is_403(api: Api, keys: Keys, lambda_tenant: str) -> None:
    # GIVEN Lambda tenant isolation mode invoked for another tenant than the token's
    token = keys.issuer.token("acme")
    # WHEN an acme token arrives
    response = api.call(http_api_event(token), LambdaContext(tenant_id=lambda_tenant))
    # THEN it is refused
    api.assert_refused(response, 403, Reason.LAMBDA_TENANT_MISMATCH, secret=token)
