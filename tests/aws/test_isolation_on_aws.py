"""Tenant isolation enforced by IAM itself, on a real deployment of template.yaml.

moto ignores session policies and session tags, so only real AWS can show this. The suite reads the
stack's outputs, assumes the tenant role for two fresh tenants with exactly the AssumeRole request
tenantscope builds (:func:`tenantscope._policy.assume_role_request`, for the deployed isolation
strategy), and then uses raw boto3 DynamoDB and S3 clients and plain HTTP for presigned URLs, NOT
the tenantscope guards, so that every refusal below comes from IAM (or the bucket policy). Tenant A's
id is a prefix of tenant B's (``acme-x`` and ``acme-x-corp``), so the ``#`` after the id in the
leading-key patterns, and the ``/`` after it in the object prefix, are tested too.

Skipped unless ``TENANTSCOPE_STACK_NAME`` and real AWS credentials are set; see conftest.py for the
permissions the caller needs and for ``TENANTSCOPE_TEST_ROLE_ARN`` and ``TENANTSCOPE_ISOLATION``.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import BotoCoreError, ClientError

from tenantscope import tenant_bucket, tenant_scope
from tenantscope._aws import tenant_client
from tenantscope._config import ISOLATION_STRATEGIES, Settings, TableSpec
from tenantscope._credentials import Boto3Sts, CredentialVendor, set_default_vendor
from tenantscope._policy import assume_role_request, tenant_object_prefix
from tenantscope.testing import reset_process_state
from tests.aws.conftest import ISOLATION_ENV, TEST_ROLE_ENV, Target

pytestmark = pytest.mark.aws

RUN = uuid.uuid4().hex[:8]
TENANTS = {"A": f"acme-{RUN}", "B": f"acme-{RUN}-corp"}
ACCESS_DENIED = "AccessDeniedException"
S3_DENIED = {"AccessDenied", "403"}  # HEAD responses have no body, so botocore reports the status


@dataclass(frozen=True)
class Stack:
    target: Target
    table: str
    bucket: str
    tenant_role_arn: str
    isolation: str


def _error_code(error: Exception) -> str:
    return error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__


# IAM is eventually consistent: a stack just created or updated (a role added to
# IsolationTestRoleArns, the tenant role's policy) can refuse the first calls for a while. Only the
# calls that must SUCCEED (setup on the tenant's own data) wait for it; no refusal is ever retried.
PROPAGATION_SECONDS = float(os.environ.get("TENANTSCOPE_IAM_PROPAGATION_SECONDS", "120"))
_NOT_YET = {"AccessDenied", "AccessDeniedException"}


def _eventually(call: Callable[..., Any], **params: Any) -> Any:
    deadline = time.monotonic() + PROPAGATION_SECONDS
    delay = 1.0
    while True:
        try:
            return call(**params)
        except ClientError as error:
            if _error_code(error) not in _NOT_YET or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def _deployed_isolation(target: Target) -> str:
    """TENANTSCOPE_ISOLATION, or the TENANTSCOPE_ISOLATION of a deployed function of the stack."""
    configured = os.environ.get(ISOLATION_ENV, "").strip()
    if configured:
        assert configured in ISOLATION_STRATEGIES, f"{ISOLATION_ENV} must be one of {ISOLATION_STRATEGIES}"
        return configured
    try:
        pages = target.client("cloudformation").get_paginator("list_stack_resources")
        functions = [
            resource["PhysicalResourceId"]
            for page in pages.paginate(StackName=target.stack_name)
            for resource in page["StackResourceSummaries"]
            if resource["ResourceType"] == "AWS::Lambda::Function"
        ]
        for function in functions:
            config = target.client("lambda").get_function_configuration(FunctionName=function)
            value = config.get("Environment", {}).get("Variables", {}).get("TENANTSCOPE_ISOLATION")
            if value:
                return str(value)
    except (BotoCoreError, ClientError) as error:
        pytest.fail(
            f"could not read the deployed isolation strategy ({_error_code(error)}): set "
            f"{ISOLATION_ENV}=session-tags or session-policy, as deployed"
        )
    pytest.fail(f"no function of {target.stack_name} sets TENANTSCOPE_ISOLATION; set {ISOLATION_ENV}")


@pytest.fixture(scope="session")
def stack(aws_target: Target) -> Stack:
    try:
        (description,) = aws_target.client("cloudformation").describe_stacks(StackName=aws_target.stack_name)[
            "Stacks"
        ]
    except ClientError as error:
        pytest.fail(
            f"cannot describe stack {aws_target.stack_name} in {aws_target.region} "
            f"as {aws_target.caller_arn}: {_error_code(error)}"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    missing = {"AppTableName", "FilesBucketName", "TenantRoleArn"} - set(outputs)
    assert not missing, (
        f"{aws_target.stack_name} lacks outputs {sorted(missing)}: deploy the current template"
    )
    return Stack(
        aws_target,
        outputs["AppTableName"],
        outputs["FilesBucketName"],
        outputs["TenantRoleArn"],
        _deployed_isolation(aws_target),
    )


def _assumer(stack: Stack) -> Any:
    """The STS client that assumes the tenant role: the caller's, or TENANTSCOPE_TEST_ROLE_ARN's."""
    sts = stack.target.client("sts")
    test_role = os.environ.get(TEST_ROLE_ENV, "").strip()
    if not test_role:
        return sts
    try:
        credentials = _eventually(
            sts.assume_role, RoleArn=test_role, RoleSessionName="tenantscope-aws-tests"
        )["Credentials"]
    except ClientError as error:
        pytest.fail(f"cannot assume {TEST_ROLE_ENV}={test_role} ({_error_code(error)})")
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=stack.target.region,
    ).client("sts")


def _settings(stack: Stack) -> Settings:
    """tenantscope's settings for the deployed stack."""
    return Settings.load(
        environ={},
        role_arn=stack.tenant_role_arn,
        isolation=stack.isolation,
        tables=(TableSpec(stack.table, "pk"),),
        buckets=(stack.bucket,),
        region=stack.target.region,
    )


