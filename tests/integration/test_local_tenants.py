"""tenantscope.testing.local_tenants: the tables and buckets it creates, and where it creates them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tenantscope import api_handler, tenant_bucket, tenant_key, tenant_table
from tenantscope.testing import local_tenants


@api_handler
def notes_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    notes = tenant_table("notes")
    if event["requestContext"]["http"]["method"] == "PUT":
        notes.put_item(Item={"pk": tenant_key("NOTE"), "sk": "1", "owner_pk": tenant_key("OWNER#u-1")})
        tenant_bucket("uploads").put("note.txt", b"hello")
        return {"statusCode": 204}
    by_owner = notes.query(
        IndexName="by_owner",
        KeyConditionExpression="owner_pk = :o",
        ExpressionAttributeValues={":o": tenant_key("OWNER#u-1")},
    )
    body = {"notes": len(by_owner["Items"]), "file": tenant_bucket("uploads").get("note.txt").decode()}
    return {"statusCode": 200, "body": json.dumps(body)}


def test_the_tables_are_created_with_their_keys_and_indexes() -> None:
    with local_tenants(tables="notes=pk,notes/by_owner=owner_pk"):
        table = boto3.client("dynamodb").describe_table(TableName="notes")["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]) == [
        ("owner_pk", "S"),
        ("pk", "S"),
        ("sk", "S"),
    ]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_owner"
    assert index["KeySchema"] == [{"AttributeName": "owner_pk", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_a_table_without_a_sort_key_or_an_index_has_its_partition_key_only() -> None:
    with local_tenants(tables="notes=pk", sort_key=None):
        table = boto3.client("dynamodb").describe_table(TableName="notes")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table.get("GlobalSecondaryIndexes", []) == []


def test_a_table_without_its_partition_key_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^local_tenants needs each table's partition key: notes=<key>$"):
        local_tenants(tables="notes").__enter__()


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_tables_and_buckets_are_where_the_functions_region_says(region: str) -> None:
    # GIVEN a function whose environment names its region (AWS_REGION, as Lambda sets it)
    with local_tenants(
        tables="notes=pk,notes/by_owner=owner_pk", buckets="uploads", environment={"AWS_REGION": region}
    ) as local:
        # WHEN its handler writes and reads a tenant's item, through an index, and a file
        assert notes_handler(local.api_event("acme", method="PUT"), local.context())["statusCode"] == 204
        response = notes_handler(local.api_event("acme"), local.context())
    # THEN it finds them: the table, its index and the bucket are in that region
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"notes": 1, "file": "hello"})
