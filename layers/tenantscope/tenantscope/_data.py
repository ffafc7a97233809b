"""Tenant data access: boto3 sessions on scoped credentials, and the leading-key guard.

The guard is the second lock. It stands in front of every DynamoDB call made through a
tenant session, after boto3 has serialized the request, so it sees exactly what is sent
whether the code uses the Table resource, ``meta.client`` or a low-level client. It
refuses any key outside the current tenant's prefix and every table-wide operation.
It holds where IAM is not enforced (moto, or a misconfigured role).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._config import Settings, get_settings
from ._context import _current_scope_or_raise, current_tenant
from ._credentials import ScopedCredentials, default_vendor
from ._errors import CrossTenantAccess
from ._policy import tenant_prefix

__all__ = ["LeadingKeyGuard", "tenant_key", "tenant_session", "tenant_table"]


def tenant_key(*parts: str | int) -> str:
    """A key in the current tenant's partition: ``TENANT#<id>#part#...``.

    >>> from tenantscope import tenant_scope
    >>> with tenant_scope("acme"):
    ...     tenant_key("ORDER", 42)
    'TENANT#acme#ORDER#42'
    """
    prefix = tenant_prefix(current_tenant().tenant_id)
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int) or part == "":
            raise ValueError("key parts must be non-empty strings or integers")
    return "#".join([prefix, *map(str, parts)])


_EQUALITY = re.compile(r"(#?[A-Za-z0-9_.]+)\s*=\s*(:[A-Za-z0-9_]+)|(:[A-Za-z0-9_]+)\s*=\s*(#?[A-Za-z0-9_.]+)")


def _table_name(value: object) -> str:
    if not isinstance(value, str):
        raise CrossTenantAccess("missing table name")
    # TableName may be an ARN: arn:aws:dynamodb:region:account:table/name
    return value.split(":table/", 1)[1] if value.startswith("arn:") and ":table/" in value else value


class _KeySchemas:
    """Partition key names per table and index: from configuration, else DescribeTable.

    DescribeTable runs on the function's own role (it reads metadata, not data), so the
    tenant role needs nothing beyond item access. The answer is cached per container.
    """

    def __init__(self, describe: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self._describe = describe
        self._described: dict[str, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def partition_key(self, settings: Settings, table: str, index: str | None) -> str:
        spec = settings.table(table)
        if settings.tables and spec is None:
            raise CrossTenantAccess("table is not in TENANTSCOPE_TABLES")
        if spec is not None:
            configured = spec.index_partition_keys.get(index) if index else spec.partition_key
            if configured:
                return configured
        table_pk, index_pks = self._from_key_schema(table)
        pk = index_pks.get(index) if index else table_pk
        if pk is None:
            raise CrossTenantAccess("unknown index")
        return pk

    def _from_key_schema(self, table: str) -> tuple[str, dict[str, str]]:
        known = self._described.get(table)
        if known is None:
            describe = self._describe or _describe_with_function_role
            description = describe(table)

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


def _describe_with_function_role(table: str) -> Mapping[str, Any]:
    import boto3

    description: Mapping[str, Any] = boto3.client(
        "dynamodb", region_name=get_settings().region
    ).describe_table(TableName=table)["Table"]
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
            "GetItem": self._key_check("Key"),
            "DeleteItem": self._key_check("Key"),
            "UpdateItem": self._key_check("Key"),
            "PutItem": self._key_check("Item"),
            "Query": self._check_query,
            "BatchGetItem": self._check_batch_get,
            "BatchWriteItem": self._check_batch_write,
            "TransactGetItems": self._check_transact,
            "TransactWriteItems": self._check_transact,
        }

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        scope = _current_scope_or_raise()
        if scope.context.tenant_id != self.tenant_id:
            raise CrossTenantAccess("tenant session used outside its own tenant's scope")
        check = self._checks.get(model.name)
        if check is None:
            raise CrossTenantAccess(f"{model.name} is not allowed on a tenant session")
        check(params)

    def _check_value(self, value: object) -> None:
        if isinstance(value, Mapping) and len(value) == 1:
            s = value.get("S")
            if isinstance(s, str) and (s == self._prefix or s.startswith(self._prefix + "#")):
                return
        raise CrossTenantAccess("key outside the current tenant's partition")

    def _check_item(self, table: object, item: object, index: str | None = None) -> None:
        pk = self.schemas.partition_key(self.settings, _table_name(table), index)
        if not isinstance(item, Mapping):
            raise CrossTenantAccess("missing key")
        self._check_value(item.get(pk))

    def _key_check(self, field_name: str) -> Callable[[Mapping[str, Any]], None]:
        def check(params: Mapping[str, Any]) -> None:
            self._check_item(params.get("TableName"), params.get(field_name))

        return check

    def _check_query(self, params: Mapping[str, Any]) -> None:
        index = params.get("IndexName")
        pk = self.schemas.partition_key(self.settings, _table_name(params.get("TableName")), index)
        values: list[object] = []
        expression = params.get("KeyConditionExpression")
        if isinstance(expression, str):
            names = params.get("ExpressionAttributeNames") or {}
            bound = params.get("ExpressionAttributeValues") or {}
            for match in _EQUALITY.finditer(expression):
                name, placeholder = (match[1], match[2]) if match[1] else (match[4], match[3])
                if names.get(name, name) == pk:
                    values.append(bound.get(placeholder))
        legacy = (params.get("KeyConditions") or {}).get(pk)
        if legacy is not None:
            if legacy.get("ComparisonOperator") != "EQ":
                raise CrossTenantAccess("partition key condition must be equality")
            values.extend(legacy.get("AttributeValueList") or [None])
        if not values:
            raise CrossTenantAccess("query without a partition key condition")
        for value in values:
            self._check_value(value)

    def _check_batch_get(self, params: Mapping[str, Any]) -> None:
        for table, request in (params.get("RequestItems") or {}).items():
            for key in request.get("Keys") or [None]:
                self._check_item(table, key)

    def _check_batch_write(self, params: Mapping[str, Any]) -> None:
        for table, requests in (params.get("RequestItems") or {}).items():
            for request in requests:
                if "PutRequest" in request:
                    self._check_item(table, request["PutRequest"].get("Item"))
                elif "DeleteRequest" in request:
                    self._check_item(table, request["DeleteRequest"].get("Key"))
                else:
                    raise CrossTenantAccess("unknown batch write request")

    def _check_transact(self, params: Mapping[str, Any]) -> None:
        for entry in params.get("TransactItems") or [None]:
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise CrossTenantAccess("malformed transaction item")
            ((_, operation),) = entry.items()
            self._check_item(operation.get("TableName"), operation.get("Key", operation.get("Item")))


@dataclass
class _BoundSession:
    credentials: ScopedCredentials
    session: Any
    resource: Any = None
    tables: dict[str, Any] = field(default_factory=dict)
    # boto3 sessions and resources are not safe to build from several threads at once.
    lock: threading.Lock = field(default_factory=threading.Lock)


_sessions: dict[str, _BoundSession] = {}
_sessions_lock = threading.Lock()


def _bound_session() -> _BoundSession:
    scope = _current_scope_or_raise()
    settings = scope.settings or get_settings()
    credentials = scope.credentials or default_vendor().credentials_for(scope.context.tenant_id, settings)
    bound = _sessions.get(credentials.tenant_id)
    if bound is not None and bound.credentials is credentials:
        return bound
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=settings.region,
    )
    session.events.register_last(
        "before-parameter-build.dynamodb",
        LeadingKeyGuard(credentials.tenant_id, settings),
        unique_id="tenantscope-leading-key-guard",
    )
    bound = _BoundSession(credentials, session)
    with _sessions_lock:
        _sessions[credentials.tenant_id] = bound
    return bound


def tenant_session() -> Any:
    """A boto3 Session on the current tenant's scoped credentials, with the leading-key guard.

    Sessions are cached with their credentials, so they are built once per tenant per
    credential lifetime, not per invocation. Raises :class:`NoTenantContext` outside a
    scope and :class:`CredentialsUnavailable` when credentials cannot be vended.
    """
    return _bound_session().session


def tenant_table(name: str) -> Any:
    """A DynamoDB ``Table`` resource for ``name`` on the current tenant's credentials.

    Every call on it passes the leading-key guard, and works only inside the scope of
    the tenant it was made for.

    >>> # with tenant_scope("acme"):
    >>> #     tenant_table("app").put_item(Item={"pk": tenant_key("ITEM", "1"), "sk": "A"})
    """
    bound = _bound_session()
    table = bound.tables.get(name)
    if table is None:
        with bound.lock:
            if bound.resource is None:
                bound.resource = bound.session.resource("dynamodb")
            table = bound.tables.get(name) or bound.resource.Table(name)
            bound.tables[name] = table
    return table
