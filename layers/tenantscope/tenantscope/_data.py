"""Tenant data access: keys in the tenant's partition, and DynamoDB on the tenant's credentials.

Every client made here carries its guard (``_guard.py`` for DynamoDB, ``_object_guard.py`` for S3,
whose clients are made in ``_files.py``), is built on a session that cannot fall back to the
function's role (``_aws.py``), and works only inside the scope of the tenant it was made for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._aws import tenant_boto3_session, tenant_resource
from ._cache import ProcessCache
from ._config import Settings, get_settings
from ._context import _current_scope_or_raise, _scope_of
from ._credentials import ScopedCredentials, default_vendor
from ._errors import CrossTenantAccess, Reason
from ._guard import LeadingKeyGuard
from ._object_guard import ObjectGuard
from ._policy import tenant_prefix

if TYPE_CHECKING:  # type stubs only (boto3-stubs, mypy-boto3-dynamodb): nothing at run time
    from boto3.session import Session
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["GUARDED_SERVICES", "tenant_key", "tenant_session", "tenant_table"]


def tenant_key(*parts: str | int) -> str:
    """A key in the current tenant's partition: ``TENANT#<id>#part#...``.

    >>> from tenantscope import tenant_scope
    >>> with tenant_scope("acme"):
    ...     tenant_key("ORDER", 42)
    'TENANT#acme#ORDER#42'
    """
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int) or part == "":
            raise ValueError("key parts must be non-empty strings or integers")
    # The context's tenant id was validated when the context was made.
    return "#".join([tenant_prefix(_current_scope_or_raise().context.tenant_id), *map(str, parts)])


class _TenantData:
    """What a tenant's code uses, built on one set of its credentials, with the guard attached.

    A plain class, not a dataclass: a dataclass compiles its methods at import, in every cold start.
    """

    __slots__ = ("credentials", "guard", "lock", "objects", "resource", "s3", "session", "tables")

    def __init__(self, credentials: ScopedCredentials, guard: LeadingKeyGuard, objects: ObjectGuard) -> None:
        self.credentials = credentials
        self.guard = guard
        self.objects = objects
        # Built on first use, under the lock.
        self.session: Any = None
        self.resource: Any = None
        self.tables: dict[str, Any] = {}
        self.s3: Any = None
        self.lock = threading.Lock()


# Bounded: a pooled container may serve many tenants; the least recently used are dropped.
MAX_CACHED_TENANTS = 256
_tenants: ProcessCache[tuple[str, Settings], _TenantData] = ProcessCache(maxsize=MAX_CACHED_TENANTS)


def _tenant_data() -> _TenantData:
    scope = _current_scope_or_raise()
    settings = scope.settings or get_settings()
    credentials = scope.credentials or default_vendor().credentials_for(scope.context.tenant_id, settings)
    return _tenants.get(
        (credentials.tenant_id, settings),
        lambda: _TenantData(
            credentials,
            LeadingKeyGuard(credentials.tenant_id, settings),
            ObjectGuard(credentials.tenant_id, settings),
        ),
        valid=lambda data: data.credentials is credentials,  # rebuilt with refreshed credentials
    )


def _guarded(events: Any, guard: LeadingKeyGuard) -> None:
    events.register_last("before-parameter-build.dynamodb", guard, unique_id="tenantscope-leading-key-guard")


def _objects_guarded(events: Any, guard: ObjectGuard) -> None:
    events.register_last("before-parameter-build.s3", guard, unique_id="tenantscope-object-guard")
    events.register_last("before-sign.s3", guard.check_signed_method, unique_id="tenantscope-signed-method")


# The services whose every request a guard checks. A tenant session makes clients for these and
# for the services TENANTSCOPE_UNGUARDED_SERVICES names explicitly (IAM is then the only lock).
GUARDED_SERVICES = frozenset({"dynamodb", "s3"})


def _in_its_tenants_scope(tenant_id: str) -> Callable[..., None]:
    """Every request of a tenant session's clients, the unguarded ones too, is made in its
    tenant's scope: kept past it (in a global, a thread), a client refuses rather than acting for
    that tenant in another's unit of work, or in none."""

    def check_scope(**_: Any) -> None:
        _scope_of(tenant_id)

    return check_scope


def _only_allowed_services(allowed: frozenset[str]) -> Callable[..., None]:
    def choose_service_name(service_name: str, **_: Any) -> None:
        if service_name not in allowed:
            raise CrossTenantAccess(Reason.UNGUARDED_SERVICE, service_name)

    return choose_service_name


def tenant_session() -> Session:
    """A boto3 Session on the current tenant's scoped credentials, with the guards.

    It makes DynamoDB and S3 clients only, each guarded, plus clients for the services listed in
    ``TENANTSCOPE_UNGUARDED_SERVICES``; any other client (``dynamodbstreams`` included, whose
    stream of the pooled table carries every tenant's writes) raises :class:`CrossTenantAccess`.
    Its clients, the unguarded ones included, work only inside the scope of the tenant it was made
    for. Its botocore session has no credential providers: it can never act as the function's role.

    A Session is built once per tenant per credential lifetime; prefer :func:`tenant_table`,
    which costs only a client. Raises :class:`NoTenantContext` outside a scope and
    :class:`CredentialsUnavailable` when credentials cannot be vended.
    """
    data = _tenant_data()
    if data.session is None:
        with data.lock:
            if data.session is None:
                settings = data.guard.settings
                session = tenant_boto3_session(settings.region, data.credentials)
                allowed = GUARDED_SERVICES | frozenset(settings.unguarded_services)
                session.events.register("choose-service-name", _only_allowed_services(allowed))
                session.events.register(
                    "before-parameter-build",
                    _in_its_tenants_scope(data.credentials.tenant_id),
                    unique_id="tenantscope-tenant-scope",
                )
                _guarded(session.events, data.guard)
                _objects_guarded(session.events, data.objects)
                data.session = session
    return cast("Session", data.session)


def tenant_table(name: str) -> Table:
    """A DynamoDB ``Table`` resource for ``name`` on the current tenant's credentials.

    Every call on it passes the leading-key guard, and works only inside the scope of
    the tenant it was made for.

    >>> # with tenant_scope("acme"):
    >>> #     tenant_table("app").put_item(Item={"pk": tenant_key("ITEM", "1"), "sk": "A"})
    """
    data = _tenant_data()
    table = data.tables.get(name)
    if table is None:
        with data.lock:
            if data.resource is None:
                resource = tenant_resource("dynamodb", data.guard.settings.region, data.credentials)
                _guarded(resource.meta.client.meta.events, data.guard)
                data.resource = resource
            table = data.tables.get(name) or data.resource.Table(name)
            data.tables[name] = table
    return cast("Table", table)
