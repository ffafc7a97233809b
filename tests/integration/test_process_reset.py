"""Tests that change configuration between two calls of the same decorated handler.

A warm container keeps, for the life of the process, the settings, the issuer's JWKS, the key
rings, the tenants' credentials and clients, and what each decorated handler built from them
(its verifier, its replay guard, its tracer). ``tenantscope.testing.reset_process_state()``
forgets all of it: the same handler objects, not re-imported, then use the new issuer, the new
signing keys and new credentials. Without it the old ones stay, and a token or a message of the
new configuration is refused as if forged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tenantscope import SqsRecord, api_handler, current_tenant, sqs_handler
from tenantscope.testing import (
    LambdaContext,
    LocalIssuer,
    LocalTenants,
    local_tenants,
    make_ring,
    reset_process_state,
    ring_document,
    ring_spec,
    signed_sqs_record,
    sqs_event,
)
from tenantscope.testing._events import key_bytes


@api_handler
def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": current_tenant().tenant_id}


@sqs_handler
def consume(record: SqsRecord, context: Any) -> None:
    assert current_tenant().tenant_id == json.loads(record.body)["tenant"]


@pytest.fixture
def local() -> Iterator[LocalTenants]:
    with local_tenants() as local:
        yield local


def status(issuer: LocalIssuer, tenant: str = "acme") -> int:
    from tenantscope.testing import http_api_event

    response: dict[str, Any] = whoami(http_api_event(issuer.token(tenant)), LambdaContext())
    return int(response["statusCode"])


def test_a_new_issuer_and_its_keys_reach_the_same_handler_after_a_reset(
    local: LocalTenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = local.issuer
    assert status(first) == 200
    # Another issuer, with another key pair under the same kid: the JWKS, not the kid, changed.
    second = LocalIssuer.generate(issuer="https://issuer.example.test", kid=first.kid)
    with monkeypatch.context() as patch:  # undone inside the block: see local_tenants
        for name, value in second.environment().items():
            patch.setenv(name, value)

        assert status(second) == 401  # the handler still trusts the first issuer's cached keys
        reset_process_state()
        assert status(second) == 200
        assert status(first) == 401  # and no longer the first


def test_new_signing_keys_reach_the_same_consumer_after_a_reset(
    local: LocalTenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"tenant": "acme"})
    assert consume(sqs_event([local.sqs_record(body, tenant_id="acme")]), LambdaContext()) == {
        "batchItemFailures": []
    }
    rotated = ring_document({"k2": key_bytes("k2")}, "k2")
    record = signed_sqs_record(body, tenant_id="acme", ring=make_ring({"k2": key_bytes("k2")}))
    with monkeypatch.context() as patch:  # undone inside the block: see local_tenants
        patch.setenv("TENANTSCOPE_SIGNING_KEYS", ring_spec(rotated))

        failed = {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        assert consume(sqs_event([record]), LambdaContext()) == failed  # the old ring, still cached
        reset_process_state()
        assert consume(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}


def test_credentials_are_vended_again_after_a_reset(local: LocalTenants) -> None:
    assert status(local.issuer) == 200
    assert status(local.issuer) == 200
    assert local.assumed_tenants() == ["acme"]  # cached for the process
    reset_process_state()
    assert status(local.issuer) == 200
    assert local.assumed_tenants() == ["acme", "acme"]


def test_settings_are_read_again_after_a_reset(local: LocalTenants, monkeypatch: pytest.MonkeyPatch) -> None:
    assert status(local.issuer) == 200
    with monkeypatch.context() as patch:  # undone inside the block: see local_tenants
        patch.setenv("TENANTSCOPE_TENANT_CLAIM", "org")
        reset_process_state()
        assert status(local.issuer) == 403  # the token's tenant is under tenant_id, not org
        assert os.environ["TENANTSCOPE_TENANT_CLAIM"] == "org"
