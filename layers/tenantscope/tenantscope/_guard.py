"""The leading-key guard: the second lock, in front of every DynamoDB call a tenant client makes.

It stands after boto3 has serialized the request, so it sees exactly what is sent whether the
code uses the Table resource, ``meta.client`` or a low-level client. It refuses any key outside
the current tenant's prefix, every write that would put an item under another tenant's index key,
every table-wide operation, and every expression it cannot read exactly (``_expressions.py``). It
holds where IAM is not enforced (moto, or a misconfigured role), and where IAM cannot see:
``dynamodb:LeadingKeys`` covers a write's table key only, not the index keys inside the item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._aws import aws_client
from ._cache import ProcessCache
from ._config import ENV, Settings
from ._context import _scope_of
from ._errors import CrossTenantAccess, Reason
from ._expressions import key_conditions, read_expressions, update_paths
from ._policy import tenant_prefix

__all__ = ["LeadingKeyGuard", "key_schemas"]


# A described key schema is read again after this long, so that an index added to a table is
# checked in writes within minutes, by containers that described the table before it existed.
DESCRIBED_SCHEMA_SECONDS = 300.0
# A query on an index the last description did not list describes the table again, at most this
# often however many unknown index names come.
UNKNOWN_INDEX_DESCRIBE_SECONDS = 30.0

_KeyNames = tuple[str, dict[str, str]]  # (table partition key, {index: partition key})


class _KeySchemas:
    """Partition key names of each table and its indexes: from configuration, else DescribeTable.

    A table configured with its partition key (``TENANTSCOPE_TABLES=name=pk``) is taken as
    having exactly the indexes configured with it (``name/index=pk``). Otherwise DescribeTable
    runs on the function's own role, in the settings' region, and again after
    :data:`DESCRIBED_SCHEMA_SECONDS`: it reads metadata, not data, so the tenant role needs
    nothing beyond item access.
    """

    def __init__(
        self,
        describe: Callable[[str], Mapping[str, Any]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self._clock = clock
        self._described: ProcessCache[tuple[str | None, str], tuple[float, _KeyNames]] = ProcessCache()

    def keys(self, settings: Settings, table: str) -> _KeyNames:
        """(table partition key, {index: partition key}) of ``table``."""
        spec = settings.table(table)
        if settings.tables and spec is None:
            raise CrossTenantAccess(Reason.UNCONFIGURED_TABLE)
        if spec is not None and spec.partition_key:
            return spec.partition_key, dict(spec.index_partition_keys)
        return self._described_keys(settings.region, table, DESCRIBED_SCHEMA_SECONDS)

    def _described_keys(self, region: str | None, table: str, max_age: float) -> _KeyNames:
        now = self._clock()

        def describe() -> tuple[float, _KeyNames]:
            if self._describe is not None:
                return now, _partition_keys(self._describe(table))
            return now, _partition_keys(_describe_with_function_role(table, region))

        return self._described.get((region, table), describe, valid=lambda kept: now - kept[0] < max_age)[1]

    def partition_key(self, settings: Settings, table: str, index: str | None) -> str:
        table_key, index_keys = self.keys(settings, table)
        if index is None:
            return table_key
        key = index_keys.get(index)
        if key is None and not _configured_with_key(settings, table):
            # Perhaps an index added since the table was described.
            key = self._described_keys(settings.region, table, UNKNOWN_INDEX_DESCRIBE_SECONDS)[1].get(index)
        if key is None:
            raise CrossTenantAccess(Reason.UNKNOWN_INDEX)
        return key


def _configured_with_key(settings: Settings, table: str) -> bool:
    """Whether ``table``'s keys come from TENANTSCOPE_TABLES (and so are never described)."""
    spec = settings.table(table)
    return spec is not None and bool(spec.partition_key)


