"""The leading-key guard, on wire-format requests as botocore builds them."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tenantscope import CrossTenantAccess, NoTenantContext, Reason, _guard, tenant_key, tenant_scope
from tenantscope._config import Settings, TableSpec, get_settings
from tenantscope._expressions import key_conditions, read_expressions
from tenantscope._guard import LeadingKeyGuard, _KeySchemas
from tenantscope.testing import reset_process_state

SETTINGS = Settings.load(
    environ={},
    region="us-east-1",
    role_arn="arn:aws:iam::123456789012:role/tenantscope-tenant",
    tables=(TableSpec("app", "pk", {"gsi1": "gsi1pk"}),),
)


def S(value: str) -> dict[str, str]:
    return {"S": value}


def describe_app(table: str) -> dict[str, Any]:
    """The key schema DescribeTable reports, without the configured-only index."""
    return {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}


def call(operation: str, params: dict[str, Any], tenant: str = "acme", scope: str | None = "acme") -> None:
    guard = LeadingKeyGuard(tenant, SETTINGS, _KeySchemas(describe_app))
    model = SimpleNamespace(name=operation)
    if scope is None:
        guard(params=params, model=model)
        return
    with tenant_scope(scope):
        guard(params=params, model=model)


def refused(operation: str, params: dict[str, Any], scope: str = "acme") -> Reason:
    """Why the guard of acme's session refuses ``params`` under ``scope``'s scope (it must)."""
    with pytest.raises(CrossTenantAccess) as refusal:
        call(operation, params, scope=scope)
    return refusal.value.reason


OWN = ["TENANT#acme", "TENANT#acme#ITEM#1", "TENANT#acme#"]
FOREIGN = [
    "TENANT#acme-corp",
    "TENANT#acme1",
    "TENANT#acme-corp#ITEM#1",
    "TENANT#acmeX#1",
    "TENANT#",
    "TENANT#*",
    "tenant#acme",
    "TENANT#ACME",
    "ITEM#1",
    "",
]


def item_requests(pk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    key = {"pk": pk, "sk": S("A")}
    return [
        ("GetItem", {"TableName": "app", "Key": key}),
        ("DeleteItem", {"TableName": "app", "Key": key}),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": key,
                "UpdateExpression": "SET a = :a",
                "ExpressionAttributeValues": {":a": S("x")},
            },
        ),
        ("PutItem", {"TableName": "app", "Item": key}),
        ("BatchGetItem", {"RequestItems": {"app": {"Keys": [key]}}}),
        ("BatchWriteItem", {"RequestItems": {"app": [{"PutRequest": {"Item": key}}]}}),
        ("BatchWriteItem", {"RequestItems": {"app": [{"DeleteRequest": {"Key": key}}]}}),
        ("TransactGetItems", {"TransactItems": [{"Get": {"TableName": "app", "Key": key}}]}),
        ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "app", "Item": key}}]}),
        ("TransactWriteItems", {"TransactItems": [{"ConditionCheck": {"TableName": "app", "Key": key}}]}),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditionExpression": "#n0 = :v0",
                "ExpressionAttributeNames": {"#n0": "pk"},
                "ExpressionAttributeValues": {":v0": pk},
            },
        ),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                "ExpressionAttributeValues": {":p": pk, ":s": S("ITEM#")},
            },
        ),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditionExpression": ":p = pk",
                "ExpressionAttributeValues": {":p": pk},
            },
        ),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditions": {"pk": {"AttributeValueList": [pk], "ComparisonOperator": "EQ"}},
            },
        ),
        (
            "Query",
            {
                "TableName": "app",
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :g",
                "ExpressionAttributeValues": {":g": pk},
            },
        ),
        (
            "Query",
            {
                "TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/app",
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": pk},
            },
        ),
    ]


@pytest.mark.parametrize("value", OWN)
def test_own_keys_pass_every_item_operation(value: str) -> None:
    for operation, params in item_requests(S(value)):
        call(operation, params)


@pytest.mark.parametrize("value", FOREIGN)
def test_foreign_keys_are_refused_by_every_item_operation(value: str) -> None:
    for operation, params in item_requests(S(value)):
        assert refused(operation, params) is Reason.FOREIGN_KEY, operation


@pytest.mark.parametrize("pk", [{"N": "1"}, {"B": b"TENANT#acme"}, {"S": "TENANT#acme", "N": "1"}, None, "x"])
def test_non_string_or_missing_partition_keys_are_refused(pk: Any) -> None:
    for operation, params in item_requests(pk):
        assert refused(operation, params) is Reason.FOREIGN_KEY, operation


def test_a_batch_mixing_tenants_is_refused() -> None:
    batch = {
        "RequestItems": {
            "app": [
                {"PutRequest": {"Item": {"pk": S("TENANT#acme#1")}}},
                {"PutRequest": {"Item": {"pk": S("TENANT#globex#1")}}},
            ]
        }
    }
    assert refused("BatchWriteItem", batch) is Reason.FOREIGN_KEY


@pytest.mark.parametrize(
    ("operation", "params", "reason"),
    [
        ("Scan", {"TableName": "app"}, Reason.OPERATION_NOT_ALLOWED),
        ("ExecuteStatement", {"Statement": "SELECT * FROM app"}, Reason.OPERATION_NOT_ALLOWED),
        ("BatchExecuteStatement", {"Statements": []}, Reason.OPERATION_NOT_ALLOWED),
        ("ExecuteTransaction", {"TransactStatements": []}, Reason.OPERATION_NOT_ALLOWED),
        ("DescribeTable", {"TableName": "app"}, Reason.OPERATION_NOT_ALLOWED),
        ("DeleteTable", {"TableName": "app"}, Reason.OPERATION_NOT_ALLOWED),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditionExpression": "sk = :s",
                "ExpressionAttributeValues": {":s": S("TENANT#acme")},
            },
            Reason.NO_PARTITION_KEY,
        ),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditions": {
                    "pk": {"AttributeValueList": [S("TENANT#acme")], "ComparisonOperator": "BEGINS_WITH"}
                },
            },
            Reason.KEY_CONDITION,
        ),
        (
            "Query",
            {
                "TableName": "app",
                "IndexName": "unknown-index",
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": S("TENANT#acme")},
            },
            Reason.UNKNOWN_INDEX,
        ),
        ("GetItem", {"TableName": "other-table", "Key": {"pk": S("TENANT#acme")}}, Reason.UNCONFIGURED_TABLE),
    ],
)
def test_table_wide_unknown_and_malformed_requests_are_refused(
    operation: str, params: dict[str, Any], reason: Reason
) -> None:
    assert refused(operation, params) is reason


@pytest.mark.parametrize(
    ("operation", "params", "detail"),
    [
        ("TransactWriteItems", {"TransactItems": [{"Put": {}, "Delete": {}}]}, "transaction item"),
        ("TransactGetItems", {"TransactItems": ["Get"]}, "transaction item"),
        ("BatchWriteItem", {"RequestItems": {"app": [{"Unknown": {}}]}}, "batch write request"),
        (
            "BatchWriteItem",
            {
                "RequestItems": {
                    "app": [
                        {"PutRequest": {"Item": {"pk": S("TENANT#acme#1")}}, "DeleteRequest": {"Key": {}}}
                    ]
                }
            },
            "batch write request",
        ),
        ("BatchWriteItem", {"RequestItems": {"app": ["PutRequest"]}}, "batch write request"),
        (
            "UpdateItem",
            {"TableName": "app", "Key": {"pk": S("TENANT#acme#1")}, "AttributeUpdates": {"gsi1pk": "PUT"}},
            "attribute update",
        ),
    ],
)
def test_malformed_requests_are_refused_naming_the_part_at_fault(
    operation: str, params: dict[str, Any], detail: str
) -> None:
    with pytest.raises(CrossTenantAccess) as refusal, tenant_scope("acme"):
        LeadingKeyGuard("acme", SETTINGS, _KeySchemas(describe_app))(
            params=params, model=SimpleNamespace(name=operation)
        )
    assert (refusal.value.reason, refusal.value.detail) == (Reason.MALFORMED_REQUEST, detail)


@pytest.mark.parametrize("operation", ["Scan", "ExecuteStatement", "DeleteTable", "UpdateTable"])
def test_an_operation_outside_the_item_api_is_refused_by_name(operation: str) -> None:
    with pytest.raises(CrossTenantAccess) as refusal:
        call(operation, {"TableName": "app"})
    assert (refusal.value.reason, refusal.value.detail) == (Reason.OPERATION_NOT_ALLOWED, operation)


def test_guard_refuses_use_outside_any_scope() -> None:
    with pytest.raises(NoTenantContext):
        call("GetItem", {"TableName": "app", "Key": {"pk": S("TENANT#acme")}}, scope=None)


def test_guard_refuses_use_under_another_tenants_scope() -> None:
    # A session made for acme and kept in a variable is useless once globex's scope is active.
    request = {"TableName": "app", "Key": {"pk": S("TENANT#globex")}}
    assert refused("GetItem", request, scope="globex") is Reason.FOREIGN_SCOPE


def test_partition_key_is_learned_from_the_key_schema_when_not_configured() -> None:
    described: list[str] = []

    def describe(table: str) -> dict[str, Any]:
        described.append(table)
        return {
            "KeySchema": [
                {"AttributeName": "sk", "KeyType": "RANGE"},
                {"AttributeName": "tpk", "KeyType": "HASH"},
            ],
            "GlobalSecondaryIndexes": [
                {"IndexName": "by-status", "KeySchema": [{"AttributeName": "spk", "KeyType": "HASH"}]}
            ],
        }

    guard = LeadingKeyGuard("acme", Settings.load(environ={}), _KeySchemas(describe))
    with tenant_scope("acme"):
        for _ in range(3):
            guard(
                params={"TableName": "t", "Key": {"tpk": S("TENANT#acme#1")}},
                model=SimpleNamespace(name="GetItem"),
            )
        guard(
            params={
                "TableName": "t",
                "IndexName": "by-status",
                "KeyConditionExpression": "spk = :v",
                "ExpressionAttributeValues": {":v": S("TENANT#acme#OPEN")},
            },
            model=SimpleNamespace(name="Query"),
        )
        with pytest.raises(  # "pk" is not this table's key
            CrossTenantAccess, match="expected 'tpk', the partition key of table 't' in its DescribeTable"
        ) as refusal:
            guard(
                params={"TableName": "t", "Key": {"pk": S("TENANT#acme#1")}},
                model=SimpleNamespace(name="GetItem"),
            )
        assert refusal.value.reason is Reason.NO_PARTITION_KEY
    assert described == ["t"]  # described once, then cached


def index_query(index: str, key: str) -> dict[str, Any]:
    """A query of acme's partition of table ``t``'s ``index``, keyed on ``key``."""
    return {
        "TableName": "t",
        "IndexName": index,
        "KeyConditionExpression": f"{key} = :v",
        "ExpressionAttributeValues": {":v": S("TENANT#acme#1")},
    }


@pytest.mark.parametrize(
    "description",
    [
        {"KeySchema": [{"AttributeName": "tpk", "KeyType": "HASH"}]},
        {
            "KeySchema": [{"AttributeName": "tpk", "KeyType": "HASH"}],
            "LocalSecondaryIndexes": [
                {
                    "IndexName": "by-date",
                    "KeySchema": [
                        {"AttributeName": "tpk", "KeyType": "HASH"},
                        {"AttributeName": "date", "KeyType": "RANGE"},
                    ],
                }
            ],
        },
    ],
    ids=["no index", "a local index only"],
)
def test_a_described_table_without_global_indexes_is_read(description: dict[str, Any]) -> None:
    guard = LeadingKeyGuard("acme", Settings.load(environ={}), _KeySchemas(lambda table: description))
    indexes = [i["IndexName"] for i in description.get("LocalSecondaryIndexes", [])]
    with tenant_scope("acme"):
        guard(
            params={"TableName": "t", "Key": {"tpk": S("TENANT#acme#1")}},
            model=SimpleNamespace(name="GetItem"),
        )
        for index in indexes:  # a local index shares the table's partition key
            guard(params=index_query(index, "tpk"), model=SimpleNamespace(name="Query"))


def test_an_unconfigured_table_is_described_in_the_configured_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN settings in eu-west-1 that configure no table, and the function role's DynamoDB client faked
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("TENANTSCOPE_TABLES", raising=False)
    reset_process_state()
    made: list[tuple[str, str | None]] = []

    def aws_client(service: str, region: str | None) -> Any:
        made.append((service, region))
        return SimpleNamespace(describe_table=lambda TableName: {"Table": describe_app(TableName)})

    monkeypatch.setattr(_guard, "aws_client", aws_client)
    # WHEN a table without a configured key is first used THEN it is described there
    assert _KeySchemas().keys(get_settings(), "t") == ("pk", {})
    assert made == [("dynamodb", "eu-west-1")]


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        (
            "PutItem",
            {"TableName": "app", "Item": {"PK": S("TENANT#acme")}},
            "'pk', the partition key of table 'app'",
        ),
        (
            "GetItem",
            {"TableName": "app", "Key": {"PK": S("TENANT#acme")}},
            "'pk', the partition key of table 'app'",
        ),
        (
            "Query",
            {
                "TableName": "app",
                "KeyConditions": {
                    "PK": {"AttributeValueList": [S("TENANT#acme")], "ComparisonOperator": "EQ"}
                },
            },
            "'pk', the partition key of table 'app'",
        ),
        (
            "Query",
            {
                "TableName": "app",
                "IndexName": "gsi1",
                "KeyConditionExpression": "pk = :g",
                "ExpressionAttributeValues": {":g": S("TENANT#acme")},
            },
            "'gsi1pk', the partition key of index 'gsi1' of table 'app'",
        ),
        (
            "Query",
            {
                "TableName": "app",
                "IndexName": "gsi1",
                "KeyConditions": {
                    "pk": {"AttributeValueList": [S("TENANT#acme")], "ComparisonOperator": "EQ"}
                },
            },
            "'gsi1pk', the partition key of index 'gsi1' of table 'app'",
        ),
    ],
)
def test_a_request_without_the_configured_partition_key_names_the_attribute_expected(
    operation: str, params: dict[str, Any], expected: str
) -> None:
    # A key attribute other than the configured one (PK for pk) is most often a typo in
    # TENANTSCOPE_TABLES: the refusal says what the guard looked for, and where it learnt it.
    with pytest.raises(CrossTenantAccess) as refused:
        call(operation, params)
    assert refused.value.reason == "no-partition-key"
    assert str(refused.value) == (
        f"no partition key attribute in the request (expected {expected} in TENANTSCOPE_TABLES)"
    )


def test_tenant_key_builds_keys_in_the_current_partition() -> None:
    with tenant_scope("acme"):
        assert tenant_key() == "TENANT#acme"
        assert tenant_key("ORDER", 7) == "TENANT#acme#ORDER#7"
        for bad in ("", None, True, 1.5):
            with pytest.raises(ValueError, match=r"^key parts must be non-empty strings or integers$"):
                tenant_key(bad)  # type: ignore[arg-type]
    with pytest.raises(NoTenantContext):
        tenant_key("ORDER")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:dynamodb:us-east-1:999999999999:table/app",  # another account
        "arn:aws:dynamodb:eu-west-1:123456789012:table/app",  # another region
        "arn:aws:dynamodb:us-east-1:123456789012:index/app",  # not a table
    ],
)
def test_table_arns_outside_this_account_and_region_are_refused(arn: str) -> None:
    request = {"TableName": arn, "Key": {"pk": S("TENANT#acme#1")}}
    assert refused("GetItem", request) is Reason.FOREIGN_TABLE_ARN


def test_a_table_arn_is_read_as_the_table_it_names() -> None:
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/app"
    call("GetItem", {"TableName": arn, "Key": {"pk": S("TENANT#acme#1")}})
    # a colon after the name is part of the name: no configured table is called "app:x"
    request = {"TableName": arn + ":x", "Key": {"pk": S("TENANT#acme#1")}}
    assert refused("GetItem", request) is Reason.UNCONFIGURED_TABLE


def test_with_a_malformed_role_arn_every_table_arn_is_refused() -> None:
    # The account of a table ARN is compared with the role's: a role ARN with no account matches none.
    guard = LeadingKeyGuard("acme", Settings.load(environ={}, region="us-east-1", role_arn="arn:aws:iam:x"))
    request = {
        "TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/app",
        "Key": {"pk": S("TENANT#acme")},
    }
    with pytest.raises(CrossTenantAccess) as refusal, tenant_scope("acme"):
        guard(params=request, model=SimpleNamespace(name="GetItem"))
    assert refusal.value.reason is Reason.FOREIGN_TABLE_ARN


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"Key": {"pk": S("TENANT#acme")}}, Reason.MISSING_TABLE),
        ({"TableName": 7, "Key": {"pk": S("TENANT#acme")}}, Reason.MISSING_TABLE),
        ({"TableName": "app"}, Reason.MISSING_KEY),
        ({"TableName": "app", "Key": [S("TENANT#acme")]}, Reason.MISSING_KEY),
    ],
)
def test_a_request_without_its_table_or_key_is_refused_as_such(
    params: dict[str, Any], reason: Reason
) -> None:
    assert refused("GetItem", params) is reason


def global_index(name: str, key: str) -> dict[str, Any]:
    return {"IndexName": name, "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}]}


def describing(indexes: list[dict[str, Any]], described: list[str]) -> Callable[[str], dict[str, Any]]:
    """DescribeTable of a table keyed on ``pk``, with ``indexes`` as they are at each call (noted)."""

    def describe(table: str) -> dict[str, Any]:
        described.append(table)
        return {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": list(indexes),
        }

    return describe


def test_an_index_added_to_a_described_table_is_checked_once_the_description_is_renewed() -> None:
    # GIVEN a table described before its second index existed
    now = [1000.0]
    indexes = [global_index("by-status", "spk")]
    described: list[str] = []
    schemas = _KeySchemas(describing(indexes, described), clock=lambda: now[0])
    guard = LeadingKeyGuard("acme", Settings.load(environ={}), schemas)
    planting = {"TableName": "t", "Item": {"pk": S("TENANT#acme#1"), "inbox": S("TENANT#globex#INBOX")}}
    with tenant_scope("acme"):
        guard(params=planting, model=SimpleNamespace(name="PutItem"))
        # WHEN the index is added, and the description is renewed
        indexes.append(global_index("by-inbox", "inbox"))
        now[0] += _guard.DESCRIBED_SCHEMA_SECONDS
        # THEN a write under another tenant's key in the new index is refused
        with pytest.raises(CrossTenantAccess) as refusal:
            guard(params=planting, model=SimpleNamespace(name="PutItem"))
    assert refusal.value.reason is Reason.FOREIGN_KEY
    assert described == ["t", "t"]


def test_a_query_on_an_index_the_description_lacks_describes_the_table_again_at_a_bounded_rate() -> None:
    now = [1000.0]
    indexes: list[dict[str, Any]] = []
    described: list[str] = []
    schemas = _KeySchemas(describing(indexes, described), clock=lambda: now[0])
    guard = LeadingKeyGuard("acme", Settings.load(environ={}), schemas)

    def query(index: str) -> None:
        guard(params=index_query(index, "ipk"), model=SimpleNamespace(name="Query"))

    with tenant_scope("acme"):
        guard(
            params={"TableName": "t", "Key": {"pk": S("TENANT#acme#1")}},
            model=SimpleNamespace(name="GetItem"),
        )
        indexes.append(global_index("new", "ipk"))
        for name in ("new", "made-up", "other"):  # within the interval: the description stands
            with pytest.raises(CrossTenantAccess, match="unknown"):
                query(name)
        now[0] += _guard.UNKNOWN_INDEX_DESCRIBE_SECONDS
        query("new")  # described again: the new index is known, and its key checked
        with pytest.raises(CrossTenantAccess, match="unknown"):
            query("made-up")
        now[0] += _guard.UNKNOWN_INDEX_DESCRIBE_SECONDS
        query("new")  # a known index describes nothing before the description is due
    assert described == ["t", "t"]


def test_an_index_a_configured_table_lacks_is_refused_without_describing_it() -> None:
    def describe(table: str) -> dict[str, Any]:
        raise AssertionError("a configured table is never described")

    with pytest.raises(CrossTenantAccess) as refusal:
        _KeySchemas(describe).partition_key(SETTINGS, "app", "made-up")
    assert refusal.value.reason is Reason.UNKNOWN_INDEX


def test_a_table_is_described_in_the_region_of_the_guards_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    made: list[tuple[str, str | None]] = []

    def aws_client(service: str, region: str | None) -> Any:
        made.append((service, region))
        return SimpleNamespace(describe_table=lambda TableName: {"Table": describe_app(TableName)})

    monkeypatch.setattr(_guard, "aws_client", aws_client)
    schemas = _KeySchemas()
    for region in ("us-east-2", "ap-south-1"):
        assert schemas.keys(Settings.load(environ={}, region=region), "t") == ("pk", {})
        with pytest.raises(CrossTenantAccess):  # just described there: not again for an unknown index
            schemas.partition_key(Settings.load(environ={}, region=region), "t", "made-up")
    assert made == [("dynamodb", "us-east-2"), ("dynamodb", "ap-south-1")]


def test_each_unconfigured_table_is_described_for_itself() -> None:
    keys = {"t1": "tpk", "t2": "upk"}
    schemas = _KeySchemas(lambda table: {"KeySchema": [{"AttributeName": keys[table], "KeyType": "HASH"}]})
    assert [schemas.keys(Settings.load(environ={}), table)[0] for table in ("t1", "t2", "t1")] == [
        "tpk",
        "upk",
        "tpk",
    ]


OWN_ITEM = {"pk": S("TENANT#acme#1"), "sk": S("A")}


@pytest.mark.parametrize(
    ("operation", "params", "reason"),
    [
        (
            "PutItem",
            {"TableName": "app", "Item": {**OWN_ITEM, "gsi1pk": S("TENANT#globex#OPEN")}},
            Reason.FOREIGN_KEY,
        ),
        (
            "BatchWriteItem",
            {"RequestItems": {"app": [{"PutRequest": {"Item": {**OWN_ITEM, "gsi1pk": S("x")}}}]}},
            Reason.FOREIGN_KEY,
        ),
        (
            "TransactWriteItems",
            {"TransactItems": [{"Put": {"TableName": "app", "Item": {**OWN_ITEM, "gsi1pk": {"N": "1"}}}}]},
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "UpdateExpression": "SET #g = :g",
                "ExpressionAttributeNames": {"#g": "gsi1pk"},
                "ExpressionAttributeValues": {":g": S("TENANT#globex#OPEN")},
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "UpdateExpression": "SET gsi1pk = :g",
                "ExpressionAttributeValues": {":g": S("TENANT#acme-corp#OPEN")},
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "UpdateExpression": "SET gsi1pk = if_not_exists(gsi1pk, :g)",
                "ExpressionAttributeValues": {":g": S("TENANT#acme#OPEN")},
            },
            Reason.UNCHECKABLE_INDEX_UPDATE,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "AttributeUpdates": {"gsi1pk": {"Value": S("TENANT#globex"), "Action": "PUT"}},
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": "app",
                            "Key": OWN_ITEM,
                            "UpdateExpression": "SET gsi1pk = :g",
                            "ExpressionAttributeValues": {":g": S("TENANT#globex")},
                        }
                    }
                ]
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                # a legacy update without Action puts the value: DynamoDB's default
                "AttributeUpdates": {"gsi1pk": {"Value": S("TENANT#globex")}},
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                # an Action sent as null (a client with parameter validation off) is the default too
                "AttributeUpdates": {"gsi1pk": {"Value": S("TENANT#globex"), "Action": None}},
            },
            Reason.FOREIGN_KEY,
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "AttributeUpdates": {"gsi1pk": {"Value": {"N": "1"}, "Action": "ADD"}},
            },
            Reason.UNCHECKABLE_INDEX_UPDATE,
        ),
        (
            "UpdateItem",
            {"TableName": "app", "Key": OWN_ITEM, "AttributeUpdates": {"gsi1pk": "PUT"}},
            Reason.MALFORMED_REQUEST,
        ),
    ],
)
def test_writes_cannot_put_an_item_under_another_tenants_index_key(
    operation: str, params: dict[str, Any], reason: Reason
) -> None:
    # IAM's dynamodb:LeadingKeys sees a write's table key only; the guard checks its index keys too.
    assert refused(operation, params) is reason


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("PutItem", {"TableName": "app", "Item": {**OWN_ITEM, "gsi1pk": S("TENANT#acme#OPEN")}}),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "UpdateExpression": "SET #g = :g, colour = :c",
                "ExpressionAttributeNames": {"#g": "gsi1pk"},
                "ExpressionAttributeValues": {":g": S("TENANT#acme#OPEN"), ":c": S("red")},
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "UpdateExpression": "SET stock = stock - :q",
                "ExpressionAttributeValues": {":q": {"N": "1"}},
            },
        ),
    ],
)
def test_writes_keeping_index_keys_in_the_partition_pass(operation: str, params: dict[str, Any]) -> None:
    call(operation, params)


@pytest.mark.parametrize(
    "update",
    [
        {"Value": S("TENANT#acme#OPEN")},  # no Action: DynamoDB's default, PUT
        {"Value": S("TENANT#acme#OPEN"), "Action": "PUT"},
        {"Action": "DELETE"},  # removes the item from the index: no value to check
    ],
    ids=["put by default", "put", "delete"],
)
def test_legacy_updates_keeping_index_keys_in_the_partition_pass(update: dict[str, Any]) -> None:
    call("UpdateItem", {"TableName": "app", "Key": OWN_ITEM, "AttributeUpdates": {"gsi1pk": update}})


INVERTED = Settings.load(
    environ={},
    region="us-east-1",
    role_arn="arn:aws:iam::123456789012:role/tenantscope-tenant",
    tables=(TableSpec("app", "pk", {"gsi1": "sk"}),),  # an inverted index: keyed on the sort key
)
UPSERT_SETS = [
    {"UpdateExpression": "SET note = :n", "ExpressionAttributeValues": {":n": S("x")}},
    {"AttributeUpdates": {"note": {"Value": S("x"), "Action": "PUT"}}},
    {},  # no update at all: the item is created with its key alone
]


def inverted_index_write(operation: str, key: dict[str, Any], update: dict[str, Any]) -> None:
    guard = LeadingKeyGuard("acme", INVERTED, _KeySchemas(describe_app))
    params = {"TableName": "app", "Key": key, **update}
    if operation == "TransactWriteItems":
        params = {"TransactItems": [{"Update": params}]}
    with tenant_scope("acme"):
        guard(params=params, model=SimpleNamespace(name=operation))


@pytest.mark.parametrize("update", UPSERT_SETS, ids=["expression", "legacy", "key alone"])
@pytest.mark.parametrize("operation", ["UpdateItem", "TransactWriteItems"])
def test_an_update_cannot_create_an_item_under_another_tenants_index_key_through_its_key(
    operation: str, update: dict[str, Any]
) -> None:
    # GIVEN an index keyed on the table's sort key, and a key in acme's partition whose sort key
    # is in globex's: an update that finds no item creates one with this key, which the index
    # files in globex's partition (PutItem of the same item is refused)
    key = {"pk": S("TENANT#acme#ORDER#1"), "sk": S("TENANT#globex#INJECTED")}
    # WHEN acme's session sends it, THEN it is refused as a foreign key
    with pytest.raises(CrossTenantAccess) as refusal:
        inverted_index_write(operation, key, update)
    assert refusal.value.reason is Reason.FOREIGN_KEY
    # and the same update of a key wholly in acme's partition passes
    inverted_index_write(operation, {**key, "sk": S("TENANT#acme#ORDER#1")}, update)


TWO_INDEXES = Settings.load(
    environ={},
    region="us-east-1",
    role_arn="arn:aws:iam::123456789012:role/tenantscope-tenant",
    tables=(TableSpec("app", "pk", {"gsi1": "gsi1pk", "gsi2": "gsi2pk"}),),
)


@pytest.mark.parametrize("index_key", ["gsi1pk", "gsi2pk"])
def test_an_update_of_either_of_two_index_keys_is_checked(index_key: str) -> None:
    # GIVEN a table with two indexes, and an update that sets one index key (whichever the guard
    # looks at first, the other is untouched)
    guard = LeadingKeyGuard("acme", TWO_INDEXES, _KeySchemas(describe_app))
    params = {
        "TableName": "app",
        "Key": OWN_ITEM,
        "UpdateExpression": "SET #i = :i",
        "ExpressionAttributeNames": {"#i": index_key},
        "ExpressionAttributeValues": {":i": S("TENANT#globex#OPEN")},
    }
    # THEN a value in another tenant's partition is refused
    with pytest.raises(CrossTenantAccess) as refusal, tenant_scope("acme"):
        guard(params=params, model=SimpleNamespace(name="UpdateItem"))
    assert refusal.value.reason is Reason.FOREIGN_KEY


# --- expressions are read with DynamoDB's grammar, or refused ------------------------------------

ACME, GLOBEX = S("TENANT#acme#ITEM"), S("TENANT#globex#ITEM")


def query(expression: str, values: dict[str, Any], names: dict[str, str] | None = None, **extra: Any) -> None:
    params: dict[str, Any] = {"TableName": "app", "KeyConditionExpression": expression, **extra}
    if values:
        params["ExpressionAttributeValues"] = values
    if names:
        params["ExpressionAttributeNames"] = names
    call("Query", params)


@pytest.mark.parametrize(
    ("expression", "values", "names", "reason"),
    [
        ("pk = :g-1", {":g": ACME, ":g-1": GLOBEX}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g_1", {":g": ACME, ":g_1": GLOBEX}, None, Reason.UNREADABLE_EXPRESSION),
        ("#p-1 = :g", {":g": ACME}, {"#p": "pk", "#p-1": "pk"}, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g", {":g": ACME, ":unused": GLOBEX}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g", {":g": ACME}, {"#n": "pk"}, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g AND pk = :h", {":g": ACME, ":h": GLOBEX}, None, Reason.KEY_CONDITION),
        ("(pk = :g) AND begins_with(pk, :h)", {":g": ACME, ":h": S("TENANT#")}, None, Reason.KEY_CONDITION),
        ("pk = :g OR pk = :h", {":g": ACME, ":h": GLOBEX}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk > :g", {":g": ACME}, None, Reason.KEY_CONDITION),
        (
            "pk = :g AND sk > :a AND sk < :b",
            {":g": ACME, ":a": S("a"), ":b": S("b")},
            None,
            Reason.KEY_CONDITION,
        ),
        ("pk = :g; sk = :h", {":g": ACME, ":h": S("x")}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g\x00", {":g": ACME}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = 'TENANT#globex#ITEM'", {}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = :g AND", {":g": ACME}, None, Reason.UNREADABLE_EXPRESSION),
        ("(pk = :g", {":g": ACME}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = :missing", {":g": ACME}, None, Reason.UNREADABLE_EXPRESSION),
        ("pk = #n", {}, {"#n": "pk"}, Reason.UNREADABLE_EXPRESSION),
    ],
)
def test_key_conditions_the_guard_cannot_read_exactly_are_refused(
    expression: str, values: dict[str, Any], names: dict[str, str] | None, reason: Reason
) -> None:
    with pytest.raises(CrossTenantAccess) as refusal:
        query(expression, values, names)
    assert refusal.value.reason is reason


def test_key_conditions_mixed_with_legacy_key_conditions_are_refused() -> None:
    legacy = {"pk": {"AttributeValueList": [ACME], "ComparisonOperator": "EQ"}}
    with pytest.raises(CrossTenantAccess, match="KeyConditions mixed with KeyConditionExpression") as refusal:
        query("pk = :g", {":g": ACME}, KeyConditions=legacy)
    assert refusal.value.reason is Reason.UNREADABLE_EXPRESSION


@pytest.mark.parametrize(
    ("expression", "values", "names"),
    [
        ("pk = :g", {":g": ACME}, None),
        ("pk=:g", {":g": ACME}, None),
        ("PK_ALIAS = :g", {":g": ACME}, None),  # not the partition key: refused below
        ("#n0 = :v0", {":v0": ACME}, {"#n0": "pk"}),
        # what boto3's Key("pk").eq(...) & Key("sk").begins_with(...) builds
        ("(#n0 = :v0 AND begins_with(#n1, :v1))", {":v0": ACME, ":v1": S("x")}, {"#n0": "pk", "#n1": "sk"}),
        (
            "#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2",
            {":v0": ACME, ":v1": S("a"), ":v2": S("b")},
            {"#n0": "pk", "#n1": "sk"},
        ),
        ("pk = :g and sk >= :a", {":g": ACME, ":a": S("a")}, None),
        ("sk < :a AND :g = pk", {":g": ACME, ":a": S("a")}, None),
    ],
)
def test_key_conditions_in_dynamodbs_grammar_are_read(
    expression: str, values: dict[str, Any], names: dict[str, str] | None
) -> None:
    if expression.startswith("PK_ALIAS"):
        with pytest.raises(
            CrossTenantAccess, match="expected 'pk', the partition key of table 'app'"
        ) as refusal:
            query(expression, values, names)
        assert refusal.value.reason is Reason.NO_PARTITION_KEY
        return
    query(expression, values, names)


def test_a_query_page_cannot_start_in_another_tenants_partition() -> None:
    start = {"pk": GLOBEX, "sk": S("A")}
    with pytest.raises(CrossTenantAccess) as refusal:
        query("pk = :g", {":g": ACME}, ExclusiveStartKey=start)
    assert refusal.value.reason is Reason.FOREIGN_KEY
    query("pk = :g", {":g": ACME}, ExclusiveStartKey={"pk": ACME, "sk": S("A")})


def test_a_query_page_starting_at_no_key_is_refused() -> None:
    with pytest.raises(CrossTenantAccess) as refusal:
        query("pk = :g", {":g": ACME}, ExclusiveStartKey=[ACME])
    assert (refusal.value.reason, refusal.value.detail) == (Reason.MALFORMED_REQUEST, "start key")


@pytest.mark.parametrize("operator", ["BEGINS_WITH", "GT", "BETWEEN"])
def test_a_legacy_key_condition_on_the_partition_key_must_be_an_equality(operator: str) -> None:
    legacy = {"pk": {"AttributeValueList": [ACME], "ComparisonOperator": operator}}
    with pytest.raises(CrossTenantAccess) as refusal:
        call("Query", {"TableName": "app", "KeyConditions": legacy})
    assert (refusal.value.reason, refusal.value.detail) == (Reason.KEY_CONDITION, "not an equality")


@pytest.mark.parametrize(
    ("expression", "values", "names", "reason"),
    [
        (
            "SET gsi1pk = :g-1",
            {":g": S("TENANT#acme#OPEN"), ":g-1": S("TENANT#globex#OPEN")},
            None,
            Reason.UNREADABLE_EXPRESSION,
        ),
        (
            "SET #g-1 = :g",
            {":g": S("TENANT#acme#OPEN")},
            {"#g": "colour", "#g-1": "gsi1pk"},
            Reason.UNREADABLE_EXPRESSION,
        ),
        (
            "SET gsi1pk = :g, gsi1pk = :h",
            {":g": S("TENANT#acme#A"), ":h": S("TENANT#globex#B")},
            None,
            Reason.UNCHECKABLE_INDEX_UPDATE,
        ),
        (
            "SET gsi1pk = :g SET colour = :c",
            {":g": S("TENANT#acme#A"), ":c": S("red")},
            None,
            Reason.UNREADABLE_EXPRESSION,
        ),
        ("SET gsi1pk = :g REMOVE gsi1pk", {":g": S("TENANT#acme#A")}, None, Reason.UNCHECKABLE_INDEX_UPDATE),
        ("SET colour = gsi1pk", {}, None, Reason.UNCHECKABLE_INDEX_UPDATE),
        ("SET gsi1pk.x = :g", {":g": S("TENANT#acme#A")}, None, Reason.UNCHECKABLE_INDEX_UPDATE),
        (
            "SET gsi1pk = :g",
            {":g": S("TENANT#acme#A"), ":unused": S("TENANT#globex#A")},
            None,
            Reason.UNREADABLE_EXPRESSION,
        ),
        ("SET colour = :c DELETE", {":c": S("red")}, None, Reason.UNREADABLE_EXPRESSION),
        ("UPSERT gsi1pk = :g", {":g": S("TENANT#acme#A")}, None, Reason.UNREADABLE_EXPRESSION),
        ("", {}, None, Reason.UNREADABLE_EXPRESSION),
    ],
)
def test_update_expressions_the_guard_cannot_read_exactly_are_refused(
    expression: str, values: dict[str, Any], names: dict[str, str] | None, reason: Reason
) -> None:
    params: dict[str, Any] = {"TableName": "app", "Key": OWN_ITEM, "UpdateExpression": expression}
    if values:
        params["ExpressionAttributeValues"] = values
    if names:
        params["ExpressionAttributeNames"] = names
    assert refused("UpdateItem", params) is reason


@pytest.mark.parametrize(
    ("operation", "expression", "values", "detail"),
    [
        ("Query", "pk = :g extra", {":g": ACME}, "unexpected text after the key condition"),
        (
            "Query",
            "pk = :g AND sk BETWEEN :a :b",
            {":g": ACME, ":a": S("a"), ":b": S("b")},
            "BETWEEN without AND",
        ),
        ("Query", "begins_with(pk :g)", {":g": ACME}, "',' expected"),
        ("Query", 7, {":g": ACME}, "not a string"),
        ("Query", "pk = :g;", {":g": ACME}, "a character outside DynamoDB's expression grammar"),
        ("Query", "pk =", {}, "it ends too early"),
        ("Query", "pk = sk", {}, "a value placeholder expected"),
        ("Query", "= :g", {":g": ACME}, "an attribute name expected"),
        ("Query", "BETWEEN = :g", {":g": ACME}, "an attribute name expected"),
        ("Query", "pk + :g", {":g": ACME}, "a comparison expected"),
        ("Query", "contains(pk, :g)", {":g": ACME}, "a comparison expected"),
        ("UpdateItem", "", {}, "an empty update expression"),
        (
            "UpdateItem",
            "SET a = :v SET b = :v",
            {":v": S("x")},
            "SET, REMOVE, ADD or DELETE expected, each at most once",
        ),
        ("UpdateItem", "= :v", {":v": S("x")}, "SET, REMOVE, ADD or DELETE expected, each at most once"),
    ],
)
def test_an_unreadable_expression_is_refused_saying_where_reading_stopped(
    operation: str, expression: object, values: dict[str, Any], detail: str
) -> None:
    key = "KeyConditionExpression" if operation == "Query" else "UpdateExpression"
    params: dict[str, Any] = {"TableName": "app", key: expression}
    if operation == "UpdateItem":
        params["Key"] = OWN_ITEM
    if values:
        params["ExpressionAttributeValues"] = values
    with pytest.raises(CrossTenantAccess) as refusal:
        call(operation, params)
    assert (refusal.value.reason, refusal.value.detail) == (Reason.UNREADABLE_EXPRESSION, detail)


@pytest.mark.parametrize(
    "expression",
    [
        "SET colour = :c + gsi1pk",
        "SET colour = if_not_exists(gsi1pk, :c)",
        "SET colour = list_append(:c, gsi1pk)",
    ],
)
def test_an_index_key_read_as_an_operand_is_an_update_the_guard_cannot_check(expression: str) -> None:
    params = {
        "TableName": "app",
        "Key": OWN_ITEM,
        "UpdateExpression": expression,
        "ExpressionAttributeValues": {":c": S("red")},
    }
    assert refused("UpdateItem", params) is Reason.UNCHECKABLE_INDEX_UPDATE


@pytest.mark.parametrize(
    ("names", "values"),
    [(["#n"], {":g": ACME}), ({"#n": "pk"}, [ACME])],
    ids=["names not a map", "values not a map"],
)
def test_placeholders_that_are_not_maps_are_refused(names: object, values: object) -> None:
    params = {
        "TableName": "app",
        "KeyConditionExpression": "#n = :g",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    with pytest.raises(CrossTenantAccess) as refusal:
        call("Query", params)
    assert (refusal.value.reason, refusal.value.detail) == (
        Reason.UNREADABLE_EXPRESSION,
        "malformed placeholders",
    )


@pytest.mark.parametrize(
    ("expression", "names", "values", "detail"),
    [
        ("#p = :g", {"#p": "pk", "#p-1": "x"}, {":g": ACME}, "a name placeholder outside the grammar"),
        ("pk = :g", None, {":g": ACME, ":g-1": GLOBEX}, "a value placeholder outside the grammar"),
        ("pk = :h", None, {":g": ACME}, "a placeholder that is not defined"),
        ("#n = :g", None, {":g": ACME}, "a placeholder that is not defined"),
        ("pk = :g", None, {":g": ACME, ":unused": GLOBEX}, "a placeholder that is defined but not used"),
        ("pk = :g", {"#n": "pk"}, {":g": ACME}, "a placeholder that is defined but not used"),
    ],
)
def test_placeholders_outside_the_grammar_undefined_or_unused_are_refused_as_such(
    expression: str, names: dict[str, str] | None, values: dict[str, Any], detail: str
) -> None:
    with pytest.raises(CrossTenantAccess) as refusal:
        query(expression, values, names)
    assert (refusal.value.reason, refusal.value.detail) == (Reason.UNREADABLE_EXPRESSION, detail)


def test_key_conditions_are_read_with_their_operator_and_values() -> None:
    for expression, second in [
        ("pk = :p AND begins_with(#s, :s)", ("sk", "begins_with", (":s",))),
        ("pk = :p AND #s BETWEEN :s AND :t", ("sk", "BETWEEN", (":s", ":t"))),
    ]:
        values = {name: S("A") for name in second[2]}
        params = {
            "KeyConditionExpression": expression,
            "ExpressionAttributeNames": {"#s": "sk"},
            "ExpressionAttributeValues": {":p": ACME, **values},
        }
        conditions = key_conditions(read_expressions(params)["KeyConditionExpression"], {"#s": "sk"})
        assert [tuple(c) for c in conditions] == [("pk", "=", (":p",)), second]


@pytest.mark.parametrize(
    "expression",
    [
        "SET colour = :c, n = n + :one REMOVE old ADD tags :t DELETE gone :t2",
        "set colour = list_append(if_not_exists(colour, :c), :c2), #o.#p[2] = :one",
        "SET gsi1pk = :g, colour = :c",
    ],
)
def test_update_expressions_in_dynamodbs_grammar_are_read(expression: str) -> None:
    candidates = {
        ":c": S("red"),
        ":c2": S("blue"),
        ":one": {"N": "1"},
        ":t": {"SS": ["a"]},
        ":t2": {"SS": ["b"]},
        ":g": S("TENANT#acme#OPEN"),
    }
    names = {k: v for k, v in {"#o": "outer", "#p": "part"}.items() if k in expression}
    params: dict[str, Any] = {
        "TableName": "app",
        "Key": OWN_ITEM,
        "UpdateExpression": expression,
        "ExpressionAttributeValues": {
            k: v for k, v in candidates.items() if re.search(f"{k}\\b", expression)
        },
    }
    if names:
        params["ExpressionAttributeNames"] = names
    call("UpdateItem", params)


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        (
            "GetItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "ProjectionExpression": "#a",
                "ExpressionAttributeNames": {"#a": "x", "#b": "y"},
            },
        ),
        (
            "DeleteItem",
            {
                "TableName": "app",
                "Key": OWN_ITEM,
                "ConditionExpression": "a = :a-1",
                "ExpressionAttributeValues": {":a": S("x"), ":a-1": S("y")},
            },
        ),
        (
            "PutItem",
            {
                "TableName": "app",
                "Item": OWN_ITEM,
                "ConditionExpression": "attribute_not_exists(pk)",
                "Expected": {"pk": {"Exists": False}},
            },
        ),
        (
            "BatchGetItem",
            {
                "RequestItems": {
                    "app": {
                        "Keys": [OWN_ITEM],
                        "ProjectionExpression": "#a",
                        "ExpressionAttributeNames": {"#z": "x"},
                    }
                }
            },
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "ConditionCheck": {
                            "TableName": "app",
                            "Key": OWN_ITEM,
                            "ConditionExpression": "a = :a",
                            "ExpressionAttributeValues": {":a": S("x"), ":b": S("y")},
                        }
                    }
                ]
            },
        ),
    ],
    ids=[
        "GetItem unused name",
        "DeleteItem bad placeholder",
        "PutItem legacy mixed",
        "BatchGetItem undefined",
        "TransactWriteItems unused value",
    ],
)
def test_every_request_gets_the_same_placeholder_rules(operation: str, params: dict[str, Any]) -> None:
    assert refused(operation, params) is Reason.UNREADABLE_EXPRESSION