@pytest.fixture(scope="session")
def tenant_sessions(stack: Stack) -> dict[str, Any]:
    """A boto3 session per tenant, scoped by IAM to that tenant (the request tenantscope builds)."""
    sts = _assumer(stack)
    sessions = {}
    for label, tenant in TENANTS.items():
        request = assume_role_request(tenant, _settings(stack))
        try:
            credentials = _eventually(sts.assume_role, **request.to_boto3())["Credentials"]
        except ClientError as error:
            pytest.fail(
                f"cannot assume {stack.tenant_role_arn} ({_error_code(error)}): its trust policy admits only "
                f"the stack's function roles and its IsolationTestRoleArns; deploy the stack with a test "
                f"role there and set {TEST_ROLE_ENV} to it"
            )
        sessions[label] = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=stack.target.region,
        )
    return sessions


@pytest.mark.usefixtures("tenant_sessions")  # the caller may assume the role with tenantscope's request
def test_a_session_for_no_tenant_is_refused_by_the_trust_policy(stack: Stack) -> None:
    # GIVEN tenantscope's own request for a tenant, which the trust policy admits
    request = assume_role_request(TENANTS["B"], _settings(stack)).to_boto3()
    sts = _assumer(stack)
    # THEN the same request without the tenant tag, or without the source identity, is refused
    for missing in ("Tags", "SourceIdentity"):
        with pytest.raises(ClientError) as refused:
            sts.assume_role(**{k: v for k, v in request.items() if k != missing})
        assert _error_code(refused.value) == "AccessDenied", missing


def _key(label: str) -> dict[str, Any]:
    return {"pk": {"S": f"TENANT#{TENANTS[label]}#ITEM"}, "sk": {"S": f"aws-probe-{RUN}"}}


@pytest.fixture(scope="session")
def probe_items(stack: Stack, tenant_sessions: dict[str, Any]) -> Iterator[None]:
    """Each tenant writes one item under its own keys, and deletes it at the end (also when a later
    tenant's write failed: what was written is deleted)."""
    written = []
    try:
        for label, session in tenant_sessions.items():
            item = {**_key(label), "owner": {"S": TENANTS[label]}}
            dynamodb = session.client("dynamodb")
            _eventually(dynamodb.put_item, TableName=stack.table, Item=item)
            written.append(label)
        yield
    finally:
        for label in written:
            tenant_sessions[label].client("dynamodb").delete_item(TableName=stack.table, Key=_key(label))


def _owner(stack: Stack, session: Any, label: str) -> str | None:
    item = session.client("dynamodb").get_item(TableName=stack.table, Key=_key(label), ConsistentRead=True)
    owner = item.get("Item", {}).get("owner", {}).get("S")
    return str(owner) if owner is not None else None


def test_the_scoped_session_is_the_tenant_role_for_that_tenant(
    stack: Stack, tenant_sessions: dict[str, Any]
) -> None:
    role_name = stack.tenant_role_arn.rsplit("/", 1)[-1]
    arn = tenant_sessions["B"].client("sts").get_caller_identity()["Arn"]
    assert arn.endswith(f":assumed-role/{role_name}/{TENANTS['B']}"), arn


