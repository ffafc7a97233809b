"""The object guard and presigned URLs, without a network.

The guard is called as botocore calls it (the last ``before-parameter-build.s3`` handler, with the
operation's real model); presigned URLs are made offline on FakeSts credentials. The same shapes
through real clients on moto are in tests/integration/test_files_on_moto.py.
"""

from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.session
import pytest

from tenantscope import (
    CrossTenantAccess,
    FakeSts,
    NoTenantContext,
    Reason,
    tenant_bucket,
    tenant_s3,
    tenant_scope,
)
from tenantscope._config import Settings
from tenantscope._credentials import CredentialVendor, set_default_vendor
from tenantscope._files import MAX_PRESIGN_SECONDS, MAX_UPLOAD_BYTES
from tenantscope._object_guard import MAX_KEY_BYTES, ObjectGuard, check_relative_key, presigned_post_for
from tenantscope.testing import reset_process_state
from tests.conftest import BUCKET

S3 = botocore.session.get_session().get_service_model("s3")
SETTINGS = Settings.load(environ={}, region="us-east-1", buckets=(BUCKET, "exports"))

KEY_OPERATIONS = (
    "GetObject",
    "HeadObject",
    "PutObject",
    "DeleteObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
)
ALLOWED = {*KEY_OPERATIONS, "CopyObject", "UploadPartCopy", "DeleteObjects", "ListObjectsV2"}


def call(operation: str, tenant: str = "acme", scope: str | None = "acme", **params: Any) -> None:
    guard = ObjectGuard(tenant, SETTINGS)
    if scope is None:
        guard(params=params, model=S3.operation_model(operation), context={})
        return
    with tenant_scope(scope):
        guard(params=params, model=S3.operation_model(operation), context={})


def refused(operation: str, **params: Any) -> CrossTenantAccess:
    with pytest.raises(CrossTenantAccess) as raised:
        call(operation, **params)
    return raised.value


# Keys the guard must refuse for tenant acme, and why.
FOREIGN_KEYS = [
    "tenants/acme-corp/x",
    "tenants/acme",
    "tenants/acmex/y",
    "tenants/ACME/x",
    "Tenants/acme/x",
    "tenant/acme/x",
    "acme/x",
    "x/tenants/acme/y",
    "/tenants/acme/x",
    "tenants//acme/x",
    "tenants/",
    "",
]
AMBIGUOUS_KEYS = [
    "tenants/acme/",  # a folder marker: an empty last segment
    "tenants/acme/../acme-corp/x",
    "tenants/acme/..",
    "tenants/acme/./x",
    "tenants/acme//x",
    "tenants/acme/x/",
    "tenants/acme/%2e%2e/acme-corp/x",
    "tenants/acme/..%2Facme-corp%2Fx",
    "tenants/acme/x%00",
    "tenants/acme/\u2215acme-corp",  # DIVISION SLASH
    "tenants/acme/\uff0e\uff0e/x",  # FULLWIDTH FULL STOPs
    "tenants/acme/acme\u200b",  # ZERO WIDTH SPACE
    "tenants/acme/\u0430cme",  # Cyrillic a
    "tenants/acme/x\u0000",
    "tenants/acme/x\n",
    "tenants/acme/ x",
    "tenants/acme/x y",
    "tenants/acme/a\\..\\b",
    "tenants/acme/x?versionId=1",
    "tenants/acme/x#frag",
    "tenants/acme/x~",
    "tenants/acme/" + "a" * (MAX_KEY_BYTES - len("tenants/acme/") + 1),
]


@pytest.mark.parametrize("operation", KEY_OPERATIONS)
def test_own_keys_pass(operation: str) -> None:
    for key in ["tenants/acme/x", "tenants/acme/receipts/2026/order-1.json", "tenants/acme/a!b_c.d*e'(f)-g"]:
        call(operation, Bucket=BUCKET, Key=key, UploadId="u", PartNumber=1)


