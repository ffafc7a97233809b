"""Item and order records in the pooled table, always under the current tenant's keys.

Keys: ``pk = TENANT#<id>#ITEM`` / ``TENANT#<id>#ORDER``, ``sk = <item or order id>``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from botocore.exceptions import ClientError

from tenantscope import tenant_key, tenant_table

RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def error_code(error: ClientError) -> str:
    """The AWS error code of a botocore ClientError."""
    return str(error.response.get("Error", {}).get("Code", ""))


def table() -> Any:
    return tenant_table(os.environ["APP_TABLE_NAME"])


def valid_id(value: object) -> str | None:
    return value if isinstance(value, str) and RECORD_ID.fullmatch(value) else None


def put(kind: str, record_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    item = {**attributes, "pk": tenant_key(kind), "sk": record_id}
    table().put_item(Item=item)
    return public(item)


def get(kind: str, record_id: str, *, consistent: bool = False) -> dict[str, Any] | None:
    """The record, or None; ``consistent``: with every write acknowledged before the read (a strongly
    consistent read)."""
    key = {"pk": tenant_key(kind), "sk": record_id}
    item = table().get_item(Key=key, ConsistentRead=consistent).get("Item")
    return public(item) if item else None


def list_all(kind: str, limit: int = 100) -> list[dict[str, Any]]:
    response = table().query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": tenant_key(kind)}, Limit=limit
    )
    return [public(item) for item in response.get("Items", [])]


def delete(kind: str, record_id: str) -> bool:
    response = table().delete_item(Key={"pk": tenant_key(kind), "sk": record_id}, ReturnValues="ALL_OLD")
    return "Attributes" in response


def update(kind: str, record_id: str, *, only_if: dict[str, Any] | None = None, **attributes: Any) -> None:
    """Set ``attributes`` on the record; with ``only_if`` ({attribute: value}), only while each of
    those attributes has that value (else botocore raises ConditionalCheckFailedException)."""
    names = {f"#a{n}": name for n, name in enumerate(attributes)}
    values = {f":v{n}": value for n, value in enumerate(attributes.values())}
    assignments = ", ".join(f"#a{n} = :v{n}" for n in range(len(attributes)))
    condition: dict[str, str] = {}
    if only_if:
        names.update({f"#c{n}": name for n, name in enumerate(only_if)})
        values.update({f":c{n}": value for n, value in enumerate(only_if.values())})
        condition["ConditionExpression"] = " AND ".join(f"#c{n} = :c{n}" for n in range(len(only_if)))
    table().update_item(
        Key={"pk": tenant_key(kind), "sk": record_id},
        UpdateExpression=f"SET {assignments}",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        **condition,
    )


def public(item: dict[str, Any]) -> dict[str, Any]:
    """The record as returned to the tenant: without the internal keys."""
    record = {k: v for k, v in item.items() if k not in ("pk", "sk")}
    record["id"] = item["sk"]
    return record