@pytest.mark.usefixtures("probe_items")
def test_a_tenant_reads_and_writes_its_own_keys(stack: Stack, tenant_sessions: dict[str, Any]) -> None:
    dynamodb = tenant_sessions["B"].client("dynamodb")
    assert _owner(stack, tenant_sessions["B"], "B") == TENANTS["B"]
    dynamodb.put_item(
        TableName=stack.table, Item={**_key("B"), "owner": {"S": TENANTS["B"]}, "n": {"N": "2"}}
    )
    result = dynamodb.query(
        TableName=stack.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": _key("B")["pk"]},
        ConsistentRead=True,
    )
    assert result["Count"] >= 1


def _cross_tenant_call(
    stack: Stack, dynamodb: Any, victim: str, attacker: str, operation: str
) -> Callable[[], Any]:
    calls: dict[str, Callable[[], Any]] = {
        "GetItem": lambda: dynamodb.get_item(TableName=stack.table, Key=_key(victim)),
        "Query": lambda: dynamodb.query(
            TableName=stack.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _key(victim)["pk"]},
        ),
        "PutItem": lambda: dynamodb.put_item(
            TableName=stack.table, Item={**_key(victim), "owner": {"S": TENANTS[attacker]}}
        ),
        "UpdateItem": lambda: dynamodb.update_item(
            TableName=stack.table,
            Key=_key(victim),
            UpdateExpression="SET #o = :o",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":o": {"S": TENANTS[attacker]}},
        ),
        "DeleteItem": lambda: dynamodb.delete_item(TableName=stack.table, Key=_key(victim)),
        # One of the attacker's own keys beside the victim's: the only requests with several
        # leading keys, where ForAllValues (every key must be the tenant's) and ForAnyValue (one
        # is enough) differ. IAM authorizes the batch as a whole, so the whole call is refused.
        "BatchGetItem": lambda: dynamodb.batch_get_item(
            RequestItems={stack.table: {"Keys": [_key(attacker), _key(victim)]}}
        ),
        "BatchWriteItem": lambda: dynamodb.batch_write_item(
            RequestItems={
                stack.table: [
                    {"PutRequest": {"Item": {**_key(attacker), "owner": {"S": TENANTS[attacker]}}}},
                    {"PutRequest": {"Item": {**_key(victim), "owner": {"S": TENANTS[attacker]}}}},
                ]
            }
        ),
    }
    return calls[operation]


@pytest.mark.usefixtures("probe_items")
@pytest.mark.parametrize(
    "operation", ["GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem"]
)
@pytest.mark.parametrize(("attacker", "victim"), [("B", "A"), ("A", "B")], ids=["B-on-A", "A-on-B"])
def test_another_tenants_keys_are_access_denied(
    stack: Stack, tenant_sessions: dict[str, Any], attacker: str, victim: str, operation: str
) -> None:

    call = _cross_tenant_call(
        stack, tenant_sessions[attacker].client("dynamodb"), victim, attacker, operation
    )
    with pytest.raises(ClientError) as raised:
        call()
    assert _error_code(raised.value) == ACCESS_DENIED
    assert _owner(stack, tenant_sessions[victim], victim) == TENANTS[victim], "the victim's item changed"


