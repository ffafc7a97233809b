"""tenantscope.testing's stand-ins: the Lambda context, the recording tracer and the local issuer.

The context is held to the Python runtime's own (awslambdaric's ``LambdaContext``, as the Lambda
image runs it): the same attributes, of the same types.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tenantscope._config import Settings
from tenantscope.testing import LambdaContext, LocalIssuer, RecordingTracer

ISSUER = LocalIssuer.generate()

# What the runtime's context holds (awslambdaric/lambda_context.py), and the type of each.
RUNTIME_CONTEXT = {
    "aws_request_id": str,
    "log_group_name": str,
    "log_stream_name": str,
    "function_name": str,
    "memory_limit_in_mb": str,  # read from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, never converted
    "function_version": str,
    "invoked_function_arn": str,
    "tenant_id": type(None),  # set in tenant isolation mode only
    "client_context": type(None),  # set for a mobile client only
}


# --- the Lambda context ------------------------------------------------------------------


def test_the_context_has_the_runtimes_attributes_of_the_runtimes_types() -> None:
    context = LambdaContext()
    public = {name: type(value) for name, value in vars(context).items() if not name.startswith("_")}
    assert public == {**RUNTIME_CONTEXT, "identity": type(context.identity)}
    assert (context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id) == (None, None)


def test_the_context_names_the_function_where_lambda_names_it() -> None:
    context = LambdaContext(
        "orders-api", request_id="r-7", tenant_id="acme", region="eu-west-1", account="210987654321"
    )
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:210987654321:function:orders-api"
    assert (context.function_name, context.function_version) == ("orders-api", "$LATEST")
    assert (context.aws_request_id, context.tenant_id, context.memory_limit_in_mb) == ("r-7", "acme", "512")
    assert context.log_group_name == "/aws/lambda/orders-api"
    today = time.strftime("%Y/%m/%d", time.gmtime())
    assert re.fullmatch(re.escape(today) + r"/\[\$LATEST\][0-9a-f]{32}", context.log_stream_name)


def test_the_default_context_is_a_test_function_in_the_test_account() -> None:
    context = LambdaContext()
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    assert context.aws_request_id == "req-1"


def test_the_remaining_time_counts_down_from_the_timeout_and_stops_at_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    context, default = LambdaContext(timeout=3.0), LambdaContext()
    assert (context.get_remaining_time_in_millis(), default.get_remaining_time_in_millis()) == (3000, 30000)
    clock[0] += 1.25
    assert context.get_remaining_time_in_millis() == 1750
    clock[0] += 10
    assert context.get_remaining_time_in_millis() == 0


# --- the recording tracer ----------------------------------------------------------------


def test_the_tracer_finds_spans_by_name() -> None:
    tracer = RecordingTracer()
    for name in ("tenantscope.sqs", "tenantscope.api", "tenantscope.sqs"):
        with tracer.span(name):
            pass
    assert [span.name for span in tracer.named("tenantscope.sqs")] == ["tenantscope.sqs"] * 2
    assert tracer.named("tenantscope.sfn") == []


# --- the local issuer --------------------------------------------------------------------


def test_the_issuers_key_set_names_its_key_for_rs256_signatures() -> None:
    (key,) = ISSUER.jwks()["keys"]
    assert (key["kid"], key["use"], key["alg"], key["kty"]) == (ISSUER.kid, "sig", "RS256", "RSA")
    assert LocalIssuer.generate().private_key.key_size == 2048


def test_the_issuers_environment_is_the_settings_that_trust_it() -> None:
    environment = LocalIssuer.generate(tenant_claim="org").environment()
    assert sorted(environment) == [
        "TENANTSCOPE_JWKS_URL",
        "TENANTSCOPE_JWT_AUDIENCE",
        "TENANTSCOPE_JWT_ISSUER",
        "TENANTSCOPE_TENANT_CLAIM",
    ]
    settings = Settings.load(environ=environment)
    assert (settings.jwt_issuer, settings.jwt_audience, settings.tenant_claim) == (
        LocalIssuer.DEFAULT_ISSUER,
        (LocalIssuer.DEFAULT_AUDIENCE,),
        "org",
    )
    jwks = environment["TENANTSCOPE_JWKS_URL"].removeprefix("inline:")
    assert " " not in jwks  # compact: it is an environment variable's value
    assert json.loads(jwks)["keys"][0]["kid"] == "dev-key-1"


def verified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, ISSUER.public_key, algorithms=["RS256"], audience=ISSUER.audience
    )
    return claims


def test_a_token_is_acmes_for_an_hour_by_default_each_with_its_own_id() -> None:
    first, second = (
        jwt.decode(ISSUER.token(), ISSUER.public_key, algorithms=["RS256"], audience=ISSUER.audience)
        for _ in range(2)
    )
    assert (first["tenant_id"], first["exp"] - first["iat"], first["token_use"]) == ("acme", 3600, "access")
    assert first["jti"] != second["jti"]
    assert first["sub"] == "user-1"
    # the claims on their own are a token's
    claims = ISSUER.claims("acme")
    assert (claims["sub"], claims["exp"] - claims["iat"], claims["tenant_id"]) == ("user-1", 3600, "acme")
    assert jwt.get_unverified_header(ISSUER.token())["kid"] == ISSUER.kid


def test_a_token_takes_its_lifetime_claims_and_drops() -> None:
    token = ISSUER.token("globex", lifetime=60, claims={"scope": "orders"}, drop=("jti", "no-such-claim"))
    claims = verified(token)
    assert (claims["tenant_id"], claims["exp"] - claims["iat"], claims["scope"]) == ("globex", 60, "orders")
    assert "jti" not in claims


def test_the_issuers_keys_are_written_as_unencrypted_pem() -> None:
    private = serialization.load_pem_private_key(ISSUER.private_pem(), password=None)
    public = serialization.load_pem_public_key(ISSUER.public_pem())
    assert ISSUER.private_pem().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS #8
    assert (
        private.public_key().public_numbers() == public.public_numbers() == ISSUER.public_key.public_numbers()
    )  # type: ignore[union-attr]