@pytest.mark.parametrize("operation", KEY_OPERATIONS)
@pytest.mark.parametrize("key", FOREIGN_KEYS)
def test_a_key_outside_the_tenants_prefix_is_refused(operation: str, key: str) -> None:
    assert refused(operation, Bucket=BUCKET, Key=key).reason in (
        Reason.FOREIGN_OBJECT,
        Reason.UNSAFE_OBJECT_KEY,
    )


@pytest.mark.parametrize("key", AMBIGUOUS_KEYS)
def test_an_ambiguous_key_is_refused_even_inside_the_prefix(key: str) -> None:
    # S3 stores each of these literally inside acme's prefix, but a CDN, a sync tool or a browser
    # could read them as another path: the guard refuses what it cannot read one way only.
    for operation in ("GetObject", "PutObject"):
        assert refused(operation, Bucket=BUCKET, Key=key).reason is Reason.UNSAFE_OBJECT_KEY


@pytest.mark.parametrize("key", [None, 1, b"tenants/acme/x", ["tenants/acme/x"]])
def test_a_key_that_is_not_a_string_is_refused(key: object) -> None:
    assert refused("GetObject", Bucket=BUCKET, Key=key).reason is Reason.FOREIGN_OBJECT


@pytest.mark.parametrize(
    "bucket",
    [
        "other",
        f"{BUCKET}-logs",
        BUCKET.upper(),
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:s3:us-east-1:123456789012:accesspoint/{BUCKET}",
        f"{BUCKET}-ap-s3alias",
        "",
        None,
    ],
)
def test_only_a_configured_bucket_is_reached(bucket: object) -> None:
    assert refused("GetObject", Bucket=bucket, Key="tenants/acme/x").reason is Reason.UNCONFIGURED_BUCKET
    call("GetObject", Bucket="exports", Key="tenants/acme/x")  # the second configured bucket


@pytest.mark.parametrize("operation", sorted(set(S3.operation_names) - ALLOWED))
def test_every_other_operation_is_refused(operation: str) -> None:
    # Bucket-level operations, ACLs, policies, versions, tagging, ListObjects v1, SelectObjectContent...
    raised = refused(operation, Bucket=BUCKET, Key="tenants/acme/x", Prefix="tenants/acme/")
    assert (raised.reason, raised.detail) == (Reason.OPERATION_NOT_ALLOWED, operation)


def test_an_operation_unknown_to_this_botocore_is_refused() -> None:
    guard = ObjectGuard("acme", SETTINGS)
    with tenant_scope("acme"), pytest.raises(CrossTenantAccess) as raised:
        guard(params={"Bucket": BUCKET, "Key": "tenants/acme/x"}, model=SimpleNamespace(name="GetObjectV9"))
    assert raised.value.reason is Reason.OPERATION_NOT_ALLOWED