@pytest.mark.usefixtures("probe_items")
def test_scan_is_access_denied(stack: Stack, tenant_sessions: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        tenant_sessions["B"].client("dynamodb").scan(TableName=stack.table, Limit=1)
    assert _error_code(raised.value) == ACCESS_DENIED


@pytest.mark.usefixtures("probe_items")
def test_partiql_is_access_denied_even_on_own_keys(stack: Stack, tenant_sessions: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        tenant_sessions["B"].client("dynamodb").execute_statement(
            Statement=f'SELECT * FROM "{stack.table}" WHERE pk = ?', Parameters=[_key("B")["pk"]]
        )
    assert _error_code(raised.value) == ACCESS_DENIED


# --- tenant files -------------------------------------------------------------------------------


def _object(label: str, name: str = f"aws-probe-{RUN}.txt") -> str:
    return f"{tenant_object_prefix(TENANTS[label])}{name}"


@pytest.fixture(scope="session")
def probe_objects(stack: Stack, tenant_sessions: dict[str, Any]) -> Iterator[None]:
    """Each tenant writes one object under its own prefix, and deletes it at the end (the bucket's
    lifecycle rule expires the noncurrent version: the tenant role may not delete versions), also
    when a later tenant's write failed."""
    written = []
    try:
        for label, session in tenant_sessions.items():
            s3 = session.client("s3")
            _eventually(s3.put_object, Bucket=stack.bucket, Key=_object(label), Body=TENANTS[label].encode())
            written.append(label)
        yield
    finally:
        for label in written:
            tenant_sessions[label].client("s3").delete_object(Bucket=stack.bucket, Key=_object(label))


def _s3_denied(call: Callable[[], Any]) -> None:
    with pytest.raises(ClientError) as raised:
        call()
    assert _error_code(raised.value) in S3_DENIED, _error_code(raised.value)


def _http_status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.usefixtures("probe_objects")
def test_a_tenant_reads_writes_and_lists_its_own_objects(
    stack: Stack, tenant_sessions: dict[str, Any]
) -> None:
    s3 = tenant_sessions["A"].client("s3")
    assert s3.get_object(Bucket=stack.bucket, Key=_object("A"))["Body"].read() == TENANTS["A"].encode()
    s3.copy_object(
        Bucket=stack.bucket,
        Key=_object("A", "copy.txt"),
        CopySource={"Bucket": stack.bucket, "Key": _object("A")},
    )
    s3.delete_object(Bucket=stack.bucket, Key=_object("A", "copy.txt"))
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=tenant_object_prefix(TENANTS["A"]))
    # B's id starts with A's: B's objects must not be listed under A's prefix
    assert {item["Key"] for item in listed.get("Contents", [])} >= {_object("A")}
    assert all(
        item["Key"].startswith(tenant_object_prefix(TENANTS["A"])) for item in listed.get("Contents", [])
    )


@pytest.mark.usefixtures("probe_objects")
@pytest.mark.parametrize("operation", ["GetObject", "HeadObject", "PutObject", "DeleteObject", "CopyFrom"])
@pytest.mark.parametrize(("attacker", "victim"), [("B", "A"), ("A", "B")], ids=["B-on-A", "A-on-B"])
def test_another_tenants_objects_are_access_denied(
    stack: Stack, tenant_sessions: dict[str, Any], attacker: str, victim: str, operation: str
) -> None:
    s3, key = tenant_sessions[attacker].client("s3"), _object(victim)
    calls: dict[str, Callable[[], Any]] = {
        "GetObject": lambda: s3.get_object(Bucket=stack.bucket, Key=key),
        "HeadObject": lambda: s3.head_object(Bucket=stack.bucket, Key=key),
        "PutObject": lambda: s3.put_object(Bucket=stack.bucket, Key=key, Body=b"overwritten"),
        "DeleteObject": lambda: s3.delete_object(Bucket=stack.bucket, Key=key),
        "CopyFrom": lambda: s3.copy_object(
            Bucket=stack.bucket,
            Key=_object(attacker, "stolen.txt"),
            CopySource={"Bucket": stack.bucket, "Key": key},
        ),
    }
    _s3_denied(calls[operation])
    victim_s3 = tenant_sessions[victim].client("s3")
    assert victim_s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == TENANTS[victim].encode()


@pytest.mark.usefixtures("probe_objects")
@pytest.mark.parametrize(
    "prefix", [None, "", "tenants/", "tenants", "B", "A-without-slash"], ids=lambda p: f"prefix={p!r}"
)
def test_listing_outside_the_tenants_prefix_is_access_denied(
    stack: Stack, tenant_sessions: dict[str, Any], prefix: str | None
) -> None:
    s3 = tenant_sessions["A"].client("s3")
    named = {"B": tenant_object_prefix(TENANTS["B"]), "A-without-slash": f"tenants/{TENANTS['A']}"}
    params = {"Bucket": stack.bucket}
    if prefix is not None:
        params["Prefix"] = named.get(prefix, prefix)
    _s3_denied(lambda: s3.list_objects_v2(**params))


@pytest.mark.usefixtures("probe_objects")
@pytest.mark.parametrize(
    "operation",
    [
        "PutObjectAcl",
        "GetObjectAcl",
        "GetBucketPolicy",
        "PutBucketPolicy",
        "DeleteBucket",
        "ListObjectVersions",
        "GetObjectVersion",
    ],
)
def test_bucket_acl_and_version_operations_are_access_denied(
    stack: Stack, tenant_sessions: dict[str, Any], operation: str
) -> None:
    s3, own = tenant_sessions["A"].client("s3"), _object("A")
    calls: dict[str, Callable[[], Any]] = {
        "PutObjectAcl": lambda: s3.put_object_acl(Bucket=stack.bucket, Key=own, ACL="public-read"),
        # Reading an ACL is still served under BucketOwnerEnforced: only IAM refuses it.
        "GetObjectAcl": lambda: s3.get_object_acl(Bucket=stack.bucket, Key=own),
        "GetBucketPolicy": lambda: s3.get_bucket_policy(Bucket=stack.bucket),
        "PutBucketPolicy": lambda: s3.put_bucket_policy(Bucket=stack.bucket, Policy="{}"),
        "DeleteBucket": lambda: s3.delete_bucket(Bucket=stack.bucket),
        "ListObjectVersions": lambda: s3.list_object_versions(
            Bucket=stack.bucket, Prefix=tenant_object_prefix(TENANTS["A"])
        ),
        "GetObjectVersion": lambda: s3.get_object(Bucket=stack.bucket, Key=own, VersionId="null"),
    }
    with pytest.raises(ClientError) as raised:
        calls[operation]()
    # A public ACL is refused by the bucket itself (BlockPublicAcls, BucketOwnerEnforced) whatever
    # IAM allows: that probe shows the bucket's settings; GetObjectAcl shows the role's.
    lenient = {"AccessControlListNotSupported"} if operation == "PutObjectAcl" else set()
    assert _error_code(raised.value) in S3_DENIED | lenient


@pytest.mark.usefixtures("probe_objects")
def test_a_presigned_url_reaches_only_the_signing_tenants_objects_and_only_over_tls(
    stack: Stack, tenant_sessions: dict[str, Any]
) -> None:
    # The layer's own S3 client: SigV4 (botocore would sign with SigV2 in the regions that once took
    # it, which a bucket made today refuses) for the bucket's regional host
    s3 = tenant_client(tenant_sessions["A"], "s3")

    def presign(key: str) -> str:
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": stack.bucket, "Key": key}, ExpiresIn=60
        )
        return url

    own = presign(_object("A"))
    assert "X-Amz-Signature=" in own
    assert _http_status(own) == 200
    assert _http_status(presign(_object("B"))) == 403
    assert own.startswith("https://")
    assert (
        _http_status("http://" + own.removeprefix("https://")) == 403
    )  # the bucket policy denies plain HTTP


