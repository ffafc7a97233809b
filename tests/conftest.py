"""Shared fixtures: a development issuer, settings in the environment, fakes for STS and JWKS."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from devtools.issuer import DEV_AUDIENCE, DEV_ISSUER
from tenantscope import NoTenantContext, _credentials, current_tenant, tenant_session
from tenantscope._config import Settings, TableSpec
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache, StaticJwksSource
from tenantscope.testing import (
    LambdaContext,
    LocalIssuer,
    http_api_event,
    reset_process_state,
    rest_api_event,
)
from tests.fakes import FakeClock
from tests.leaks import assert_no_secret_in

__all__ = ["LambdaContext", "http_api_event", "rest_api_event"]

ROLE_ARN = "arn:aws:iam::123456789012:role/tenantscope-tenant"
TABLE = "tenantscope-app"
BUCKET = "tenantscope-files"
REGION = "us-east-1"
OTHER_REGION = "eu-central-1"  # not the environment's default region: shows a region is passed on


def policy_settings(**overrides: Any) -> Settings:
    """The session-policy strategy on the pooled table and bucket, with ``overrides``."""
    values: dict[str, Any] = {
        "role_arn": ROLE_ARN,
        "region": REGION,
        "tables": (TableSpec(TABLE, "pk"),),
        "buckets": (BUCKET,),
        "isolation": "session-policy",
    }
    return Settings.load(environ={}, **(values | overrides))


@pytest.fixture(scope="session")
def issuer() -> LocalIssuer:
    return LocalIssuer.generate()


@pytest.fixture(scope="session")
def foreign_issuer() -> LocalIssuer:
    """A different key pair that also claims to be the development issuer."""
    return LocalIssuer.generate(kid="dev-key-1")


@pytest.fixture(autouse=True)
def environment_put_back() -> Iterator[None]:
    """Fails a test that leaves the process environment changed behind it (set up before, and so
    checked after, the other fixtures of each test): a leaked variable configures the tests that
    follow."""
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    changed = sorted(
        name
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name) and name != "PYTEST_CURRENT_TEST"  # pytest's own
    )
    assert changed == [], f"the test left these environment variables changed: {changed}"


@pytest.fixture(autouse=True)
def tenantscope_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GIVEN a function configured for the development issuer, one role, a pooled table and bucket."""
    for name, value in {
        "TENANTSCOPE_JWT_ISSUER": DEV_ISSUER,
        "TENANTSCOPE_JWT_AUDIENCE": DEV_AUDIENCE,
        "TENANTSCOPE_JWKS_URL": "https://issuer.tenantscope.dev/.well-known/jwks.json",
        "TENANTSCOPE_ROLE_ARN": ROLE_ARN,
        "TENANTSCOPE_TABLES": f"{TABLE}=pk",
        "TENANTSCOPE_BUCKETS": BUCKET,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing-function-role",
        "AWS_SECRET_ACCESS_KEY": "testing-function-role-secret",
        "AWS_SESSION_TOKEN": "testing-function-role-token",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset_process_state()
    yield
    reset_process_state()


@pytest.fixture(autouse=True)
def no_secret_reaches_a_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Across the whole suite, attack tests included: no token, credential or signing key is ever logged.

    Every token minted with PyJWT, every credential vended and every signing key loaded
    during a test is recorded; after the test, its captured log lines (tenantscope at DEBUG,
    everything else at INFO, exception text included) must contain none of them, nor
    anything shaped like a JWT.
    """
    from tenantscope import _credentials, _keyring

    secrets: set[str] = set()
    real_encode, real_parse = jwt.encode, _keyring._parse_ring
    real_assume = _credentials.CredentialVendor._assume

    def encode(*args: Any, **kwargs: Any) -> str:
        token = real_encode(*args, **kwargs)
        secrets.add(token)
        return token

    def assume(self: Any, request: Any) -> Any:
        credentials = real_assume(self, request)
        secrets.update({credentials.secret_access_key, credentials.session_token})
        return credentials

    def parse_ring(document: Any) -> Any:
        active, keys = real_parse(document)
        secrets.update(str(v) for v in (document.get("keys") or {}).values())
        secrets.update(k.hex() for k in keys.values())
        return active, keys

    monkeypatch.setattr(jwt, "encode", encode)
    monkeypatch.setattr(_credentials.CredentialVendor, "_assume", assume)
    monkeypatch.setattr(_keyring, "_parse_ring", parse_ring)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="tenantscope")
    yield
    formatter = logging.Formatter("%(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    text = "\n".join(formatter.format(record) for record in records)
    assert_no_secret_in(text, secrets, "logs")


@pytest.fixture
def jwks_source(issuer: LocalIssuer) -> StaticJwksSource:
    return StaticJwksSource(issuer.jwks())


def signed_as() -> tuple[str, str]:
    """The tenant and the access key id the current unit of work's requests are signed with now,
    read where botocore's signer reads them (FakeSts names the tenant in its session tokens)."""
    frozen = tenant_session().get_credentials().get_frozen_credentials()
    return frozen.token.removeprefix("fake-token-").rsplit("-", 1)[0], frozen.access_key


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told (a test module may start it elsewhere)."""
    return FakeClock()


@pytest.fixture
def no_scope_leaks() -> Iterator[None]:
    """Fails a test that leaves a tenant scope open behind it."""
    yield
    with pytest.raises(NoTenantContext):
        current_tenant()


@pytest.fixture
def jwks(jwks_source: StaticJwksSource) -> JwksCache:
    return JwksCache(jwks_source)


@pytest.fixture
def fake_sts() -> FakeSts:
    return FakeSts()


@pytest.fixture
def vendor(fake_sts: FakeSts) -> CredentialVendor:
    vendor = CredentialVendor(fake_sts, sleep=lambda _: None)
    _credentials.set_default_vendor(vendor)
    return vendor