@pytest.mark.parametrize(
    ("operation", "parameter", "value"),
    [
        ("PutObject", "ACL", "public-read"),
        ("PutObject", "GrantRead", "uri=http://acs.amazonaws.com/groups/global/AllUsers"),
        ("PutObject", "GrantFullControl", "id=abc"),
        ("CopyObject", "ACL", "bucket-owner-full-control"),
        ("CreateMultipartUpload", "GrantWriteACP", "id=abc"),
        ("GetObject", "VersionId", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        ("HeadObject", "VersionId", "null"),
        ("DeleteObject", "VersionId", "v1"),
    ],
)
def test_acls_grants_and_versions_are_refused(operation: str, parameter: str, value: str) -> None:
    params = {
        "Bucket": BUCKET,
        "Key": "tenants/acme/x",
        "CopySource": f"{BUCKET}/tenants/acme/y",
        parameter: value,
    }
    raised = refused(operation, **params)
    assert (raised.reason, raised.detail) == (Reason.REFUSED_PARAMETER, parameter)


@pytest.mark.parametrize("operation", ["CopyObject", "UploadPartCopy"])
@pytest.mark.parametrize(
    "source",
    [
        f"{BUCKET}/tenants/acme-corp/x",
        f"{BUCKET}/tenants/acme/../acme-corp/x",
        f"{BUCKET}/tenants/acme/..%2Facme-corp%2Fx",
        f"{BUCKET}/tenants/acme%2F..%2Facme-corp/x",
        f"{BUCKET}%2Ftenants/acme/x",
        f"{BUCKET}/tenants/acme/x?versionId=abc",
        "other/tenants/acme/x",
        "arn:aws:s3:us-east-1:123456789012:accesspoint/ap/object/tenants/acme/x",
        "tenants/acme/x",
        "",
        None,
        {"Bucket": BUCKET, "Key": "tenants/acme/x"},  # botocore has made a string of it by now
    ],
)
def test_a_copy_source_outside_the_tenants_prefix_is_refused(operation: str, source: object) -> None:
    with pytest.raises(CrossTenantAccess):
        call(operation, Bucket=BUCKET, Key="tenants/acme/copy", CopySource=source, UploadId="u", PartNumber=1)


@pytest.mark.parametrize("source", [f"{BUCKET}/tenants/acme/x?versionId=abc", None])
def test_a_copy_source_of_a_version_or_not_a_string_is_refused_as_the_copy_source(source: object) -> None:
    raised = refused("CopyObject", Bucket=BUCKET, Key="tenants/acme/copy", CopySource=source)
    assert (raised.reason, raised.detail) == (Reason.FOREIGN_OBJECT, "copy source")


def test_a_key_of_s3s_longest_passes() -> None:
    call("GetObject", Bucket=BUCKET, Key="tenants/acme/" + "a" * (MAX_KEY_BYTES - len("tenants/acme/")))


def test_a_copy_within_the_prefix_passes_and_its_destination_is_checked() -> None:
    call("CopyObject", Bucket=BUCKET, Key="tenants/acme/copy", CopySource=f"{BUCKET}/tenants/acme/x")
    call("CopyObject", Bucket=BUCKET, Key="tenants/acme/copy", CopySource="exports/tenants/acme/a%21b")
    raised = refused(
        "CopyObject", Bucket=BUCKET, Key="tenants/globex/x", CopySource=f"{BUCKET}/tenants/acme/x"
    )
    assert raised.reason is Reason.FOREIGN_OBJECT


def test_a_batch_delete_with_one_foreign_key_is_refused_whole() -> None:
    own = [{"Key": f"tenants/acme/{i}"} for i in range(5)]
    call("DeleteObjects", Bucket=BUCKET, Delete={"Objects": own})
    for bad in ({"Key": "tenants/globex/1"}, {"Key": "tenants/acme/../globex/1"}, {"Key": None}, "k"):
        with pytest.raises(CrossTenantAccess):
            call("DeleteObjects", Bucket=BUCKET, Delete={"Objects": [*own, bad]})
    raised = refused(
        "DeleteObjects", Bucket=BUCKET, Delete={"Objects": [{"Key": "tenants/acme/1", "VersionId": "v"}]}
    )
    assert (raised.reason, raised.detail) == (Reason.REFUSED_PARAMETER, "VersionId")
    for delete in ({"Objects": []}, {}, None, {"Objects": "tenants/acme/1"}):
        raised = refused("DeleteObjects", Bucket=BUCKET, Delete=delete)
        assert (raised.reason, raised.detail) == (Reason.MALFORMED_REQUEST, "delete objects")


@pytest.mark.parametrize(
    "prefix", ["tenants/acme/", "tenants/acme/receipts/", "tenants/acme/receipts/2026", "tenants/acme/r"]
)
def test_a_listing_under_the_tenants_prefix_passes(prefix: str) -> None:
    call("ListObjectsV2", Bucket=BUCKET, Prefix=prefix, Delimiter="/")


@pytest.mark.parametrize(
    "prefix",
    [
        None,
        "",
        "tenants/",
        "tenants",
        "tenants/acme",  # would list acme-corp's keys too
        "tenants/ac",
        "tenants/acme-corp/",
        "tenants/acme/../",
        "tenants/acme//",
        "tenants/acme/%2e%2e/",
        "*",
    ],
)
def test_a_listing_outside_the_tenants_prefix_or_without_one_is_refused(prefix: object) -> None:
    raised = refused("ListObjectsV2", Bucket=BUCKET, Prefix=prefix)
    # Outside the prefix, named as the listing's; inside it, an unsafe key as any other
    assert (raised.reason, raised.detail) in (
        (Reason.FOREIGN_OBJECT, "list prefix"),
        (Reason.UNSAFE_OBJECT_KEY, None),
    )


def test_the_guard_refuses_outside_its_tenants_scope() -> None:
    # A client made for acme, used in globex's scope or after every scope has ended
    with pytest.raises(CrossTenantAccess) as raised:
        call("GetObject", scope="globex", Bucket=BUCKET, Key="tenants/globex/x")
    assert raised.value.reason is Reason.FOREIGN_SCOPE
    with pytest.raises(NoTenantContext):
        call("GetObject", scope=None, Bucket=BUCKET, Key="tenants/acme/x")


@pytest.mark.parametrize(
    ("key", "as_prefix", "ok"),
    [
        ("receipts/order-1.json", False, True),
        ("a", False, True),
        ("receipts/", False, False),
        ("receipts/", True, True),
        ("", True, False),
        ("/receipts", False, False),
        ("a//b", True, False),
        ("../b", False, False),
        ("a/./b", False, False),
        ("a b", False, False),
        ("é", False, False),
        ("a%2Fb", False, False),
    ],
)
def test_relative_keys(key: str, as_prefix: bool, ok: bool) -> None:
    if ok:
        assert check_relative_key(key, prefix=as_prefix) == key
    else:
        with pytest.raises(CrossTenantAccess):
            check_relative_key(key, prefix=as_prefix)


# --- presigned URLs, made offline on FakeSts credentials ----------------------------------------


@pytest.fixture
def sts() -> FakeSts:
    sts = FakeSts()
    set_default_vendor(CredentialVendor(sts, sleep=lambda _: None))
    return sts


def test_a_presigned_download_is_signed_by_the_tenants_credentials_for_its_key(sts: FakeSts) -> None:
    with tenant_scope("acme"):
        url = tenant_bucket(BUCKET).presign_download("receipts/order-1.json", expires_in=120)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith("/tenants/acme/receipts/order-1.json")
    assert query["X-Amz-Credential"][0].startswith("ASIAFAKE000000000001/")  # acme's vended key
    assert query["X-Amz-Security-Token"] == ["fake-token-acme-1"]
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert [r.tenant_id for r in sts.requests] == ["acme"]


@pytest.mark.parametrize("relative", ["../acme-corp/x", "/x", "a//b", "", "x/", "%2e%2e/x", "ｘ"])
def test_no_presigned_url_leaves_the_tenants_prefix(sts: FakeSts, relative: str) -> None:
    with tenant_scope("acme"):
        files = tenant_bucket(BUCKET)
        with pytest.raises(CrossTenantAccess):
            files.presign_download(relative)
        with pytest.raises(CrossTenantAccess):
            files.presign_upload(relative, content_type="image/png", max_bytes=10)


def test_a_presigned_url_made_by_hand_on_the_client_is_guarded_too(sts: FakeSts) -> None:
    with tenant_scope("acme"):
        s3 = tenant_s3()
        s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "tenants/acme/x"})
        for method, params in [
            ("get_object", {"Bucket": BUCKET, "Key": "tenants/acme-corp/x"}),
            ("put_object", {"Bucket": BUCKET, "Key": "tenants/acme-corp/x"}),
            ("list_objects_v2", {"Bucket": BUCKET}),
            ("put_bucket_policy", {"Bucket": BUCKET, "Policy": "{}"}),
            ("get_object", {"Bucket": "other", "Key": "tenants/acme/x"}),
        ]:
            with pytest.raises(CrossTenantAccess):
                s3.generate_presigned_url(method, Params=params)
        # the method is the checked operation's: HttpMethod cannot make a listing a DeleteBucket
        listing = {"Bucket": BUCKET, "Prefix": "tenants/acme/"}
        s3.generate_presigned_url("list_objects_v2", Params=listing, HttpMethod="GET")
        for method, http_method, params in [
            ("list_objects_v2", "DELETE", listing),
            ("list_objects_v2", "PUT", listing),
            ("get_object", "DELETE", {"Bucket": BUCKET, "Key": "tenants/acme/x"}),
            ("get_object", "PUT", {"Bucket": BUCKET, "Key": "tenants/acme/x"}),
        ]:
            with pytest.raises(CrossTenantAccess) as raised:
                s3.generate_presigned_url(method, Params=params, HttpMethod=http_method)
            assert (raised.value.reason, raised.value.detail) == (
                Reason.OPERATION_NOT_ALLOWED,
                f"presigned {http_method}",
            )
        # a presigned POST's policy is invisible to the guard: only presign_upload may make one
        with pytest.raises(CrossTenantAccess) as raised:
            s3.generate_presigned_post(BUCKET, "tenants/acme/x", Conditions=[["starts-with", "$key", ""]])
        assert (raised.value.reason, raised.value.detail) == (Reason.OPERATION_NOT_ALLOWED, "presigned POST")