@pytest.fixture
def tenantscope_on_the_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """tenantscope configured as a deployed function of the stack, vending from the assumer's STS."""
    for name, value in {
        "TENANTSCOPE_ROLE_ARN": stack.tenant_role_arn,
        "TENANTSCOPE_ISOLATION": stack.isolation,
        "TENANTSCOPE_TABLES": f"{stack.table}=pk",
        "TENANTSCOPE_BUCKETS": stack.bucket,
        "AWS_REGION": stack.target.region,
    }.items():
        monkeypatch.setenv(name, value)
    reset_process_state()
    set_default_vendor(CredentialVendor(Boto3Sts(stack.target.region, client=_assumer(stack))))


@pytest.mark.usefixtures("probe_objects", "tenantscope_on_the_stack")
def test_s3_holds_a_presigned_upload_to_its_key_type_and_size(
    stack: Stack, tenant_sessions: dict[str, Any]
) -> None:
    # GIVEN a form for one of A's keys, made by tenantscope on A's scoped credentials
    with tenant_scope(TENANTS["A"]):
        files = tenant_bucket(stack.bucket)
        form = files.presign_upload(f"aws-upload-{RUN}.txt", content_type="text/plain", max_bytes=16)
        download = files.presign_download(f"aws-probe-{RUN}.txt", expires_in=60)

    def post(body: bytes, **changed: str) -> int:
        fields = {**form["fields"], **changed}
        response = requests.post(form["url"], data=fields, files={"file": ("f.txt", body)}, timeout=30)
        return response.status_code

    # THEN S3 refuses a larger file, another content type and another key (the signed policy)
    assert post(b"x" * 17) == 400
    assert post(b"hello", **{"Content-Type": "text/html"}) == 403
    assert post(b"hello", key=_object("B", f"aws-upload-{RUN}.txt")) == 403
    assert post(b"hello", key=_object("A", "elsewhere.txt")) == 403
    # AND accepts exactly what it was made for, which only A can then read
    assert post(b"hello") == 204
    uploaded = {"Bucket": stack.bucket, "Key": _object("A", f"aws-upload-{RUN}.txt")}
    try:
        assert tenant_sessions["A"].client("s3").get_object(**uploaded)["Body"].read() == b"hello"
        _s3_denied(lambda: tenant_sessions["B"].client("s3").get_object(**uploaded))
    finally:
        tenant_sessions["A"].client("s3").delete_object(**uploaded)
    assert _http_status(download) == 200
