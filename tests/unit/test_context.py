"""The tenant context: one ContextVar, always reset, carried into threads only on request."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenantscope import (
    InvalidTenantId,
    NoTenantContext,
    TenantContext,
    current_tenant,
    in_tenant_scope,
    tenant_scope,
)


def test_no_scope_raises() -> None:
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_scope_sets_and_resets_even_on_error() -> None:
    def fail_inside_scope() -> None:
        with tenant_scope("acme"):
            assert current_tenant().tenant_id == "acme"
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside_scope()
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_nested_scopes_restore_the_outer_one() -> None:
    with tenant_scope("acme"):
        with tenant_scope("globex", source="custom", subject="job-7") as inner:
            assert current_tenant() is inner
            assert inner.subject == "job-7"
        assert current_tenant().tenant_id == "acme"


def test_invalid_tenant_never_opens_a_scope() -> None:
    with pytest.raises(InvalidTenantId), tenant_scope("acme#x"):
        pytest.fail("scope opened")
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_context_is_frozen_and_its_claims_are_read_only() -> None:
    ctx = TenantContext("acme", source="jwt", claims={"sub": "u"})
    with pytest.raises(AttributeError):
        ctx.tenant_id = "globex"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.claims["sub"] = "x"  # type: ignore[index]


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        TenantContext("acme", source="header")  # type: ignore[arg-type]


def test_plain_threads_do_not_inherit_the_scope() -> None:
    seen: list[str] = []

    def probe() -> None:
        try:
            seen.append(current_tenant().tenant_id)
        except NoTenantContext:
            seen.append("none")

    with tenant_scope("acme"):
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
    assert seen == ["none"]


def test_in_tenant_scope_carries_the_scope_into_worker_threads() -> None:
    # GIVEN a scope and a pool of worker threads
    with tenant_scope("acme"), ThreadPoolExecutor(4) as pool:
        task = in_tenant_scope(lambda n: (current_tenant().tenant_id, n))
        # WHEN work is submitted through the helper
        results = list(pool.map(task, range(20)))
    # THEN every worker saw the caller's tenant, and nothing leaked back out
    assert results == [("acme", n) for n in range(20)]
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_in_tenant_scope_requires_a_scope() -> None:
    with pytest.raises(NoTenantContext):
        in_tenant_scope(lambda: None)


def test_worker_changes_do_not_leak_back_to_the_caller() -> None:
    def reenter() -> str:
        with tenant_scope("globex"):
            pass
        return current_tenant().tenant_id

    with tenant_scope("acme"), ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_tenant_scope(reenter)).result() == "acme"
        assert current_tenant().tenant_id == "acme"


def test_asyncio_tasks_each_keep_their_own_scope() -> None:
    async def one(tenant: str) -> str:
        with tenant_scope(tenant):
            await asyncio.sleep(0)
            return current_tenant().tenant_id

    async def many() -> list[str]:
        return await asyncio.gather(*(one(f"t{n:02d}") for n in range(50)))

    assert asyncio.run(many()) == [f"t{n:02d}" for n in range(50)]
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_an_abandoned_generator_fails_closed_rather_than_bringing_its_tenant_back() -> None:
    # GIVEN a generator that opened a scope inside acme's block and was abandoned there
    def rows() -> Iterator[int]:
        with tenant_scope("acme"):
            yield 1
            yield 2

    with tenant_scope("acme"):
        abandoned = rows()
        next(abandoned)
    # WHEN the garbage collector finalizes it during globex's block, in the same context
    with tenant_scope("globex"):
        del abandoned
        gc.collect()
        # THEN what it restores is acme's ended scope, which counts as no scope: never acme
        with pytest.raises(NoTenantContext):
            current_tenant()


def test_a_scope_carried_elsewhere_ends_with_its_block() -> None:
    with tenant_scope("acme"):
        carried = in_tenant_scope(current_tenant)
        copied = contextvars.copy_context()
    with pytest.raises(NoTenantContext):
        carried()
    with pytest.raises(NoTenantContext):
        copied.run(current_tenant)
