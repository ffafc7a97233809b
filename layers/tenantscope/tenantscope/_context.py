"""The tenant context: one ContextVar holding the scope of the current unit of work.

A unit of work is one API invocation, one SQS record or one Step Functions task. Its
scope is set on entry and ended on exit, whatever happens inside, so nothing of a tenant
is visible after its scope ends, including in the next invocation of a warm container.
:func:`active_scope` is the only reader of the ContextVar, and it sees an ended scope as none.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, get_args

from ._errors import CrossTenantAccess, NoTenantContext, Reason
from ._tenant_id import validate_tenant_id

if TYPE_CHECKING:
    from ._config import Settings
    from ._credentials import CredentialVendor

__all__ = [
    "TenantContext",
    "TenantSource",
    "active_scope",
    "current_tenant",
    "in_tenant_scope",
    "scope_ended_here",
    "tenant_scope",
]

TenantSource = Literal["jwt", "sqs", "sfn", "custom"]
_SOURCES = get_args(TenantSource)
_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, init=False)
class TenantContext:
    """Who the current unit of work acts for. Immutable, and hashable by all but its claims.

    ``claims`` holds only selected, non-secret claims (never the token itself).

    >>> ctx = TenantContext("acme", source="jwt", subject="user-1")
    >>> ctx.tenant_id, ctx.source
    ('acme', 'jwt')
    """

    tenant_id: str
    source: TenantSource = "custom"
    subject: str | None = None
    # A read-only view of a dict, which cannot be hashed: a context hashes by who it is, and
    # contexts that are equal still hash alike.
    claims: Mapping[str, Any] = field(default_factory=lambda: _NO_CLAIMS, hash=False)

    # Written out rather than generated (init=False): a frozen dataclass's own __init__ sets each
    # field with object.__setattr__, about a microsecond more for every unit of work, and
    # generating one that would be replaced still costs its compilation at every cold start.
    def __init__(
        self,
        tenant_id: str,
        source: TenantSource = "custom",
        subject: str | None = None,
        claims: Mapping[str, Any] = _NO_CLAIMS,
    ) -> None:
        _init_context(self, tenant_id, source, subject, claims)


def _init_context(
    context: TenantContext,
    tenant_id: str,
    source: TenantSource,
    subject: str | None,
    claims: Mapping[str, Any],
) -> None:
    """TenantContext's checks and fields. A plain function rather than the method's body: mutation
    testing never mutates a decorated class's methods, and these checks are the ones it must reach."""
    validate_tenant_id(tenant_id)
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}")
    if not isinstance(claims, MappingProxyType):
        claims = MappingProxyType(dict(claims))
    context.__dict__.update(tenant_id=tenant_id, source=source, subject=subject, claims=claims)


def _context_of_valid_id(
    tenant_id: str, source: TenantSource, subject: str | None, claims: MappingProxyType[str, Any]
) -> TenantContext:
    """A context for an id that the reader of its proof (the token's claim, the envelope) has just
    validated: the id is validated once, there, and not again for every unit of work."""
    context = object.__new__(TenantContext)
    context.__dict__.update(tenant_id=tenant_id, source=source, subject=subject, claims=claims)
    return context


class _Scope:
    """One unit of work's scope. A plain class: one is made for every unit of work."""

    __slots__ = ("closed", "context", "parent", "request_id", "settings", "trace_header", "vendor")

    def __init__(
        self,
        context: TenantContext,
        settings: Settings | None = None,
        request_id: str | None = None,
        trace_header: str | None = None,
        parent: _Scope | None = None,
        vendor: CredentialVendor | None = None,
    ) -> None:
        self.context = context
        # The adapter's settings when they differ from the environment's (explicit arguments).
        self.settings = settings
        self.request_id = request_id
        # The trace this unit of work continues (an SQS record's AWSTraceHeader), for producers.
        self.trace_header = trace_header
        # The scope that was current when this one was entered: what its exit restores.
        self.parent = parent
        # The vendor that vended the tenant's credentials before the handler ran (an adapter's, so
        # that a failure is answered before any tenant code executes; None in a custom scope,
        # whose credentials the process's vendor vends on first data access). Data access asks it
        # for the tenant's credentials of the moment, replaced a margin before they expire.
        self.vendor = vendor
        # Set when the scope ends. A context copied while it was open (a worker thread, an asyncio
        # task, an abandoned generator) may still hold it: a closed scope is no scope.
        self.closed = False


# Private to this module: every reader goes through active_scope(), which hides ended scopes.
_scope_var: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("tenantscope_scope", default=None)

# The scopes open in the process, in any thread, by id (adding and discarding are atomic).
_open_scopes: set[int] = set()


def active_scope() -> _Scope | None:
    """The scope of the current unit of work, or None outside one and once it has ended.

    The one reader of the scope's ContextVar: producers, the log filter, the guard and
    :func:`current_tenant` all ask here, so none of them can act for a tenant whose scope is over.
    """
    scope = _scope_var.get()
    return None if scope is None or _ended(scope) else scope


