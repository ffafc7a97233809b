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
from ._cache import ProcessCache, ProcessValue
from ._config import Settings, get_settings, kept_tenants_bound
from ._context import _current_scope_or_raise, _scope_of
from ._credentials import CredentialVendor, ScopedCredentials, default_vendor
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
    """What a tenant's code uses, built once per tenant, settings and vendor, with the guard
    attached: one session, whose clients sign each request with the credentials the vendor holds
    for the tenant at that moment.

    A plain class, not a dataclass: a dataclass compiles its methods at import, in every cold start.
    """

    __slots__ = ("credentials", "guard", "lock", "objects", "resource", "s3", "session", "tables")

    def __init__(self, tenant_id: str, settings: Settings, vendor: CredentialVendor) -> None:
        self.credentials = _signing_credentials(tenant_id, settings, vendor)
        self.guard = LeadingKeyGuard(tenant_id, settings)
        self.objects = ObjectGuard(tenant_id, settings)
        self.session = _guarded_session(settings, self.credentials, self.guard, self.objects)
        # Built on first use, under the lock.
        self.resource: Any = None
        self.tables: dict[str, Any] = {}
        self.s3: Any = None
        self.lock = threading.Lock()


def _signing_credentials(
    tenant_id: str, settings: Settings, vendor: CredentialVendor
) -> Callable[[], ScopedCredentials]:
    """The tenant's credentials of the moment, asked for by every request its clients sign, the
    unguarded services' too, and only inside its scope: a client kept past it (in a global, a
    thread), or the credentials object botocore hands to whoever asks
    (``tenant_session().get_credentials()``), refuses rather than act for that tenant in
    another's unit of work, or in none."""

    def signing() -> ScopedCredentials:
        _scope_of(tenant_id)
        return vendor.signing_credentials(tenant_id, settings)

    return signing


# Bounded: a pooled container may serve many tenants; the least recently used are dropped. The
# bound follows the function's memory, read when a tenant is first kept (kept_tenants_bound).
_tenants: ProcessValue[ProcessCache[tuple[str, Settings, CredentialVendor], _TenantData]] = ProcessValue()


def _kept_tenants() -> ProcessCache[tuple[str, Settings, CredentialVendor], _TenantData]:
    return _tenants.get(_bounded_tenants)


def _bounded_tenants() -> ProcessCache[tuple[str, Settings, CredentialVendor], _TenantData]:
    return ProcessCache(maxsize=kept_tenants_bound())


def _tenant_data() -> _TenantData:
    scope = _current_scope_or_raise()
    settings = scope.settings or get_settings()
    tenant_id = scope.context.tenant_id
    # The vendor that vended the unit's credentials (or, in a custom scope, the process's), asked
    # now, as a request would be: a tenant whose credentials cannot be had is refused here, before
    # any client is made, and a unit that began with them goes on with them.
    vendor = scope.vendor or default_vendor()
    vendor.signing_credentials(tenant_id, settings)
    return _kept_tenants().get(
        (tenant_id, settings, vendor), lambda: _TenantData(tenant_id, settings, vendor)
    )


# The services whose every request a guard checks. A tenant session makes clients for these and
# for the services TENANTSCOPE_UNGUARDED_SERVICES names explicitly (IAM is then the only lock).
GUARDED_SERVICES = frozenset({"dynamodb", "s3"})


def _only_allowed_services(allowed: frozenset[str]) -> Callable[..., None]:
    def choose_service_name(service_name: str, **_: Any) -> None:
        if service_name not in allowed:
            raise CrossTenantAccess(Reason.UNGUARDED_SERVICE, service_name)

    return choose_service_name


def _guarded_session(
    settings: Settings,
    credentials: Callable[[], ScopedCredentials],
    guard: LeadingKeyGuard,
    objects: ObjectGuard,
) -> Session:
    session = tenant_boto3_session(settings.region, credentials)
    # Registered on the session, once, and so copied into every client made from it.
    events = session.events
    allowed = GUARDED_SERVICES | frozenset(settings.unguarded_services)
    events.register("choose-service-name", _only_allowed_services(allowed))
    events.register_last("before-parameter-build.dynamodb", guard)
    events.register_last("before-parameter-build.s3", objects)
    events.register_last("before-sign.s3", objects.check_signed_method)
    return cast("Session", session)


def tenant_session() -> Session:
    """A boto3 Session on the current tenant's scoped credentials, with the guards.

    It makes DynamoDB and S3 clients only, each guarded, plus clients for the services listed in
    ``TENANTSCOPE_UNGUARDED_SERVICES``; any other client (``dynamodbstreams`` included, whose
    stream of the pooled table carries every tenant's writes) raises :class:`CrossTenantAccess`.
    Its clients, the unguarded ones included, work only inside the scope of the tenant it was made
    for. Its botocore session has no credential provider but the tenant's: it can never act as the
    function's role. Its clients sign each request with the tenant's credentials of that moment,
    so one kept for longer than the credentials live goes on working.

    One Session is kept per tenant. The clients made from it are the caller's to keep (a client
    costs milliseconds to make) and have botocore's default timeouts unless given a ``Config``;
    :func:`tenant_table` keeps its resource itself, with the short timeouts tenantscope uses. Raises
    :class:`NoTenantContext` outside a scope and :class:`CredentialsUnavailable` when credentials
    cannot be vended.
    """
    return _tenant_data().session


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
                data.resource = tenant_resource(data.session, "dynamodb")
            table = data.tables.get(name) or data.resource.Table(name)
            data.tables[name] = table
    return cast("Table", table)
