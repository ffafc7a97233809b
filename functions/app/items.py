"""Item and order records in the pooled table, always under the current tenant's keys.

Keys: ``pk = TENANT#<id>#ITEM`` / ``TENANT#<id>#ORDER``, ``sk = <item or order id>``.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tenantscope import tenant_key, tenant_table

RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NESTING = 32  # DynamoDB's limit for lists and maps inside an item
MAX_NAME_BYTES = 65535  # DynamoDB's limit for an attribute name (under 64 KB)


# DynamoDB's and S3's answers that a later attempt may not meet (throttling, a 5xx).
PASSING_ERRORS = (
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "InternalServerError",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
)


def error_code(error: ClientError) -> str:
    """The AWS error code of a botocore ClientError."""
    return str(error.response.get("Error", {}).get("Code", ""))


def failure_name(error: Exception) -> str:
    """What failed, for a log line: the AWS error code of a ClientError, else the error's type."""
    return error_code(error) if isinstance(error, ClientError) else type(error).__name__


def is_passing(error: Exception) -> bool:
    """Whether a later attempt may succeed where ``error`` failed (after botocore's own retries):
    throttling, a 5xx, or no connection at all."""
    if isinstance(error, ClientError):
        return error_code(error) in PASSING_ERRORS
    return isinstance(error, HTTPClientError | BotoConnectionError)


def table() -> Any:
    return tenant_table(os.environ["APP_TABLE_NAME"])


def valid_id(value: object) -> str | None:
    return value if isinstance(value, str) and RECORD_ID.fullmatch(value) else None


def unstorable(value: Any, depth: int = 0) -> str | None:
    """Why DynamoDB would refuse ``value`` (an item's attributes, parsed from JSON) as part of an
    item, or None: a 400 for the client rather than a failed call. The caller bounds the size."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return None if is_text(value) else "strings must be Unicode text"
    if isinstance(value, int | Decimal):
        # DynamoDB's numbers: 38 significant digits, a magnitude from 1E-130 to under 1E+126 (boto3's
        # serializer refuses more digits, but lets some magnitudes through that DynamoDB refuses).
        # boto3 loads this module with the first table resource: imported here, it stays off the
        # function's cold start.
        from boto3.dynamodb.types import DYNAMODB_CONTEXT

        try:
            number = DYNAMODB_CONTEXT.create_decimal(value)
        except ArithmeticError:
            number = None
        if number is None or (number != 0 and not -130 <= number.adjusted() <= 125):
            return "numbers must fit DynamoDB's (38 digits, magnitude 1E-130 to under 1E+126)"
        return None
    if isinstance(value, list | dict):
        if depth == MAX_NESTING:
            return f"lists and objects nest at most {MAX_NESTING} deep"
        if isinstance(value, dict) and not all(storable_name(name) for name in value):
            return f"attribute names must be non-empty Unicode text of at most {MAX_NAME_BYTES} UTF-8 bytes"
        values = value.values() if isinstance(value, dict) else value
        return next((why for v in values if (why := unstorable(v, depth + 1))), None)
    return f"unsupported value type {type(value).__name__}"


def storable_name(name: str) -> bool:
    """Whether DynamoDB takes ``name`` as an attribute name: 1 to MAX_NAME_BYTES bytes of UTF-8."""
    return 0 < (utf8_size(name) or 0) <= MAX_NAME_BYTES


def is_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8."""
    return utf8_size(value) is not None


def utf8_size(value: str) -> int | None:
    """The bytes ``value`` takes as UTF-8, or None when it holds a lone surrogate (a "\\ud800"
    escape), which does not encode."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def put(kind: str, record_id: str, attributes: dict[str, Any], **condition: str) -> dict[str, Any]:
    """Put the record (``condition``: PutItem's ``ConditionExpression``, if any); the record."""
    item = {**attributes, "pk": tenant_key(kind), "sk": record_id}
    table().put_item(Item=item, **condition)
    return public(item)


def put_new(kind: str, record_id: str, attributes: dict[str, Any]) -> dict[str, Any] | None:
    """Put the record only if there is none with its id: the record, or None when there was one."""
    try:
        return put(kind, record_id, attributes, ConditionExpression="attribute_not_exists(sk)")
    except ClientError as error:
        if error_code(error) != "ConditionalCheckFailedException":
            raise
        return None


def get(kind: str, record_id: str, *, consistent: bool = False) -> dict[str, Any] | None:
    """The record, or None; ``consistent``: with every write acknowledged before the read (a strongly
    consistent read)."""
    key = {"pk": tenant_key(kind), "sk": record_id}
    item = table().get_item(Key=key, ConsistentRead=consistent).get("Item")
    return public(item) if item else None


def list_page(
    kind: str, *, after: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the tenant's records in id order, from the one after ``after``, and the id to
    ask the next page after, None when none is left. A page holds at most ``limit`` records, and
    fewer when they pass DynamoDB's 1 MB a page (whose next page may then be empty)."""
    params: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": tenant_key(kind)},
        # One more than the page: DynamoDB marks a page that reached its Limit as not the last
        # even when nothing follows, and the one more tells.
        "Limit": limit + 1,
    }
    if after is not None:
        params["ExclusiveStartKey"] = {"pk": tenant_key(kind), "sk": after}
    response = table().query(**params)
    records = response.get("Items", [])
    if len(records) > limit:
        records = records[:limit]
        next_after: str | None = records[-1]["sk"]
    else:
        last = response.get("LastEvaluatedKey")
        next_after = last["sk"] if last else None
    return [public(item) for item in records], next_after


def condition(
    only_if: dict[str, Any] | None, names: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """The ``ConditionExpression`` that each attribute of ``only_if`` has its value ({} for none),
    its placeholders added to ``names`` and ``values``."""
    if not only_if:
        return {}
    names.update({f"#c{n}": name for n, name in enumerate(only_if)})
    values.update({f":c{n}": value for n, value in enumerate(only_if.values())})
    return {"ConditionExpression": " AND ".join(f"#c{n} = :c{n}" for n in range(len(only_if)))}


def delete(kind: str, record_id: str, *, only_if: dict[str, Any] | None = None) -> bool:
    """Delete the record; whether there was one. With ``only_if`` ({attribute: value}), only while
    each of those attributes has that value: False when the record is gone or has another."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    only = condition(only_if, names, values)
    if only:
        only.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    try:
        response = table().delete_item(
            Key={"pk": tenant_key(kind), "sk": record_id}, ReturnValues="ALL_OLD", **only
        )
    except ClientError as error:
        if not only or error_code(error) != "ConditionalCheckFailedException":
            raise
        return False
    return "Attributes" in response


def update(kind: str, record_id: str, *, only_if: dict[str, Any] | None = None, **attributes: Any) -> None:
    """Set ``attributes`` on the record; with ``only_if`` ({attribute: value}), only while each of
    those attributes has that value (else botocore raises ConditionalCheckFailedException)."""
    names = {f"#a{n}": name for n, name in enumerate(attributes)}
    values = {f":v{n}": value for n, value in enumerate(attributes.values())}
    assignments = ", ".join(f"#a{n} = :v{n}" for n in range(len(attributes)))
    only = condition(only_if, names, values)
    table().update_item(
        Key={"pk": tenant_key(kind), "sk": record_id},
        UpdateExpression=f"SET {assignments}",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        **only,
    )


def public(item: dict[str, Any]) -> dict[str, Any]:
    """The record as returned to the tenant: without the internal keys."""
    record = {k: v for k, v in item.items() if k not in ("pk", "sk")}
    record["id"] = item["sk"]
    return record