def _ended(scope: _Scope | None) -> bool:
    """Whether ``scope``, or a scope it was opened in, has ended: a scope lasts no longer than the
    scopes around it, so one opened in a worker thread or task ends with its unit of work, and one
    left open inside a scope that ended out of order ends with it."""
    while scope is not None:
        if scope.closed:
            return True
        scope = scope.parent
    return False


def acting_for_a_tenant() -> bool:
    """Whether some thread of the process is in a tenant's scope now. A thread that holds none
    meanwhile is most likely that work's helper (a thread pool a handler started without
    :func:`in_tenant_scope`), not a back-office job: producers do not take a tenant's name from it."""
    return bool(_open_scopes)


def scope_ended_here() -> bool:
    """Whether this context holds a scope that has ended: work carried beyond its unit of work (a
    context copied while the scope was open, an asyncio task, an :func:`in_tenant_scope` thread),
    as opposed to code that never had a scope (a back-office job). Producers refuse the first even
    when it names a tenant: it was acting for one tenant, and must not go on for any."""
    return _ended(_scope_var.get())


def current_tenant() -> TenantContext:
    """The tenant of the current unit of work.

    Raises :class:`NoTenantContext` outside a scope.

    >>> with tenant_scope("acme"):
    ...     current_tenant().tenant_id
    'acme'
    """
    return _current_scope_or_raise().context


def _current_scope_or_raise() -> _Scope:
    scope = active_scope()
    if scope is None:
        raise NoTenantContext(Reason.NO_SCOPE)
    return scope


def _scope_of(tenant_id: str) -> None:
    """Refuse unless the current scope is ``tenant_id``'s: what was made for one tenant (a guard,
    a client on its credentials) acts inside that tenant's scope only, never outside any."""
    if _current_scope_or_raise().context.tenant_id != tenant_id:
        raise CrossTenantAccess(Reason.FOREIGN_SCOPE)


@contextmanager
def _enter_scope(
    context: TenantContext, settings: Settings | None = None, vendor: CredentialVendor | None = None
) -> Iterator[None]:
    scope = _open_scope(context, settings, vendor=vendor)
    try:
        yield
    finally:
        _exit_scope(scope)


def _open_scope(
    context: TenantContext,
    settings: Settings | None = None,
    request_id: str | None = None,
    trace_header: str | None = None,
    vendor: CredentialVendor | None = None,
) -> _Scope:
    """Make ``context`` current; :func:`_exit_scope` ends it (what :func:`_enter_scope` does, without
    a generator, for the pipeline's hot path)."""
    current = _scope_var.get()
    # Opened where a scope has ended (in a block left without one), a scope starts afresh: an
    # ended parent would end it at once.
    parent = None if current is None or _ended(current) else current
    scope = _Scope(context, settings, request_id, trace_header, parent, vendor)
    _scope_var.set(scope)
    _open_scopes.add(id(scope))
    return scope


def _exit_scope(scope: _Scope) -> None:
    """End ``scope``; where it is current (the usual exit, in order), the nearest scope around it
    that is still open becomes current again.

    Exits can come out of order: a generator that opened a scope may be abandoned and finalized
    later, by the garbage collector, inside another block. The variable is then left alone: if
    ``scope`` encloses the current scope, that one has ended with it (see :func:`active_scope`),
    and the rest of its block finds no scope, rather than the tenant of a scope it never opened.
    """
    scope.closed = True
    _open_scopes.discard(id(scope))
    if _scope_var.get() is scope:
        parent = scope.parent
        while parent is not None and parent.closed:
            parent = parent.parent
        _scope_var.set(parent)


@contextmanager
def tenant_scope(
    tenant_id: str,
    *,
    source: TenantSource = "custom",
    subject: str | None = None,
) -> Iterator[TenantContext]:
    """Run a block as ``tenant_id``; the previous scope (or none) is restored on exit.

    Use it for trusted internal work (a migration, a scheduled job) where the tenant
    does not come from a token or an envelope. The tenant id is validated first. Inside a unit of
    work, the block uses the settings and the credential vendor its adapter was given, as the
    unit does.

    >>> with tenant_scope("acme") as ctx:
    ...     ctx.source
    'custom'
    """
    context = TenantContext(validate_tenant_id(tenant_id), source=source, subject=subject)
    around = active_scope()
    settings, vendor = (None, None) if around is None else (around.settings, around.vendor)
    with _enter_scope(context, settings, vendor):
        yield context


def in_tenant_scope(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs in the caller's current scope, e.g. in a worker thread.

    Threads do not inherit ContextVars. Wrap the callable in the thread that holds the
    scope, then submit the wrapper: it runs in a copy of that context, so the worker
    sees the same tenant and its own changes do not leak back. Once the scope has ended,
    the wrapper raises :class:`NoTenantContext` before ``fn`` runs, and code already running
    in it finds no scope: it cannot carry a tenant beyond its scope.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with tenant_scope("acme"), ThreadPoolExecutor(1) as pool:
    ...     pool.submit(in_tenant_scope(lambda: current_tenant().tenant_id)).result()
    'acme'
    """
    scope = _current_scope_or_raise()
    captured = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if _ended(scope):
            raise NoTenantContext(Reason.SCOPE_ENDED)
        # A copy per call: one Context object cannot be entered by two threads at once.
        return captured.copy().run(fn, *args, **kwargs)

    return run
