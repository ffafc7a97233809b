"""The tenant context: one ContextVar, read only through active_scope(), carried to threads on request."""

from __future__ import annotations

import ast
import asyncio
import contextvars
import gc
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import tenantscope
from tenantscope import (
    CrossTenantAccess,
    InvalidTenantId,
    NoTenantContext,
    Reason,
    SqsRecord,
    TenantContext,
    TenantLogFilter,
    _context,
    current_tenant,
    in_tenant_scope,
    sign_message,
    sqs_handler,
    tenant_scope,
)
from tenantscope._config import Settings
from tenantscope._context import _enter_scope, acting_for_a_tenant, active_scope
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope.testing import QUEUE_ARN, RING, LambdaContext, signed_sqs_record, sqs_event


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
    given = {"sub": "u"}
    ctx = TenantContext("acme", source="jwt", subject="u", claims=given)
    assert (ctx.tenant_id, ctx.source, ctx.subject, dict(ctx.claims)) == ("acme", "jwt", "u", {"sub": "u"})
    given["sub"] = "changed"  # a copy was taken
    assert ctx.claims["sub"] == "u"
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


def rows_in_scope(tenant: str) -> Iterator[int]:
    """A helper generator that opens ``tenant``'s scope around what it yields."""
    with tenant_scope(tenant):
        yield 1
        yield 2


def test_an_abandoned_generator_finalized_in_another_block_leaves_that_block_alone() -> None:
    # GIVEN a generator that opened a scope inside acme's block and was abandoned there
    with tenant_scope("acme"):
        abandoned = rows_in_scope("acme")
        next(abandoned)
    # WHEN the garbage collector finalizes it during globex's block, in the same context
    with tenant_scope("globex"):
        del abandoned
        gc.collect()
        # THEN globex's block is still globex's: acme's ended scope never comes back
        assert current_tenant().tenant_id == "globex"
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_a_batch_job_never_seals_or_logs_for_the_tenant_of_an_abandoned_generator() -> None:
    # GIVEN a job that loops over tenants, each block using a helper generator with its own scope
    def orders(tenant: str) -> Iterator[str]:
        with tenant_scope(tenant):
            yield from ("o1", "o2")

    sealed: dict[str, object] = {}
    logged: dict[str, object] = {}
    pending: list[Iterator[str]] = []
    for tenant in ("acme", "globex"):
        with tenant_scope(tenant):
            if pending:  # WHEN acme's abandoned generator is finalized inside globex's block
                pending.clear()
                gc.collect()
            # ... after which this block seals a message and logs a line
            attributes = sign_message("{}", destination=QUEUE_ARN, ring=RING)
            sealed[tenant] = attributes["tenantscope-tenant"]["StringValue"]
            record = logging.LogRecord("job", logging.INFO, __file__, 1, "sent", None, None)
            TenantLogFilter().filter(record)
            logged[tenant] = getattr(record, "tenant_id", None)
            pending.append(orders(tenant))
            next(pending[-1])  # abandoned early: its scope is left open in this context
    # THEN every block sealed and logged as its own tenant
    assert sealed == {"acme": "acme", "globex": "globex"}
    assert logged == {"acme": "acme", "globex": "globex"}


def test_an_outer_scope_ending_first_ends_the_scopes_opened_inside_it() -> None:
    # GIVEN generators that opened globex's scope inside acme's block, and initech's inside
    # globex's, both still suspended
    inner_scopes = []

    def inner(tenant: str) -> Iterator[str]:
        with tenant_scope(tenant):
            inner_scopes.append(active_scope())
            yield current_tenant().tenant_id

    with tenant_scope("acme"):
        suspended = [inner("globex"), inner("initech")]
        assert [next(generator) for generator in suspended] == ["globex", "initech"]
    # WHEN acme's block ends first THEN nothing is current, and every scope opened inside it ended too
    assert active_scope() is None
    assert len(inner_scopes) == 2 and all(_context._ended(scope) for scope in inner_scopes)
    for generator in reversed(suspended):
        generator.close()
    assert active_scope() is None


def test_a_middle_scope_ending_first_leaves_the_block_inside_it_without_a_scope() -> None:
    # GIVEN acme's block, and inside it a generator that opened globex's scope and, in it,
    # initech's, still suspended
    def inner() -> Iterator[str]:
        with tenant_scope("globex"), tenant_scope("initech"):
            yield current_tenant().tenant_id

    with tenant_scope("acme"):
        suspended = inner()
        assert next(suspended) == "initech"
        globex, initech = active_scope().parent, active_scope()  # type: ignore[union-attr]
        # WHEN globex's scope ends while initech's is current
        _context._exit_scope(globex)  # type: ignore[arg-type]
        # THEN initech's ended with it, and the block finds no scope: not acme's, which it never
        # opened (code there may be acting for initech or globex)
        assert _context._ended(initech)
        with pytest.raises(NoTenantContext):
            current_tenant()
        # and once initech's and globex's blocks are left, acme's block is acme's again
        suspended.close()
        assert current_tenant().tenant_id == "acme"
    assert active_scope() is None


