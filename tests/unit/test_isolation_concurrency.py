"""Isolation under concurrency: interleaved invocations never see another tenant."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tenantscope import NoTenantContext, api_handler, current_tenant, tenant_scope
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope.testing import LocalIssuer
from tests.conftest import LambdaContext, http_api_event, signed_as

TENANTS = [f"tenant-{n:02d}" for n in range(25)]


class Boom(Exception):
    pass


def build_handler(jwks: JwksCache, vendor: CredentialVendor) -> Any:
    switch = threading.Event()

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        expected = event["headers"]["x-expected-tenant"]
        for _ in range(3):
            if current_tenant().tenant_id != expected or signed_as()[0] != expected:
                return {"statusCode": 599, "body": "LEAK"}
            switch.wait(0.0001)  # yield the GIL mid-invocation so threads interleave
        if event["headers"].get("x-fail") == "1":
            raise Boom("random failure")
        return {"statusCode": 200, "body": expected}

    return handler


def invoke(handler: Any, token: str, tenant: str, fail: bool) -> tuple[int, str]:
    headers = {"x-expected-tenant": tenant, "x-fail": "1" if fail else "0"}
    response = handler(http_api_event(token, headers=headers), LambdaContext())
    try:
        current_tenant()
        leaked = "scope outlived the invocation"
    except NoTenantContext:
        leaked = ""
    return response["statusCode"], leaked


@pytest.fixture
def tokens(issuer: LocalIssuer) -> dict[str, str]:
    return {tenant: issuer.token(tenant) for tenant in TENANTS}


def test_thousands_of_threaded_invocations_stay_isolated(
    jwks: JwksCache, vendor: CredentialVendor, tokens: dict[str, str]
) -> None:
    handler = build_handler(jwks, vendor)
    rng = random.Random(1234)
    jobs = [(tokens[t := rng.choice(TENANTS)], t, rng.random() < 0.2) for _ in range(3000)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda job: (job, invoke(handler, *job)), jobs))
    for (_, _, fail), (status, leaked) in results:
        assert leaked == ""
        assert status == (500 if fail else 200)
    assert len(vendor.sts.requests) == len(TENANTS)  # type: ignore[attr-defined]


def test_thousands_of_asyncio_invocations_stay_isolated(
    jwks: JwksCache, vendor: CredentialVendor, tokens: dict[str, str]
) -> None:
    handler = build_handler(jwks, vendor)
    rng = random.Random(99)

    async def one(tenant: str, fail: bool) -> tuple[int, str]:
        # An async unit of work: scope held across awaits, then the sync handler in a worker thread.
        with tenant_scope(tenant):
            await asyncio.sleep(0)
            assert current_tenant().tenant_id == tenant
        return await asyncio.to_thread(invoke, handler, tokens[tenant], tenant, fail)

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(one(rng.choice(TENANTS), n % 5 == 0) for n in range(2000)))

    results = asyncio.run(main())
    assert all(leaked == "" for _, leaked in results)
    assert sorted({status for status, _ in results}) == [200, 500]
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_a_generator_abandoned_in_one_invocation_cannot_reach_the_next(
    jwks: JwksCache, vendor: CredentialVendor, tokens: dict[str, str]
) -> None:
    kept: list[Iterator[int]] = []

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        def rows() -> Iterator[int]:
            with tenant_scope(current_tenant().tenant_id):
                yield 1
                yield 2

        if not kept:  # the first invocation leaves a generator suspended inside its scope
            generator = rows()
            next(generator)
            kept.append(generator)
        else:  # the next one drops it, and the garbage collector finalizes it right here
            kept.clear()
            gc.collect()
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    first = handler(http_api_event(tokens[TENANTS[0]]), LambdaContext())
    second = handler(http_api_event(tokens[TENANTS[1]]), LambdaContext())
    assert (first["body"], second["body"]) == (TENANTS[0], TENANTS[1])