def _partition_keys(description: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    def hash_key(schema: Iterable[Mapping[str, str]]) -> str:
        return next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")

    indexes = [*description.get("GlobalSecondaryIndexes", []), *description.get("LocalSecondaryIndexes", [])]
    return hash_key(description["KeySchema"]), {i["IndexName"]: hash_key(i["KeySchema"]) for i in indexes}


def _describe_with_function_role(table: str, region: str | None) -> Mapping[str, Any]:
    description: Mapping[str, Any] = aws_client("dynamodb", region).describe_table(TableName=table)["Table"]
    return description


key_schemas = _KeySchemas()


class LeadingKeyGuard:
    """Checks a serialized DynamoDB request against one tenant's key prefix.

    Registered as a botocore ``before-parameter-build.dynamodb`` handler (last, after
    boto3's own serialization), so it sees wire-format attribute values.
    """

    # A plain class, not a dataclass: mutmut leaves decorated classes unmutated, and every check
    # of the guard is here.
    def __init__(self, tenant_id: str, settings: Settings, schemas: _KeySchemas | None = None) -> None:
        self.tenant_id = tenant_id
        self.settings = settings
        self.schemas = key_schemas if schemas is None else schemas
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
        _scope_of(self.tenant_id)
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

    def _check_key(self, table: str, key: object) -> Mapping[str, Any]:
        """``key``, once its table partition key is found in the tenant's partition."""
        table_key, _ = self.schemas.keys(self.settings, table)
        if not isinstance(key, Mapping):
            raise CrossTenantAccess(Reason.MISSING_KEY)
        if table_key not in key:
            raise self._no_partition_key(table, None, table_key)
        self._check_value(key[table_key])
        return key

    def _no_partition_key(self, table: str, index: str | None, attribute: str) -> CrossTenantAccess:
        """A request without the attribute the guard takes for the partition key. Most often
        TENANTSCOPE_TABLES names another attribute than the table's (``PK`` for ``pk``): the
        detail says which attribute was expected and where that came from, so that the log tells
        a configuration typo from a request outside the tenant's partition."""
        spec = self.settings.table(table)
        configured = spec is not None and (spec.index_key(index) if index else spec.partition_key)
        source = ENV.TABLES if configured else "its DescribeTable"
        where = f"index {index!r} of table {table!r}" if index else f"table {table!r}"
        return CrossTenantAccess(
            Reason.NO_PARTITION_KEY, f"expected {attribute!r}, the partition key of {where} in {source}"
        )

    def _check_written_item(self, table: object, item: object) -> None:
        """A new item: its table key and every index key it carries stay in the partition."""
        name = self._table(table)
        self._check_index_keys(name, self._check_key(name, item))

    def _check_index_keys(self, table: str, written: Mapping[str, Any]) -> set[str]:
        """The index partition keys of ``table``, once each that ``written`` carries is found in
        the tenant's partition."""
        index_keys = set(self.schemas.keys(self.settings, table)[1].values())
        for name in index_keys & set(written):
            self._check_value(written[name])
        return index_keys

    def _check_key_request(self, params: Mapping[str, Any]) -> None:
        read_expressions(params)
        self._check_key(self._table(params.get("TableName")), params.get("Key"))

    def _check_put(self, params: Mapping[str, Any]) -> None:
        read_expressions(params)
        self._check_written_item(params.get("TableName"), params.get("Item"))

    def _check_update(self, params: Mapping[str, Any]) -> None:
        read = read_expressions(params)
        table = self._table(params.get("TableName"))
        # An update creates the item it does not find, with its Key's attributes: an index keyed
        # on the table's sort key (an inverted index) would file the new item under that value.
        index_keys = self._check_index_keys(table, self._check_key(table, params.get("Key")))
        if not index_keys:
            return
        legacy = params.get("AttributeUpdates") or {}
        for name in index_keys & set(legacy):
            update = legacy[name]
            if not isinstance(update, Mapping):
                raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "attribute update")
            action = update.get("Action")
            # PUT is DynamoDB's default: an Action left out or sent as null (a client with
            # parameter validation off) puts the value. DELETE takes the item out of the index.
            if action is None or action == "PUT":
                self._check_value(update.get("Value"))
            elif action != "DELETE":
                raise CrossTenantAccess(Reason.UNCHECKABLE_INDEX_UPDATE)
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
            if not on_pk:
                raise self._no_partition_key(table, params.get("IndexName"), pk)
            # The partition key's equality, then at most one condition on the sort key.
            if len(on_pk) != 1 or on_pk[0].operator != "=" or len(conditions) > 2:
                raise CrossTenantAccess(Reason.KEY_CONDITION)
            self._check_value((params.get("ExpressionAttributeValues") or {}).get(on_pk[0].values[0]))
        else:
            legacy = (params.get("KeyConditions") or {}).get(pk)
            if legacy is None:
                raise self._no_partition_key(table, params.get("IndexName"), pk)
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
                # One request per entry: a Put beside a Delete would leave the Delete unchecked.
                if not isinstance(request, Mapping) or len(request) != 1:
                    raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "batch write request")
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
