"""@api_handler: the happy path, error mapping, and that the scope never outlives the call."""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tenantscope import (
    CrossTenantAccess,
    InvalidTenantId,
    NoTenantContext,
    Reason,
    Settings,
    StsThrottled,
    Unauthorized,
    api_handler,
    current_tenant,
    tenant_session,
    tenant_table,
)
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache, StaticJwksSource
from tenantscope._resolve import _compact_jws, bearer_token, tenant_from_claims
from tenantscope.testing import LocalIssuer
from tests.conftest import LambdaContext, http_api_event, rest_api_event, signed_as


def make_handler(jwks: JwksCache, vendor: CredentialVendor, body: Any = None) -> Any:
    seen: list[Any] = []

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        tenant = current_tenant()
        seen.append((tenant, signed_as()[0]))
        if isinstance(body, BaseException):
            raise body
        return {"statusCode": 200, "body": tenant.tenant_id}

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def test_http_api_v2_runs_handler_as_token_tenant(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    handler = make_handler(jwks, vendor)
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response == {"statusCode": 200, "body": "acme"}
    ((tenant, signed_tenant),) = handler.seen
    assert tenant.source == "jwt" and tenant.subject == "user-1"
    assert signed_tenant == "acme"
    assert [r.tenant_id for r in fake_sts.requests] == ["acme"]
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_the_handlers_own_settings_reach_the_tenants_data_clients(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    # GIVEN a handler given settings that differ from the environment's (us-east-1)
    settings = Settings.load(region="eu-west-1")
    regions: list[str] = []

    @api_handler(settings=settings, jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        table = tenant_table("app")
        assert tenant_table("app") is table  # made once per tenant and credentials, then reused
        regions.extend([tenant_session().region_name, table.meta.client.meta.region_name])
        return {"statusCode": 200}

    # WHEN its tenant code makes data clients THEN they are made with those settings
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert regions == ["eu-west-1", "eu-west-1"]


@pytest.mark.parametrize("header_name", ["Authorization", "authorization", "AUTHORIZATION"])
@pytest.mark.parametrize("multi_value", [False, True])
def test_rest_api_v1_headers_any_case_and_multi_value(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, header_name: str, multi_value: bool
) -> None:
    handler = make_handler(jwks, vendor)
    event = rest_api_event(issuer.token("globex"), header_name=header_name, multi_value=multi_value)
    assert handler(event, LambdaContext())["body"] == "globex"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, scheme: str
) -> None:
    handler = make_handler(jwks, vendor)
    event = http_api_event(None, headers={"Authorization": f"{scheme} {issuer.token('acme')}"})
    assert handler(event, LambdaContext())["statusCode"] == 200


def test_two_different_authorization_values_are_ambiguous(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    handler = make_handler(jwks, vendor)
    event = rest_api_event(issuer.token("acme"), multi_value=True)
    event["multiValueHeaders"]["Authorization"].append(f"Bearer {issuer.token('globex')}")
    assert handler(event, LambdaContext())["statusCode"] == 401
    assert handler.seen == []


def test_lambda_tenant_isolation_mode_must_match_token(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    handler = make_handler(jwks, vendor)
    ok = handler(http_api_event(issuer.token("acme")), LambdaContext(tenant_id="acme"))
    refused = handler(http_api_event(issuer.token("acme")), LambdaContext(tenant_id="globex"))
    assert ok["statusCode"] == 200
    assert refused["statusCode"] == 403
    assert len(handler.seen) == 1 and len(fake_sts.requests) == 1


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (CrossTenantAccess(Reason.FOREIGN_KEY), 403),
        (StsThrottled(Reason.STS_THROTTLED, "Throttling"), 503),
        (RuntimeError("db password is hunter2"), 500),
    ],
)
def test_handler_errors_map_to_bodies_without_internals(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, raised: Exception, status: int
) -> None:
    handler = make_handler(jwks, vendor, body=raised)
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == status
    message = json.loads(response["body"])["message"]
    assert message in {"Forbidden", "Service Unavailable", "Internal Server Error"}
    assert str(raised) not in response["body"]
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_sts_failure_is_503_and_handler_never_runs(
    issuer: LocalIssuer, jwks: JwksCache, fake_sts: FakeSts
) -> None:
    fake_sts.refuse = True
    handler = make_handler(jwks, CredentialVendor(fake_sts, sleep=lambda _: None))
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert handler.seen == []


def test_missing_token_is_401_with_www_authenticate(jwks: JwksCache, vendor: CredentialVendor) -> None:
    handler = make_handler(jwks, vendor)
    response = handler(http_api_event(None), LambdaContext())
    assert response["statusCode"] == 401
    assert response["headers"]["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(response["body"]) == {"message": "Unauthorized"}


def test_misconfiguration_fails_closed_with_500(
    monkeypatch: pytest.MonkeyPatch, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    monkeypatch.delenv("TENANTSCOPE_JWT_ISSUER")
    handler = make_handler(jwks, vendor)
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 500
    assert handler.seen == []


def test_explicit_settings_override_environment(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    @api_handler(jwks=jwks, vendor=vendor, settings=Settings.load(jwt_audience=("another-client",)))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200}

    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 401
    other = issuer.token("acme", claims={"aud": "another-client"})
    assert handler(http_api_event(other), LambdaContext())["statusCode"] == 200


def test_an_explicit_audience_string_is_one_audience_not_a_substring(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    @api_handler(jwks=jwks, vendor=vendor, settings=Settings.load(jwt_audience="my-client"))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200}

    for audience in ("my", "client", "-", "my-client-2"):
        token = issuer.token("acme", claims={"aud": audience})
        assert handler(http_api_event(token), LambdaContext())["statusCode"] == 401, audience
    token = issuer.token("acme", claims={"aud": "my-client"})
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 200


def test_issuer_keys_that_never_loaded_are_a_503_not_a_401(
    issuer: LocalIssuer, jwks_source: StaticJwksSource, vendor: CredentialVendor
) -> None:
    # GIVEN an issuer whose JWKS endpoint is down from cold start
    jwks_source.fail = True
    handler = make_handler(JwksCache(jwks_source), vendor)
    # THEN a valid token is answered "try again", not "your token is bad"
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 503
    assert handler.seen == []


def test_a_handler_error_is_logged_without_its_message(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_handler(jwks, vendor, body=ValueError("card 4111111111111111 declined"))
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 500
    logged = "\n".join(caplog.text.splitlines())
    assert "ValueError" in logged
    assert "4111111111111111" not in logged


# The bearer token's shape was a regular expression; the check that replaced it must accept exactly
# the strings it matched.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@hypothesis_settings(max_examples=2000, database=None, derandomize=True, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09-_.=+/ é\n\x00"), max_size=12) | st.text(max_size=12))
def test_the_compact_jws_check_accepts_what_the_grammar_matches(token: str) -> None:
    assert _compact_jws(token) == (_COMPACT_JWS.fullmatch(token) is not None)


@pytest.mark.parametrize(
    "token",
    ["a.b.c", "a.b.", "ab-_.cd.", "a..c", ".b.c", "a.b", "a.b.c.d", "a.b.c=", "a.b.c\n", "á.b.c", "a.b.c "],
)
def test_the_compact_jws_check_on_edge_cases(token: str) -> None:
    assert _compact_jws(token) == (_COMPACT_JWS.fullmatch(token) is not None)


# --- the bearer token: only the Authorization header, within the length caps ------------------------

SHAPED = "aaaa.bbbb.cccc"  # the shape of a compact JWS: bearer_token checks nothing more


def bearer_refusal(event: dict[str, Any], max_bytes: int = 100) -> Reason:
    with pytest.raises(Unauthorized) as refusal:
        bearer_token(event, max_bytes)
    return refusal.value.reason


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"headers": {"Authorisation": f"Bearer {SHAPED}"}}, id="same-length-header"),
        pytest.param({"multiValueHeaders": {"Authorisation": [f"Bearer {SHAPED}"]}}, id="same-length-multi"),
        pytest.param({"multiValueHeaders": {"X-Token": [f"Bearer {SHAPED}"]}}, id="other-multi-value-header"),
        pytest.param({"multiValueHeaders": {"Authorization": f"Bearer {SHAPED}"}}, id="multi-not-list"),
        pytest.param({"multiValueHeaders": ["Authorization", f"Bearer {SHAPED}"]}, id="multi-values-a-list"),
        pytest.param({"headers": f"Authorization: Bearer {SHAPED}"}, id="headers-a-string"),
    ],
)
def test_a_token_anywhere_but_the_authorization_header_is_no_token(event: dict[str, Any]) -> None:
    assert bearer_refusal(event) is Reason.MISSING_TOKEN


@pytest.mark.parametrize("key", ["headers", "multiValueHeaders"])
def test_headers_may_be_any_mapping(key: str) -> None:
    value = f"Bearer {SHAPED}"
    headers = MappingProxyType({"Authorization": [value] if key == "multiValueHeaders" else value})
    assert bearer_token({key: headers}, 100) == SHAPED


def test_the_token_and_the_header_are_capped_at_their_lengths() -> None:
    # GIVEN a cap of exactly the token's length
    cap = len(SHAPED)
    # THEN a token of that length passes, one more byte does not
    assert bearer_token({"headers": {"Authorization": f"Bearer {SHAPED}"}}, cap) == SHAPED
    assert bearer_refusal({"headers": {"Authorization": f"Bearer {SHAPED}"}}, cap - 1) is (
        Reason.MALFORMED_AUTHORIZATION
    )
    # AND the whole header may exceed the cap by 16 characters (the scheme and its spaces), not more
    assert bearer_token({"headers": {"Authorization": "Bearer" + " " * 10 + SHAPED}}, cap) == SHAPED
    assert bearer_refusal({"headers": {"Authorization": "Bearer" + " " * 11 + SHAPED}}, cap) is (
        Reason.MALFORMED_AUTHORIZATION
    )


def test_tenant_from_claims_reads_the_configured_claim() -> None:
    settings = Settings.load(tenant_claim="custom:tenant")
    claims = {"custom:tenant": "acme", "tenant_id": "globex", "sub": "u-1", "iss": "i", "jti": "j"}
    context = tenant_from_claims(claims, settings)
    assert (context.tenant_id, context.source, context.subject) == ("acme", "jwt", "u-1")
    assert dict(context.claims) == {"iss": "i", "sub": "u-1"}  # selected claims only
    with pytest.raises(InvalidTenantId) as refusal:
        tenant_from_claims({"tenant_id": "acme"}, settings)
    assert refusal.value.reason is Reason.INVALID_TENANT_CLAIM


def test_in_lambda_the_issuers_keys_are_fetched_when_the_handler_is_built(
    issuer: LocalIssuer,
    jwks_source: StaticJwksSource,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a handler built outside Lambda THEN the keys wait for its first request
    make_handler(JwksCache(jwks_source), vendor)
    assert jwks_source.fetches == 0
    # GIVEN one built in Lambda (its init) THEN they are fetched at once, not on the first request
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "api")
    jwks = JwksCache(jwks_source)
    handler = make_handler(jwks, vendor)
    assert jwks_source.fetches == 1
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert jwks_source.fetches == 1


def test_a_handler_that_cannot_preload_in_lambda_is_built_and_answers_500(
    issuer: LocalIssuer,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a function in Lambda with no JWKS URL configured
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "api")
    monkeypatch.delenv("TENANTSCOPE_JWKS_URL")

    # WHEN its handler is built THEN init goes on, and the log says why the keys were not preloaded
    @api_handler(settings=Settings.load(), vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200}

    (record,) = [r for r in caplog.records if r.name == "tenantscope"]
    assert record.getMessage() == "tenantscope: could not preload at cold start"
    assert record.exc_info is not None and "TENANTSCOPE_JWKS_URL" in str(record.exc_info[1])
    # AND each request is answered 500, with nothing of the cause in its body
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert (response["statusCode"], json.loads(response["body"])) == (
        500,
        {"message": "Internal Server Error"},
    )


def test_a_handler_called_without_a_lambda_context_runs(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    # A function's own tests often pass None: no request id, no tenant isolation mode.
    handler = make_handler(jwks, vendor)
    assert handler(http_api_event(issuer.token("acme")), None) == {"statusCode": 200, "body": "acme"}


def test_a_handler_failure_is_logged_with_its_traceback_but_not_its_message(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_handler(jwks, vendor, body=RuntimeError("order 42: card 4242 4242 4242 4242"))
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 500
    (record,) = [r for r in caplog.records if r.getMessage().startswith("tenantscope: API request failed")]
    assert record.getMessage() == "tenantscope: API request failed in its handler: RuntimeError"
    assert record.exc_info is not None
    assert record.exc_info[0].__name__ == "RuntimeError"  # a stand-in of its type, with its traceback
    assert record.exc_info[2] is not None
    assert "4242" not in str(record.exc_info[1])
