"""Tenant data access on moto: scoped sessions, the guard, and the credential cache.

moto enforces neither session policies nor session tags (see docs/architecture.md), so
these tests show the application-level guard and the STS traffic; the IAM side is
tested as data in tests/unit/test_policy.py and on real AWS in tests/aws/.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from tenantscope import (
    CrossTenantAccess,
    NoTenantContext,
    Reason,
    StsUnreachable,
    _aws,
    api_handler,
    current_tenant,
    tenant_key,
    tenant_scope,
    tenant_session,
    tenant_table,
)
from tenantscope._config import get_settings
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache
from tenantscope._keyring import SecretsManagerKeyRing
from tenantscope.testing import KEY_ID, RING_DOCUMENT, LocalIssuer, reset_process_state
from tests.conftest import REGION, ROLE_ARN, TABLE, LambdaContext, http_api_event
from tests.integration.conftest import assumed_roles, sent_headers
from tests.leaks import assert_no_secret_in


def test_each_tenant_reads_and_writes_only_its_own_partition(sts_vendor: CredentialVendor) -> None:
    for tenant in ("acme", "acme-corp"):
        with tenant_scope(tenant):
            tenant_table(TABLE).put_item(Item={"pk": tenant_key("ITEM", "1"), "sk": "A", "owner": tenant})
    with tenant_scope("acme"):
        table = tenant_table(TABLE)
        own = table.get_item(Key={"pk": tenant_key("ITEM", "1"), "sk": "A"})["Item"]
        assert own["owner"] == "acme"
        listed = table.query(
            KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": tenant_key("ITEM", "1")}
        )
        assert [i["owner"] for i in listed["Items"]] == ["acme"]
        with pytest.raises(CrossTenantAccess):
            table.get_item(Key={"pk": "TENANT#acme-corp#ITEM#1", "sk": "A"})
        with pytest.raises(CrossTenantAccess):
            table.scan()


def test_a_placeholder_outside_dynamodbs_grammar_cannot_read_another_partition(
    sts_vendor: CredentialVendor,
) -> None:
    # GIVEN acme's and globex's items, and a query whose placeholder :g-1 moto reads whole
    for tenant in ("acme", "globex"):
        with tenant_scope(tenant):
            tenant_table(TABLE).put_item(Item={"pk": tenant_key("ITEM"), "sk": "1", "owner": tenant})
    with tenant_scope("acme"):
        table = tenant_table(TABLE)
        # WHEN acme's code sends it with :g (its own partition) and :g-1 (globex's)
        with pytest.raises(CrossTenantAccess, match="cannot read exactly"):
            table.query(
                KeyConditionExpression="pk = :g-1",
                ExpressionAttributeValues={":g": tenant_key("ITEM"), ":g-1": "TENANT#globex#ITEM"},
            )
        # THEN it is refused; boto3's own condition builder is read and works
        built = table.query(
            KeyConditionExpression=Key("pk").eq(tenant_key("ITEM")) & Key("sk").begins_with("1")
        )
        assert [item["owner"] for item in built["Items"]] == ["acme"]


def test_the_low_level_client_is_guarded_too(sts_vendor: CredentialVendor) -> None:
    with tenant_scope("acme"):
        client = tenant_session().client("dynamodb")
        client.put_item(TableName=TABLE, Item={"pk": {"S": "TENANT#acme#X"}, "sk": {"S": "1"}})
        for call in (
            lambda: client.get_item(TableName=TABLE, Key={"pk": {"S": "TENANT#globex#X"}, "sk": {"S": "1"}}),
            lambda: client.scan(TableName=TABLE),
            lambda: client.execute_statement(Statement=f'SELECT * FROM "{TABLE}"'),
            lambda: client.delete_table(TableName=TABLE),
        ):
            with pytest.raises(CrossTenantAccess):
                call()
    # The table is intact: the refused calls never reached DynamoDB.
    assert boto3.client("dynamodb", region_name=REGION).describe_table(TableName=TABLE)["Table"]


def test_sessions_use_the_vended_credentials_never_the_function_role(sts_vendor: CredentialVendor) -> None:
    with tenant_scope("acme"):
        frozen = tenant_session().get_credentials().get_frozen_credentials()
    served = assumed_roles()[-1]
    assert frozen.access_key == served.access_key_id
    assert frozen.access_key != "testing-function-role"
    assert served.session_name == "acme"
    assert served.role_arn == ROLE_ARN


@pytest.mark.parametrize("service", ["dynamodbstreams", "sts", "iam", "sqs", "s3control"])
def test_a_tenant_session_makes_no_client_the_guard_does_not_understand(
    sts_vendor: CredentialVendor, service: str
) -> None:
    # The pooled table's stream carries every tenant's writes, and nothing would guard it.
    with tenant_scope("acme"):
        session = tenant_session()
        for make in (session.client, session._session.create_client):
            with pytest.raises(CrossTenantAccess) as refused:
                make(service, region_name=REGION)
            assert (refused.value.reason, refused.value.detail) == (Reason.UNGUARDED_SERVICE, service)


def test_an_explicitly_unguarded_service_is_made_on_the_tenant_credentials(
    monkeypatch: pytest.MonkeyPatch, sts_vendor: CredentialVendor
) -> None:
    # GIVEN a deployer who lists sts as a service the tenant role's IAM alone may govern
    monkeypatch.setenv("TENANTSCOPE_UNGUARDED_SERVICES", "sts")
    reset_process_state()
    with tenant_scope("acme"):
        identity = tenant_session().client("sts").get_caller_identity()
        with pytest.raises(CrossTenantAccess, match=r"unguarded service \(dynamodbstreams\)"):
            tenant_session().client("dynamodbstreams")
    # THEN it runs as the tenant's session of the tenant role, not as the function
    assert identity["Arn"].endswith(":assumed-role/tenantscope-tenant/acme")


def test_an_unguarded_client_kept_past_its_scope_acts_for_no_other_tenant(
    monkeypatch: pytest.MonkeyPatch, sts_vendor: CredentialVendor
) -> None:
    # GIVEN an sts client (unguarded: no guard reads its requests) made in acme's scope and kept
    monkeypatch.setenv("TENANTSCOPE_UNGUARDED_SERVICES", "sts")
    reset_process_state()
    with tenant_scope("acme"):
        kept = tenant_session().client("sts")
        assert kept.get_caller_identity()["Arn"].endswith("/acme")
    # WHEN it is used in globex's unit of work, or in none, THEN it refuses to act as acme
    with tenant_scope("globex"), pytest.raises(CrossTenantAccess) as foreign:
        kept.get_caller_identity()
    assert foreign.value.reason is Reason.FOREIGN_SCOPE
    with pytest.raises(NoTenantContext):
        kept.get_caller_identity()


def test_tenant_clients_can_never_fall_back_to_the_function_role(sts_vendor: CredentialVendor) -> None:
    # GIVEN the function's own credentials in the environment (as in Lambda), and a tenant
    # session whose credentials cannot be had
    def unavailable() -> Any:
        raise StsUnreachable(Reason.STS_UNREACHABLE)

    session = _aws.tenant_boto3_session(REGION, unavailable)
    table = _aws.tenant_resource(session, "dynamodb").Table(TABLE)
    # WHEN it is used THEN it fails with the vendor's error, rather than sign with the function's
    with pytest.raises(StsUnreachable):
        table.get_item(Key={"pk": "TENANT#acme", "sk": "A"})
    assert _aws.base_session().get_credentials() is not None  # the function role is right there
    # AND the tenant's is its session's only credential provider
    resolver = session._session.get_component("credential_provider")
    assert [type(provider) for provider in resolver.providers] == [_aws.TenantCredentials]


def test_a_kept_table_is_useless_after_its_scope(sts_vendor: CredentialVendor) -> None:
    with tenant_scope("acme"):
        kept = tenant_table(TABLE)
    with pytest.raises(NoTenantContext):
        kept.get_item(Key={"pk": "TENANT#acme#ITEM#1", "sk": "A"})
    with tenant_scope("globex"), pytest.raises(CrossTenantAccess):
        kept.get_item(Key={"pk": "TENANT#acme#ITEM#1", "sk": "A"})


def test_sessions_and_tables_are_kept_per_tenant_and_sign_with_its_current_credentials(
    sts_vendor: CredentialVendor,
) -> None:
    # GIVEN acme's session and table, then globex's, in a container that serves both in turn
    with tenant_scope("acme"):
        first = (tenant_session(), tenant_table(TABLE))
    with tenant_scope("globex"):
        other = (tenant_session(), tenant_table(TABLE))
    # WHEN acme is served again THEN it gets the ones made for it: each tenant keeps its own
    with tenant_scope("acme"):
        second = (tenant_session(), tenant_table(TABLE))
    assert first[0] is second[0] and first[1] is second[1]
    assert other[0] is not first[0] and other[1] is not first[1]
    # AND once its credentials are replaced, as after a refresh, the same table signs with the new ones
    with tenant_scope("acme"):
        before = signing_key(first[1])
        sts_vendor.clear()
        after = signing_key(first[1])
        assert tenant_table(TABLE) is first[1]
    assert before != after and len(assumed_roles()) == 3


def test_a_small_function_keeps_fewer_tenants_and_drops_the_least_recently_used(
    sts_vendor: CredentialVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a function of Lambda's smallest memory, 128 MB: room for 32 tenants' sessions
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    tenants = [f"tenant-{n}" for n in range(33)]
    kept = {}
    for tenant in tenants[:32]:
        with tenant_scope(tenant):
            kept[tenant] = tenant_session()
    # WHEN the first is used again, then a 33rd tenant comes
    with tenant_scope(tenants[0]):
        assert tenant_session() is kept[tenants[0]]
    with tenant_scope(tenants[32]):
        tenant_session()
    # THEN the least recently used (the second) was dropped and is built again; the others are kept
    with tenant_scope(tenants[1]):
        assert tenant_session() is not kept[tenants[1]]
    for tenant in (tenants[0], *tenants[3:32]):
        with tenant_scope(tenant):
            assert tenant_session() is kept[tenant], tenant
    # AND dropping a tenant's session kept its credentials: STS was asked once per tenant
    assert len(assumed_roles()) == 33


def test_a_bound_that_keeps_no_tenant_fails_the_unit_as_misconfigured(
    issuer: LocalIssuer, jwks: JwksCache, sts_vendor: CredentialVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTSCOPE_MAX_KEPT_TENANTS", "0")

    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        tenant_table(TABLE).get_item(Key={"pk": tenant_key("ITEM", "1"), "sk": "A"})
        return {"statusCode": 200}

    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 500
    assert "TENANTSCOPE" not in response["body"]


def signing_key(table: Any) -> str:
    """The access key id ``table``'s next request is signed with."""
    headers = sent_headers(
        table.meta.client, lambda: table.get_item(Key={"pk": tenant_key("ITEM", "1"), "sk": "A"})
    )
    return headers["Authorization"].split("Credential=")[1].split("/")[0]


