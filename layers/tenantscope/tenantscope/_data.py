"""Tenant data access: DynamoDB on scoped credentials, and the leading-key guard.

The guard is the second lock. It stands in front of every DynamoDB call made through a
tenant session or table, after boto3 has serialized the request, so it sees exactly what is
sent whether the code uses the Table resource, ``meta.client`` or a low-level client. It
refuses any key outside the current tenant's prefix, every write that would put an item under
another tenant's index key, and every table-wide operation. It holds where IAM is not enforced
(moto, or a misconfigured role), and where IAM cannot see: ``dynamodb:LeadingKeys`` covers a
write's table key only, not the index keys inside the item.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._aws import aws_client, tenant_boto3_session, tenant_resource
from ._config import Settings, get_settings
from ._context import _current_scope_or_raise
from ._credentials import ScopedCredentials, default_vendor
from ._errors import CrossTenantAccess, Reason
from ._expressions import key_conditions, read_expressions, update_paths
from ._policy import tenant_prefix

__all__ = ["GUARDED_SERVICES", "LeadingKeyGuard", "tenant_key", "tenant_session", "tenant_table"]


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


class _KeySchemas:
    """Partition key names of each table and its indexes: from configuration, else DescribeTable.

    A table configured with its partition key (``TENANTSCOPE_TABLES=name=pk``) is taken as
    having exactly the indexes configured with it (``name/index=pk``). Otherwise DescribeTable
    runs once per container on the function's own role: it reads metadata, not data, so the
    tenant role needs nothing beyond item access.
    """

    def __init__(self, describe: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self._describe = describe
        self._described: dict[str, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def keys(self, settings: Settings, table: str) -> tuple[str, dict[str, str]]:
        """(table partition key, {index: partition key}) of ``table``."""
        spec = settings.table(table)
        if settings.tables and spec is None:
            raise CrossTenantAccess(Reason.UNCONFIGURED_TABLE)
        if spec is not None and spec.partition_key:
            return spec.partition_key, dict(spec.index_partition_keys)
        known = self._described.get(table)
        if known is None:
            description = (self._describe or _describe_with_function_role)(table)

            def hash_key(schema: Iterable[Mapping[str, str]]) -> str:
                return next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")

            indexes = [
                *description.get("GlobalSecondaryIndexes", []),
                *description.get("LocalSecondaryIndexes", []),
            ]
            known = (
                hash_key(description["KeySchema"]),
                {i["IndexName"]: hash_key(i["KeySchema"]) for i in indexes},
            )
            with self._lock:
                self._described[table] = known
        return known

    def partition_key(self, settings: Settings, table: str, index: str | None) -> str:
        table_key, index_keys = self.keys(settings, table)
        if index is None:
            return table_key
        key = index_keys.get(index)
        if key is None:
            raise CrossTenantAccess(Reason.UNKNOWN_INDEX)
        return key


def _describe_with_function_role(table: str) -> Mapping[str, Any]:
    description: Mapping[str, Any] = aws_client("dynamodb", get_settings().region).describe_table(
        TableName=table
    )["Table"]
    return description


key_schemas = _KeySchemas()


@dataclass
class LeadingKeyGuard:
    """Checks a serialized DynamoDB request against one tenant's key prefix.

    Registered as a botocore ``before-parameter-build.dynamodb`` handler (last, after
    boto3's own serialization), so it sees wire-format attribute values.
    """

    tenant_id: str
    settings: Settings
    schemas: _KeySchemas = field(default_factory=lambda: key_schemas)

    def __post_init__(self) -> None:
        self._prefix = tenant_prefix(self.tenant_id)
        self._checks: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "GetItem": self._check_key_request,
            "DeleteItem": self._check_key_request,
            "UpdateItem": self._check_update,
            "PutItem": self._check_put,
            "Query": self._check_query,
            "BatchGetItem": self._check_batch_get,
            "BatchWriteItem": self._check_batch_write,
            "TransactGetItems": self._check_transact,
            "TransactWriteItems": self._check_transact,
        }

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        scope = _current_scope_or_raise()
        if scope.context.tenant_id != self.tenant_id:
            raise CrossTenantAccess(Reason.FOREIGN_SCOPE)
        check = self._checks.get(model.name)
        if check is None:
            raise CrossTenantAccess(Reason.OPERATION_NOT_ALLOWED, model.name)
        check(params)

    def _table(self, value: object) -> str:
        if not isinstance(value, str):
            raise CrossTenantAccess(Reason.MISSING_TABLE)
        if not value.startswith("arn:"):
            return value
        # arn:<partition>:dynamodb:<region>:<account>:table/<name>: only this account and region.
        parts = value.split(":", 5)
        role = (self.settings.role_arn or "").split(":")
        account = role[4] if len(role) > 4 else None
        if (
            len(parts) != 6
            or not parts[5].startswith("table/")
            or parts[3] != self.settings.region
            or (parts[4] != account)
        ):
            raise CrossTenantAccess(Reason.FOREIGN_TABLE_ARN)
        return parts[5].removeprefix("table/")

    def _check_value(self, value: object) -> None:
        if isinstance(value, Mapping) and len(value) == 1:
            s = value.get("S")
            if isinstance(s, str) and (s == self._prefix or s.startswith(self._prefix + "#")):
                return
        raise CrossTenantAccess(Reason.FOREIGN_KEY)

    def _check_key(self, table: str, key: object) -> None:
        table_key, _ = self.schemas.keys(self.settings, table)
        if not isinstance(key, Mapping):
            raise CrossTenantAccess(Reason.MISSING_KEY)
        self._check_value(key.get(table_key))

    def _check_written_item(self, table: object, item: object) -> None:
        """A new item: its table key and every index key it carries stay in the partition."""
        name = self._table(table)
        self._check_key(name, item)
        assert isinstance(item, Mapping)
        for index_key in set(self.schemas.keys(self.settings, name)[1].values()):
            if index_key in item:
                self._check_value(item[index_key])

    def _check_key_request(self, params: Mapping[str, Any]) -> None:
        read_expressions(params)
        self._check_key(self._table(params.get("TableName")), params.get("Key"))

    def _check_put(self, params: Mapping[str, Any]) -> None:
        read_expressions(params)
        self._check_written_item(params.get("TableName"), params.get("Item"))

    def _check_update(self, params: Mapping[str, Any]) -> None:
        read = read_expressions(params)
        table = self._table(params.get("TableName"))
        self._check_key(table, params.get("Key"))
        index_keys = set(self.schemas.keys(self.settings, table)[1].values())
        if not index_keys:
            return
        legacy = params.get("AttributeUpdates") or {}
        for name in index_keys & set(legacy):
            if legacy[name].get("Action", "PUT") == "PUT":
                self._check_value(legacy[name].get("Value"))
        tokens = read.get("UpdateExpression")
        if tokens is None:
            return
        values = params.get("ExpressionAttributeValues") or {}
        uses = update_paths(tokens, params.get("ExpressionAttributeNames") or {})
        for index_key in index_keys:
            touching = [use for use in uses if use.attribute == index_key]
            if not touching:
                continue
            # An index key may only be set, once, to a plain value, and that value is checked.
            if len(touching) > 1 or touching[0].assigned is None:
                raise CrossTenantAccess(Reason.UNCHECKABLE_INDEX_UPDATE)
            self._check_value(values.get(touching[0].assigned))

    def _check_query(self, params: Mapping[str, Any]) -> None:
        read = read_expressions(params)
        table = self._table(params.get("TableName"))
        pk = self.schemas.partition_key(self.settings, table, params.get("IndexName"))
        tokens = read.get("KeyConditionExpression")
        if tokens is not None:
            conditions = key_conditions(tokens, params.get("ExpressionAttributeNames") or {})
            on_pk = [c for c in conditions if c.attribute == pk]
            # The partition key's equality, then at most one condition on the sort key.
            if len(on_pk) != 1 or on_pk[0].operator != "=" or len(conditions) > 2:
                raise CrossTenantAccess(Reason.KEY_CONDITION)
            self._check_value((params.get("ExpressionAttributeValues") or {}).get(on_pk[0].values[0]))
        else:
            legacy = (params.get("KeyConditions") or {}).get(pk)
            if legacy is None:
                raise CrossTenantAccess(Reason.KEY_CONDITION, "no partition key condition")
            listed = legacy.get("AttributeValueList") or []
            if legacy.get("ComparisonOperator") != "EQ" or len(listed) != 1:
                raise CrossTenantAccess(Reason.KEY_CONDITION, "not an equality")
            self._check_value(listed[0])
        start = params.get("ExclusiveStartKey")
        if start is not None:  # where a page starts: in the tenant's partition too
            if not isinstance(start, Mapping):
                raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "start key")
            for attribute in {pk, self.schemas.keys(self.settings, table)[0]}:
                self._check_value(start.get(attribute))

    def _check_batch_get(self, params: Mapping[str, Any]) -> None:
        for table, request in (params.get("RequestItems") or {}).items():
            read_expressions(request)
            for key in request.get("Keys") or [None]:
                self._check_key(self._table(table), key)

    def _check_batch_write(self, params: Mapping[str, Any]) -> None:
        for table, requests in (params.get("RequestItems") or {}).items():
            for request in requests:
                if "PutRequest" in request:
                    self._check_written_item(table, request["PutRequest"].get("Item"))
                elif "DeleteRequest" in request:
                    self._check_key(self._table(table), request["DeleteRequest"].get("Key"))
                else:
                    raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "batch write request")

    def _check_transact(self, params: Mapping[str, Any]) -> None:
        for entry in params.get("TransactItems") or [None]:
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "transaction item")
            ((kind, operation),) = entry.items()
            if kind == "Put":
                self._check_put(operation)
            elif kind == "Update":
                self._check_update(operation)
            else:
                self._check_key_request(operation)


@dataclass
class _TenantData:
    """What a tenant's code uses, built on one set of its credentials, with the guard attached."""

    credentials: ScopedCredentials
    guard: LeadingKeyGuard
    session: Any = None
    resource: Any = None
    tables: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# Bounded: a pooled container may serve many tenants; the least recently used are rebuilt.
MAX_CACHED_TENANTS = 256
_cache: OrderedDict[tuple[str, Settings], _TenantData] = OrderedDict()
_cache_lock = threading.Lock()


def _tenant_data() -> _TenantData:
    scope = _current_scope_or_raise()
    settings = scope.settings or get_settings()
    credentials = scope.credentials or default_vendor().credentials_for(scope.context.tenant_id, settings)
    key = (credentials.tenant_id, settings)
    data = _cache.get(key)
    if data is not None and data.credentials is credentials:
        return data
    data = _TenantData(credentials, LeadingKeyGuard(credentials.tenant_id, settings))
    with _cache_lock:
        _cache[key] = data
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED_TENANTS:
            _cache.popitem(last=False)
    return data


def _guarded(events: Any, guard: LeadingKeyGuard) -> None:
    events.register_last("before-parameter-build.dynamodb", guard, unique_id="tenantscope-leading-key-guard")


# The services whose every request the guard checks. A tenant session makes clients for these
# and for the services TENANTSCOPE_UNGUARDED_SERVICES names explicitly (IAM is then the only lock).
GUARDED_SERVICES = frozenset({"dynamodb"})


def _only_allowed_services(allowed: frozenset[str]) -> Callable[..., None]:
    def choose_service_name(service_name: str, **_: Any) -> None:
        if service_name not in allowed:
            raise CrossTenantAccess(Reason.UNGUARDED_SERVICE, service_name)

    return choose_service_name


def tenant_session() -> Any:
    """A boto3 Session on the current tenant's scoped credentials, with the leading-key guard.

    It makes DynamoDB clients only, each guarded, plus clients for the services listed in
    ``TENANTSCOPE_UNGUARDED_SERVICES``; any other client (``dynamodbstreams`` included, whose
    stream of the pooled table carries every tenant's writes) raises :class:`CrossTenantAccess`.
    Its botocore session has no credential providers: it can never act as the function's role.

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
                _guarded(session.events, data.guard)
                data.session = session
    return data.session


def tenant_table(name: str) -> Any:
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
    return table