def test_a_tenant_block_inside_a_generators_scope_never_continues_as_the_unit_tenant() -> None:
    # GIVEN acme's unit, a helper generator that opened a scope for acme and was left suspended,
    # and then a block for globex opened inside it
    with tenant_scope("acme"):
        helper = rows_in_scope("acme")
        next(helper)
        with tenant_scope("globex"):
            # WHEN the helper is finalized inside globex's block
            del helper
            gc.collect()
            # THEN the rest of globex's block is neither globex's nor acme's: it has no scope
            with pytest.raises(NoTenantContext):
                current_tenant()
        # and acme's block, which opened the helper, is acme's again
        assert current_tenant().tenant_id == "acme"


def test_a_scope_opened_in_a_worker_ends_with_the_unit_of_work_around_it() -> None:
    # GIVEN a worker thread of acme's unit that opens a scope of its own, and is still running
    # when the unit ends
    opened, unit_ended = threading.Event(), threading.Event()
    seen: list[object] = []

    def worker() -> None:
        with tenant_scope(current_tenant().tenant_id):
            opened.set()
            unit_ended.wait(timeout=30)  # a guard against a deadlock, not a timing assertion
            seen.append(active_scope())
            with pytest.raises(NoTenantContext) as refused:
                sign_message("{}", destination=QUEUE_ARN, ring=RING)
            seen.append(refused.value.reason)

    pool = ThreadPoolExecutor(1)
    try:
        with tenant_scope("acme"):
            running = pool.submit(in_tenant_scope(worker))
            assert opened.wait(timeout=30)
        # WHEN the unit has ended, THEN the worker's own scope has ended with it
        unit_ended.set()
        running.result(timeout=30)
    finally:
        pool.shutdown()
    assert seen == [None, Reason.SCOPE_ENDED]


def test_what_was_made_for_a_tenant_acts_only_in_that_tenants_scope() -> None:
    with tenant_scope("acme"):
        _context._scope_of("acme")  # its own: nothing to refuse
        with tenant_scope("globex"), pytest.raises(CrossTenantAccess) as foreign:
            _context._scope_of("acme")
    assert foreign.value.reason is Reason.FOREIGN_SCOPE
    with pytest.raises(NoTenantContext) as outside:
        _context._scope_of("acme")
    assert outside.value.reason is Reason.NO_SCOPE


def test_a_tenant_block_inside_a_unit_of_work_uses_the_settings_and_vendor_its_adapter_was_given() -> None:
    settings = Settings.load(environ={}, role_arn="arn:aws:iam::123456789012:role/tenant")
    vendor = CredentialVendor(FakeSts())
    with _enter_scope(TenantContext("acme"), settings, vendor), tenant_scope("globex"):
        assert active_scope().settings is settings  # type: ignore[union-attr]
        assert active_scope().vendor is vendor  # type: ignore[union-attr]
    with tenant_scope("globex"):  # outside any unit: the environment's and the process's, when needed
        assert active_scope().settings is None  # type: ignore[union-attr]
        assert active_scope().vendor is None  # type: ignore[union-attr]


def test_in_tenant_scope_passes_positional_and_keyword_arguments() -> None:
    with tenant_scope("acme"), ThreadPoolExecutor(1) as pool:
        task = in_tenant_scope(lambda n, *, unit: (current_tenant().tenant_id, n, unit))
        assert pool.submit(task, 3, unit="kg").result() == ("acme", 3, "kg")


def test_nothing_seals_or_logs_for_a_tenant_after_its_scope_ended() -> None:
    # GIVEN a context copied while acme's scope was open (a thread, a task, a callback)
    with tenant_scope("acme"):
        copied = contextvars.copy_context()
    # WHEN code in that copy produces or logs after the scope ended
    for named in (None, "acme", "globex"):
        with pytest.raises(NoTenantContext) as refused:
            copied.run(sign_message, "{}", destination=QUEUE_ARN, ring=RING, tenant_id=named)
        assert refused.value.reason is Reason.SCOPE_ENDED
    record = logging.LogRecord("late", logging.INFO, __file__, 1, "late", None, None)
    copied.run(TenantLogFilter().filter, record)
    # THEN it cannot seal without naming a tenant, and its lines carry no tenant
    assert not hasattr(record, "tenant_id")