def test_a_presigned_post_is_let_through_for_the_approved_bucket_only(sts: FakeSts) -> None:
    with tenant_scope("acme"), presigned_post_for(BUCKET):
        s3 = tenant_s3()
        assert s3.generate_presigned_post(BUCKET, "tenants/acme/x")["fields"]["key"] == "tenants/acme/x"
        # GIVEN another configured bucket WHEN a POST policy is signed for it THEN it is refused
        with pytest.raises(CrossTenantAccess) as raised:
            s3.generate_presigned_post("exports", "tenants/acme/x")
    assert (raised.value.reason, raised.value.detail) == (Reason.OPERATION_NOT_ALLOWED, "presigned POST")


def test_a_presigned_request_the_guard_did_not_check_is_not_signed() -> None:
    def request(method: str, **context: Any) -> Any:
        return SimpleNamespace(method=method, context=context)

    ObjectGuard.check_signed_method(request("DELETE"))  # sent, not presigned: its model's method
    ObjectGuard.check_signed_method(request("GET", is_presign_request=True, tenantscope_checked_method="GET"))
    for unchecked in (
        request("GET", is_presign_request=True),
        request("GET", is_presign_request=True, tenantscope_checked_method="HEAD"),
    ):
        with pytest.raises(CrossTenantAccess):
            ObjectGuard.check_signed_method(unchecked)