def test_partition_key_comes_from_describe_table_when_not_configured(
    monkeypatch: pytest.MonkeyPatch, sts_vendor: CredentialVendor
) -> None:
    monkeypatch.setenv("TENANTSCOPE_TABLES", TABLE)
    reset_process_state()
    with tenant_scope("acme"):
        tenant_table(TABLE).put_item(Item={"pk": "TENANT#acme#1", "sk": "A"})
        with pytest.raises(CrossTenantAccess):
            tenant_table(TABLE).put_item(Item={"pk": "TENANT#globex#1", "sk": "A"})


def test_an_upsert_cannot_file_an_item_in_another_tenants_partition_of_an_inverted_index(
    monkeypatch: pytest.MonkeyPatch, sts_vendor: CredentialVendor
) -> None:
    # GIVEN a table whose index is keyed on the table's sort key, learned from DescribeTable
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="inverted",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-sk",
                "KeySchema": [{"AttributeName": "sk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("TENANTSCOPE_TABLES", f"{TABLE}=pk,inverted")
    reset_process_state()
    foreign = "TENANT#globex#INJECTED"
    # WHEN acme updates a key of its own partition whose sort key is globex's, which creates the item
    with tenant_scope("acme"):
        table = tenant_table("inverted")
        with pytest.raises(CrossTenantAccess) as refused:
            table.update_item(
                Key={"pk": tenant_key("ORDER", "1"), "sk": foreign},
                UpdateExpression="SET note = :n",
                ExpressionAttributeValues={":n": "from acme"},
            )
        assert refused.value.reason is Reason.FOREIGN_KEY
        table.update_item(  # its own sort key: allowed, and it lands
            Key={"pk": tenant_key("ORDER", "1"), "sk": tenant_key("ORDER", "1")},
            UpdateExpression="SET note = :n",
            ExpressionAttributeValues={":n": "from acme"},
        )
    # THEN globex's partition of the index holds nothing of acme's
    with tenant_scope("globex"):
        found = tenant_table("inverted").query(
            IndexName="by-sk", KeyConditionExpression=Key("sk").eq(foreign)
        )
        assert found["Items"] == []
    with tenant_scope("acme"):
        own = tenant_table("inverted").query(
            IndexName="by-sk", KeyConditionExpression=Key("sk").eq(tenant_key("ORDER", "1"))
        )
        assert [item["note"] for item in own["Items"]] == ["from acme"]


def test_at_debug_level_no_credential_key_or_item_reaches_a_log_line(
    sts_vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a function whose log level is DEBUG (Lambda's ApplicationLogLevel), whose key ring is
    # in Secrets Manager
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="ring", SecretString=json.dumps(RING_DOCUMENT)
    )
    caplog.set_level(logging.DEBUG)
    # WHEN a tenant's credentials are vended and used, and the ring is read
    item_text = "acme's private note"
    with tenant_scope("acme"):
        tenant_table(TABLE).put_item(Item={"pk": tenant_key("ITEM", "1"), "sk": "A", "note": item_text})
        tenant_table(TABLE).get_item(Key={"pk": tenant_key("ITEM", "1"), "sk": "A"})
        tenant_table(TABLE).query(KeyConditionExpression=Key("pk").eq(tenant_key("ITEM", "1")))
    credentials = sts_vendor.credentials_for("acme", get_settings())  # the ones cached above
    assert SecretsManagerKeyRing("ring", region=REGION).active_key_id() == KEY_ID
    # THEN botocore did log at DEBUG, and no line holds the credentials, the signing key or the item
    assert any(r.name.startswith("botocore.") and r.levelno == logging.DEBUG for r in caplog.records)
    secrets = [credentials.secret_access_key, credentials.session_token, *RING_DOCUMENT["keys"].values()]
    assert_no_secret_in(caplog.text, [*secrets, item_text], "logs")


def test_session_policy_strategy_sends_the_policy_to_sts(
    monkeypatch: pytest.MonkeyPatch, sts_vendor: CredentialVendor
) -> None:
    monkeypatch.setenv("TENANTSCOPE_ISOLATION", "session-policy")
    reset_process_state()
    with tenant_scope("acme"):
        tenant_table(TABLE).put_item(Item={"pk": "TENANT#acme", "sk": "A"})
    policy = json.loads(assumed_roles()[-1].policy)
    condition = policy["Statement"][0]["Condition"]
    assert condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["TENANT#acme", "TENANT#acme#*"]


def test_thousand_invocations_over_ten_tenants_make_ten_assume_role_calls(
    issuer: LocalIssuer, jwks: JwksCache, sts_vendor: CredentialVendor
) -> None:
    # GIVEN one deployed handler that writes and reads its tenant's item
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        table = tenant_table(TABLE)
        table.put_item(Item={"pk": tenant_key("COUNTER"), "sk": "n"})
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    tenants = [f"tenant-{n}" for n in range(10)]
    tokens = {t: issuer.token(t) for t in tenants}
    before = len(assumed_roles())
    # WHEN 1,000 requests arrive, interleaved across the tenants
    for n in range(1000):
        tenant = tenants[n % 10]
        assert handler(http_api_event(tokens[tenant]), LambdaContext())["body"] == tenant
    # THEN STS was asked exactly once per tenant
    served = assumed_roles()[before:]
    assert len(served) == 10
    assert sorted(r.session_name for r in served) == sorted(tenants)


def test_a_unit_of_work_that_outlives_its_credentials_goes_on_with_fresh_ones(
    issuer: LocalIssuer, jwks: JwksCache, aws: None
) -> None:
    # GIVEN a handler whose vendor's credentials last an hour and are replaced 5 minutes before
    # they expire, and whose unit of work keeps its table while the clock runs past that
    now = [time.time()]
    sts = FakeSts(clock=lambda: now[0])
    vendor = CredentialVendor(sts, clock=lambda: now[0])
    keys: list[str] = []

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        table = tenant_table(TABLE)
        keys.append(signing_key(table))
        now[0] += 3600 - 200  # a long unit: its first credentials are now within the margin
        keys.append(signing_key(table))
        return {"statusCode": 200}

    # WHEN it runs THEN its last request is signed with new credentials of the same tenant
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert keys == ["ASIAFAKE000000000001", "ASIAFAKE000000000002"]
    assert [request.tenant_id for request in sts.requests] == ["acme", "acme"]


def test_a_unit_that_crosses_the_margin_while_sts_is_down_goes_on_while_its_credentials_last(
    issuer: LocalIssuer, jwks: JwksCache, aws: None
) -> None:
    # GIVEN a handler whose unit of work starts 20 s before its credentials enter the refresh
    # margin, and STS going down in the middle of it
    now = [time.time()]
    sts = FakeSts(clock=lambda: now[0])
    vendor = CredentialVendor(sts, clock=lambda: now[0], sleep=lambda _: None)
    written: list[str] = []

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        kept = tenant_table(TABLE)
        for step in ("first", "second"):
            kept.put_item(Item={"pk": tenant_key("STEP"), "sk": step})
            tenant_table(TABLE).put_item(Item={"pk": tenant_key("STEP"), "sk": f"{step}-again"})
            written.append(step)
            sts.unreachable_next = 1_000
            now[0] += 20
        return {"statusCode": 200}

    vendor.credentials_for("acme", get_settings())
    now[0] += 3600 - 300 - 20
    # WHEN it runs THEN it finishes: its requests are signed with the credentials it began with
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert written == ["first", "second"]
    # AND a unit of work starting now, which may need longer than they have left, is refused
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 503


def test_a_kept_credentials_object_vends_nothing_outside_its_tenants_scope(
    sts_vendor: CredentialVendor,
) -> None:
    # GIVEN acme's credentials object, as botocore hands it to whoever asks, kept past acme's scope
    with tenant_scope("acme"):
        kept = tenant_session().get_credentials()
        assert kept.get_frozen_credentials().access_key
    served = len(assumed_roles())
    # WHEN it is asked for credentials in globex's scope, or in none
    # THEN it refuses, and STS is not asked for acme's
    with tenant_scope("globex"), pytest.raises(CrossTenantAccess):
        kept.get_frozen_credentials()
    with pytest.raises(NoTenantContext):
        kept.get_frozen_credentials()
    assert len(assumed_roles()) == served


def test_the_clients_tenant_code_makes_keep_botocores_timeouts(sts_vendor: CredentialVendor) -> None:
    # GIVEN a tenant's table, which tenantscope makes, and an S3 client its code makes
    with tenant_scope("acme"):
        made_here = tenant_table(TABLE).meta.client.meta.config
        made_by_the_tenant = tenant_session().client("s3").meta.config
    # THEN the first gives up quickly, and the second is as the tenant's code asked: botocore's
    assert (made_here.connect_timeout, made_here.read_timeout) == (1, 3)
    assert (made_by_the_tenant.connect_timeout, made_by_the_tenant.read_timeout) == (60, 60)