def test_in_tenant_scope_refuses_to_run_after_its_scope_ended() -> None:
    ran: list[str] = []
    with tenant_scope("acme"):
        carried = in_tenant_scope(lambda: ran.append("ran"))
    with pytest.raises(NoTenantContext, match="ended"):
        carried()
    assert ran == []


def test_a_worker_thread_still_running_when_its_scope_ends_cannot_seal() -> None:
    # GIVEN work started in a thread with in_tenant_scope, still running when the invocation ends
    started, scope_ended = threading.Event(), threading.Event()

    def work() -> object:
        started.set()
        scope_ended.wait(timeout=30)
        try:
            return sign_message("{}", destination=QUEUE_ARN, ring=RING)
        except NoTenantContext as error:
            return error

    with ThreadPoolExecutor(1) as pool:
        with tenant_scope("acme"):
            future = pool.submit(in_tenant_scope(work))
            assert started.wait(timeout=30)
        scope_ended.set()
        # THEN its late send is refused rather than sealed for acme
        assert isinstance(future.result(timeout=30), NoTenantContext)


def test_an_asyncio_task_outliving_its_scope_cannot_seal() -> None:
    async def late_send(release: asyncio.Event) -> object:
        await release.wait()
        try:
            return sign_message("{}", destination=QUEUE_ARN, ring=RING)
        except NoTenantContext as error:
            return error

    async def invocation() -> object:
        release = asyncio.Event()
        with tenant_scope("acme"):
            task = asyncio.ensure_future(late_send(release))
            await asyncio.sleep(0)
        release.set()
        return await task

    assert isinstance(asyncio.run(invocation()), NoTenantContext)


def test_only_the_context_module_reads_the_scope_variable() -> None:
    # The rule that keeps ended scopes out of every reader: one accessor, active_scope().
    variables = {name for name, value in vars(_context).items() if isinstance(value, contextvars.ContextVar)}
    assert variables, "the scope variable moved: update this test"
    package = Path(tenantscope.__file__).parent
    offenders = []
    for module in package.glob("*.py"):
        if module.name == "_context.py":
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.ImportFrom)
                else [node.attr]
                if isinstance(node, ast.Attribute)
                else [node.id]
                if isinstance(node, ast.Name)
                else []
            )
            offenders += [f"{module.name}: {name}" for name in names if name in variables]
    assert offenders == []


def test_a_scope_carried_elsewhere_ends_with_its_block() -> None:
    with tenant_scope("acme"):
        carried = in_tenant_scope(current_tenant)
        copied = contextvars.copy_context()
    with pytest.raises(NoTenantContext):
        carried()
    with pytest.raises(NoTenantContext):
        copied.run(current_tenant)


def test_a_thread_without_a_scope_cannot_seal_for_a_tenant_it_names_while_a_unit_runs(
    vendor: CredentialVendor,
) -> None:
    # GIVEN acme's SQS record, whose function hands work to a plain thread pool (no in_tenant_scope),
    # and that work names the tenant the record's body asks for
    record = signed_sqs_record('{"notify": "globex"}', tenant_id="acme", message_id="m-1")
    outcomes: list[object] = []

    @sqs_handler(ring=RING, vendor=vendor)
    def fan_out(rec: SqsRecord, context: Any) -> None:
        named = rec.json["notify"]
        with ThreadPoolExecutor(1) as pool:
            for work in (
                lambda: sign_message("{}", destination=QUEUE_ARN, ring=RING, tenant_id=named),
                in_tenant_scope(lambda: sign_message("{}", destination=QUEUE_ARN, ring=RING)),
            ):
                try:
                    outcomes.append(pool.submit(work).result()["tenantscope-tenant"]["StringValue"])
                except NoTenantContext as refused:
                    outcomes.append(refused.reason)

    assert fan_out(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    # THEN the plain thread's seal is refused, and the one run in the unit's scope seals for acme
    assert outcomes == [Reason.UNSCOPED_THREAD, "acme"]
    # AND once no scope is open, a back-office job names its tenant again
    signed = sign_message("{}", destination=QUEUE_ARN, ring=RING, tenant_id="globex")
    assert signed["tenantscope-tenant"]["StringValue"] == "globex"


def test_no_scope_is_counted_open_once_it_has_ended() -> None:
    with tenant_scope("acme"), tenant_scope("globex"):
        assert acting_for_a_tenant()
    assert not acting_for_a_tenant()
    with pytest.raises(RuntimeError), tenant_scope("acme"):  # noqa: PT012
        assert acting_for_a_tenant()
        raise RuntimeError("the block failed")
    assert not acting_for_a_tenant()