def test_a_presigned_upload_is_bound_to_one_key_type_and_size(sts: FakeSts) -> None:
    before = int(time.time())
    with tenant_scope("acme"):
        form = tenant_bucket(BUCKET).presign_upload(
            "items/1/attachment", content_type="image/png", max_bytes=1024, expires_in=60
        )
    after = int(time.time())
    fields = form["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert fields["key"] == "tenants/acme/items/1/attachment"
    assert fields["Content-Type"] == "image/png"
    assert fields["x-amz-credential"].startswith("ASIAFAKE000000000001/")
    assert fields["x-amz-security-token"] == "fake-token-acme-1"
    # Every condition, and nothing else: S3 refuses an upload that fails any of them
    signature = {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-security-token"}
    conditions = policy["conditions"]
    assert [c for c in conditions if not (isinstance(c, dict) and set(c) <= signature)] == [
        ["eq", "$key", "tenants/acme/items/1/attachment"],
        ["eq", "$Content-Type", "image/png"],
        ["content-length-range", 1, 1024],
        {"bucket": BUCKET},
        {"key": "tenants/acme/items/1/attachment"},
    ]
    assert {name for c in conditions if isinstance(c, dict) for name in c} == {"bucket", "key", *signature}
    expiration = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expiration - form["expires_at"]) <= 1
    assert before + 60 <= form["expires_at"] <= after + 60  # 60 s from when it was made


@pytest.mark.parametrize(
    "arguments",
    [
        {"expires_in": 0},
        {"expires_in": -5},
        {"expires_in": MAX_PRESIGN_SECONDS + 1},
        {"expires_in": True},
        {"expires_in": 1.5},
        {"expires_in": "60"},
        {"max_bytes": 0},
        {"max_bytes": MAX_UPLOAD_BYTES + 1},
        {"max_bytes": None},
        {"content_type": "text/html; charset=utf-8"},
        {"content_type": "image/png\r\nx-amz-acl: public-read"},
        {"content_type": ""},
        {"content_type": "IMAGE/PNG"},
        {"content_type": "*/*"},
    ],
)
def test_presigned_upload_bounds(sts: FakeSts, arguments: dict[str, Any]) -> None:
    values = {"content_type": "image/png", "max_bytes": 1024, **arguments}
    with tenant_scope("acme"), pytest.raises(CrossTenantAccess) as raised:
        tenant_bucket(BUCKET).presign_upload("x", **values)
    (bound,) = arguments
    detail = {
        "expires_in": f"expiry must be 1 to {MAX_PRESIGN_SECONDS} seconds",
        "max_bytes": f"size must be 1 to {MAX_UPLOAD_BYTES} bytes",
        "content_type": "content type",
    }[bound]
    assert (raised.value.reason, raised.value.detail) == (Reason.PRESIGN_BOUNDS, detail)


def test_presigned_urls_at_their_bounds_and_by_default(sts: FakeSts) -> None:
    with tenant_scope("acme"):
        bucket = tenant_bucket(BUCKET)
        shortest = bucket.presign_download("x", expires_in=1)
        default = bucket.presign_download("x")
        largest = bucket.presign_upload(
            "x", content_type="text/plain", max_bytes=MAX_UPLOAD_BYTES, expires_in=1
        )
        before = int(time.time())
        form = bucket.presign_upload("x", content_type="text/plain", max_bytes=1)
        after = int(time.time())
    assert [parse_qs(urlsplit(url).query)["X-Amz-Expires"] for url in (shortest, default)] == [["1"], ["300"]]
    policy = json.loads(base64.b64decode(largest["fields"]["policy"]))
    assert ["content-length-range", 1, MAX_UPLOAD_BYTES] in policy["conditions"]
    assert before + 300 <= form["expires_at"] <= after + 300  # five minutes by default


def test_a_url_signed_by_credentials_past_their_expiry_claims_one_second(
    sts: FakeSts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scope outlived its credentials (a long invocation): the URL claims what S3 honours, nothing
    with tenant_scope("acme"):
        bucket = tenant_bucket(BUCKET)
        bucket.presign_download("x")  # the credentials, vended now
        monkeypatch.setattr("tenantscope._files.time.time", lambda: time.time_ns() / 1e9 + 7200)
        url = bucket.presign_download("x", expires_in=60)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["1"]


def test_the_s3_client_is_in_the_settings_region(sts: FakeSts, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the function's region (AWS_REGION) and a different default for AWS's SDKs
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    reset_process_state()
    set_default_vendor(CredentialVendor(sts, sleep=lambda _: None))
    with tenant_scope("acme"):
        assert tenant_s3().meta.region_name == "eu-west-1"


def test_a_presigned_url_never_claims_to_outlive_its_credentials() -> None:
    # GIVEN credentials with ten minutes left
    set_default_vendor(CredentialVendor(FakeSts(duration=600), sleep=lambda _: None))
    with tenant_scope("acme"):
        url = tenant_bucket(BUCKET).presign_download("x", expires_in=MAX_PRESIGN_SECONDS)
        form = tenant_bucket(BUCKET).presign_upload(
            "x", content_type="text/plain", max_bytes=1, expires_in=3000
        )
    expires = int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])
    assert 590 <= expires <= 600
    assert form["expires_at"] <= time.time() + 600


def test_another_bucket_than_the_configured_ones_has_no_presigned_urls(sts: FakeSts) -> None:
    with tenant_scope("acme"):
        other = tenant_bucket("other")
        for make in (
            lambda: other.presign_download("x"),
            lambda: other.presign_upload("x", content_type="image/png", max_bytes=1),
        ):
            with pytest.raises(CrossTenantAccess) as raised:
                make()
            assert raised.value.reason is Reason.UNCONFIGURED_BUCKET
