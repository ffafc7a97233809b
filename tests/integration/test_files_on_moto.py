"""Tenant files on moto: a catalogue of S3 request shapes through tenant_s3() and tenant_bucket().

Every foreign or ambiguous shape is refused by the object guard before it is sent (each test
counts what reaches moto), and the bucket is unchanged afterwards. moto enforces neither the
tenant role's policy nor a presigned POST's conditions (see docs/architecture.md): IAM is tested
as data in tests/unit/test_policy.py and on real AWS in tests/aws/.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig

from tenantscope import (
    CrossTenantAccess,
    NoTenantContext,
    Reason,
    current_tenant,
    tenant_bucket,
    tenant_s3,
    tenant_scope,
    tenant_session,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._files import _ScopedThreadPool
from tests.conftest import BUCKET, REGION
from tests.integration.conftest import assumed_roles

OTHER_BUCKET = "someone-elses-bucket"
ACCESS_POINT = "arn:aws:s3:us-east-1:123456789012:accesspoint/files"


@pytest.fixture
def files(sts_vendor: CredentialVendor) -> Any:
    """GIVEN acme's and acme-corp's objects side by side in the pooled bucket, and a bucket not configured."""
    admin = boto3.client("s3", region_name=REGION)
    admin.create_bucket(Bucket=OTHER_BUCKET)
    for tenant in ("acme", "acme-corp"):
        for key in ("report.csv", "receipts/order-1.json"):
            admin.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/{key}", Body=f"{tenant}:{key}".encode())
    admin.put_object(Bucket=OTHER_BUCKET, Key="tenants/acme/report.csv", Body=b"elsewhere")
    return admin


def everything(admin: Any) -> dict[str, bytes]:
    """Every object of both buckets, with its content."""
    out: dict[str, bytes] = {}
    for bucket in (BUCKET, OTHER_BUCKET):
        for item in admin.list_objects_v2(Bucket=bucket).get("Contents", []):
            out[f"{bucket}/{item['Key']}"] = admin.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


class Sent:
    """What the tenant's S3 client sends to moto."""

    def __init__(self, client: Any) -> None:
        self.requests: list[str] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        self.requests.append(f"{request.method} {request.url}")


def refused_before_sending(admin: Any, attempt: Callable[[], Any]) -> CrossTenantAccess:
    """Runs ``attempt`` in acme's scope; it must raise CrossTenantAccess with nothing sent or changed."""
    before = everything(admin)
    with tenant_scope("acme"):
        sent = Sent(tenant_s3())
        with pytest.raises(CrossTenantAccess) as raised:
            attempt()
    assert sent.requests == []
    assert everything(admin) == before
    return raised.value


# --- what a tenant may do -----------------------------------------------------------------------


def test_each_tenant_works_with_its_own_objects_only(files: Any) -> None:
    for tenant in ("acme", "acme-corp"):
        with tenant_scope(tenant):
            bucket = tenant_bucket(BUCKET)
            written = bucket.put("notes/today.txt", f"{tenant} notes", ContentType="text/plain")
            assert written["ETag"]  # PutObject's answer, as boto3 gives it
            assert bucket.get("notes/today.txt") == f"{tenant} notes".encode()
            assert bucket.get("report.csv") == f"{tenant}:report.csv".encode()
            bucket.copy("notes/today.txt", "notes/copy.txt")
            assert bucket.list() == [
                "notes/copy.txt",
                "notes/today.txt",
                "receipts/order-1.json",
                "report.csv",
            ]
            assert bucket.list("notes/") == ["notes/copy.txt", "notes/today.txt"]
            assert bucket.list("nothing/") == []  # S3 leaves Contents out of an empty page
            bucket.delete("notes/copy.txt")
            head = tenant_s3().head_object(Bucket=BUCKET, Key=bucket.key("notes/today.txt"))
            assert head["ContentType"] == "text/plain"
    # THEN each wrote under its own prefix only, and acme's listing never showed acme-corp's keys
    keys = sorted(everything(files))
    assert f"{BUCKET}/tenants/acme/notes/today.txt" in keys
    assert f"{BUCKET}/tenants/acme-corp/notes/today.txt" in keys
    assert not any("copy.txt" in key for key in keys)


def test_a_multipart_upload_and_a_batch_delete_of_own_keys_work(files: Any) -> None:
    with tenant_scope("acme"):
        s3, key = tenant_s3(), tenant_bucket(BUCKET).key("big.bin")
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        part = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
        assert [p["PartNumber"] for p in s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload)["Parts"]] == [
            1
        ]
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        copy = tenant_bucket(BUCKET).key("big-copy.bin")
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=copy)["UploadId"]
        s3.upload_part_copy(
            Bucket=BUCKET, Key=copy, UploadId=upload, PartNumber=1, CopySource={"Bucket": BUCKET, "Key": key}
        )
        s3.abort_multipart_upload(Bucket=BUCKET, Key=copy, UploadId=upload)
        deleted = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}]})["Deleted"]
    assert [d["Key"] for d in deleted] == ["tenants/acme/big.bin"]


def test_a_tenant_session_makes_guarded_s3_clients(files: Any) -> None:
    with tenant_scope("acme"):
        s3 = tenant_session().client("s3")
        assert (
            s3.get_object(Bucket=BUCKET, Key="tenants/acme/report.csv")["Body"].read() == b"acme:report.csv"
        )
        with pytest.raises(CrossTenantAccess):
            s3.get_object(Bucket=BUCKET, Key="tenants/acme-corp/report.csv")


def test_the_client_runs_on_the_tenants_vended_credentials(files: Any) -> None:
    with tenant_scope("acme"):
        frozen = tenant_s3()._request_signer._credentials.get_frozen_credentials()
    served = assumed_roles()[-1]
    assert (served.session_name, frozen.access_key) == ("acme", served.access_key_id)


# --- the catalogue of refused shapes ------------------------------------------------------------

FOREIGN = "tenants/acme-corp/report.csv"


def _s3() -> Any:
    return tenant_s3()


CLIENT_ATTEMPTS: dict[str, Callable[[], Any]] = {
    "get another tenant's object": lambda: _s3().get_object(Bucket=BUCKET, Key=FOREIGN),
    "head another tenant's object": lambda: _s3().head_object(Bucket=BUCKET, Key=FOREIGN),
    "put into another tenant's prefix": lambda: _s3().put_object(Bucket=BUCKET, Key=FOREIGN, Body=b"x"),
    "delete another tenant's object": lambda: _s3().delete_object(Bucket=BUCKET, Key=FOREIGN),
    "get a prefix-sharing tenant's object": lambda: _s3().get_object(
        Bucket=BUCKET, Key="tenants/acme-corp/x"
    ),
    "get the prefix without its slash": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme"),
    "put outside every prefix": lambda: _s3().put_object(Bucket=BUCKET, Key="report.csv", Body=b"x"),
    "dot-dot out of the prefix": lambda: _s3().get_object(
        Bucket=BUCKET, Key="tenants/acme/../acme-corp/report.csv"
    ),
    "double slash": lambda: _s3().put_object(Bucket=BUCKET, Key="tenants/acme//report.csv", Body=b"x"),
    "percent-encoded dot-dot": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme/%2e%2e/acme-corp/x"),
    "percent-encoded slash": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme/..%2Facme-corp%2Fx"),
    "fullwidth dots": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme/\uff0e\uff0e/acme-corp/x"),
    "division slash": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme/..\u2215acme-corp"),
    "Cyrillic look-alike": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/\u0430cme/report.csv"),
    "NUL byte": lambda: _s3().put_object(Bucket=BUCKET, Key="tenants/acme/x\u0000", Body=b"x"),
    "copy from another tenant": lambda: _s3().copy_object(
        Bucket=BUCKET, Key="tenants/acme/stolen.csv", CopySource={"Bucket": BUCKET, "Key": FOREIGN}
    ),
    "copy from another tenant as a string": lambda: _s3().copy_object(
        Bucket=BUCKET, Key="tenants/acme/stolen.csv", CopySource=f"{BUCKET}/{FOREIGN}"
    ),
    "copy through dot-dot": lambda: _s3().copy_object(
        Bucket=BUCKET,
        Key="tenants/acme/stolen.csv",
        CopySource={"Bucket": BUCKET, "Key": "tenants/acme/../acme-corp/report.csv"},
    ),
    "copy a version": lambda: _s3().copy_object(
        Bucket=BUCKET,
        Key="tenants/acme/old.csv",
        CopySource={"Bucket": BUCKET, "Key": "tenants/acme/report.csv", "VersionId": "v1"},
    ),
    "copy into another tenant": lambda: _s3().copy_object(
        Bucket=BUCKET, Key=FOREIGN, CopySource={"Bucket": BUCKET, "Key": "tenants/acme/report.csv"}
    ),
    "copy from a bucket not configured": lambda: _s3().copy_object(
        Bucket=BUCKET,
        Key="tenants/acme/x.csv",
        CopySource={"Bucket": OTHER_BUCKET, "Key": "tenants/acme/report.csv"},
    ),
    "multipart into another tenant": lambda: _s3().create_multipart_upload(Bucket=BUCKET, Key=FOREIGN),
    "part copy from another tenant": lambda: _s3().upload_part_copy(
        Bucket=BUCKET,
        Key="tenants/acme/x",
        UploadId="u",
        PartNumber=1,
        CopySource={"Bucket": BUCKET, "Key": FOREIGN},
    ),
    "list another tenant's parts": lambda: _s3().list_parts(Bucket=BUCKET, Key=FOREIGN, UploadId="u"),
    "abort another tenant's upload": lambda: _s3().abort_multipart_upload(
        Bucket=BUCKET, Key=FOREIGN, UploadId="u"
    ),
    "batch delete with one foreign key": lambda: _s3().delete_objects(
        Bucket=BUCKET,
        Delete={"Objects": [{"Key": "tenants/acme/report.csv"}, {"Key": FOREIGN}]},
    ),
    "batch delete of a version": lambda: _s3().delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "tenants/acme/report.csv", "VersionId": "v1"}]}
    ),
    "list another tenant's prefix": lambda: _s3().list_objects_v2(Bucket=BUCKET, Prefix="tenants/acme-corp/"),
    "list without a prefix": lambda: _s3().list_objects_v2(Bucket=BUCKET),
    "list every tenant": lambda: _s3().list_objects_v2(Bucket=BUCKET, Prefix="tenants/"),
    "list the prefix without its slash": lambda: _s3().list_objects_v2(Bucket=BUCKET, Prefix="tenants/acme"),
    "list with ListObjects v1": lambda: _s3().list_objects(Bucket=BUCKET, Prefix="tenants/acme/"),
    "list object versions": lambda: _s3().list_object_versions(Bucket=BUCKET, Prefix="tenants/acme/"),
    "list multipart uploads": lambda: _s3().list_multipart_uploads(Bucket=BUCKET, Prefix="tenants/acme/"),
    "list buckets": lambda: _s3().list_buckets(),
    "read a version": lambda: _s3().get_object(Bucket=BUCKET, Key="tenants/acme/report.csv", VersionId="v1"),
    "public ACL on put": lambda: _s3().put_object(
        Bucket=BUCKET, Key="tenants/acme/public.csv", Body=b"x", ACL="public-read"
    ),
    "grant on put": lambda: _s3().put_object(
        Bucket=BUCKET,
        Key="tenants/acme/public.csv",
        Body=b"x",
        GrantRead="uri=http://acs.amazonaws.com/groups/global/AllUsers",
    ),
    "object ACL": lambda: _s3().put_object_acl(
        Bucket=BUCKET, Key="tenants/acme/report.csv", ACL="public-read"
    ),
    "object tagging": lambda: _s3().put_object_tagging(
        Bucket=BUCKET, Key="tenants/acme/report.csv", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
    ),
    "bucket policy": lambda: _s3().put_bucket_policy(Bucket=BUCKET, Policy="{}"),
    "bucket ACL": lambda: _s3().put_bucket_acl(Bucket=BUCKET, ACL="public-read"),
    "delete the bucket": lambda: _s3().delete_bucket(Bucket=BUCKET),
    "create a bucket": lambda: _s3().create_bucket(Bucket="tenants-acme"),
    "bucket versioning": lambda: _s3().put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}
    ),
    "read the bucket policy": lambda: _s3().get_bucket_policy(Bucket=BUCKET),
    "own key in a bucket not configured": lambda: _s3().get_object(
        Bucket=OTHER_BUCKET, Key="tenants/acme/report.csv"
    ),
    "own key through an access point": lambda: _s3().get_object(
        Bucket=ACCESS_POINT, Key="tenants/acme/report.csv"
    ),
    "presigned GET of another tenant's object": lambda: _s3().generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": FOREIGN}
    ),
    "presigned POST made by hand": lambda: _s3().generate_presigned_post(
        BUCKET, "tenants/acme/${filename}", Conditions=[["starts-with", "$key", "tenants/"]]
    ),
}


@pytest.mark.parametrize("attempt", CLIENT_ATTEMPTS.values(), ids=CLIENT_ATTEMPTS.keys())
def test_a_foreign_or_ambiguous_request_is_refused_before_it_is_sent(
    files: Any, attempt: Callable[[], Any]
) -> None:
    refused_before_sending(files, attempt)


def _bucket() -> Any:
    return tenant_bucket(BUCKET)


BUCKET_ATTEMPTS: dict[str, Callable[[], Any]] = {
    "dot-dot": lambda: _bucket().get("../acme-corp/report.csv"),
    "dot-dot deeper": lambda: _bucket().get("receipts/../../acme-corp/report.csv"),
    "dot": lambda: _bucket().put("./report.csv", b"x"),
    "leading slash": lambda: _bucket().get("/report.csv"),
    "double slash": lambda: _bucket().put("receipts//order-1.json", b"x"),
    "trailing slash": lambda: _bucket().put("receipts/", b""),
    "empty key": lambda: _bucket().put("", b"x"),
    "percent-encoded dot-dot": lambda: _bucket().get("%2e%2e/acme-corp/report.csv"),
    "percent-encoded slash": lambda: _bucket().get("..%2Facme-corp%2Freport.csv"),
    "backslash": lambda: _bucket().get("..\\acme-corp\\report.csv"),
    "fullwidth dots": lambda: _bucket().get("\uff0e\uff0e/acme-corp/report.csv"),
    "Unicode slash": lambda: _bucket().get("..\u2215acme-corp\u2215report.csv"),
    "NFKC look-alike": lambda: _bucket().put("re\u0301port.csv", b"x"),
    "control character": lambda: _bucket().put("report.csv\r\n", b"x"),
    "copy from dot-dot": lambda: _bucket().copy("../acme-corp/report.csv", "stolen.csv"),
    "copy to dot-dot": lambda: _bucket().copy("report.csv", "../acme-corp/report.csv"),
    "delete dot-dot": lambda: _bucket().delete("../acme-corp/report.csv"),
    "list dot-dot": lambda: _bucket().list("../"),
    "list another tenant through dot-dot": lambda: _bucket().list("../acme-corp/"),
    "list with a leading slash": lambda: _bucket().list("/"),
    "a bucket not configured": lambda: tenant_bucket(OTHER_BUCKET).get("report.csv"),
    "presigned download through dot-dot": lambda: _bucket().presign_download("../acme-corp/report.csv"),
    "presigned upload through dot-dot": lambda: _bucket().presign_upload(
        "../acme-corp/report.csv", content_type="text/csv", max_bytes=10
    ),
    "presigned upload over an hour": lambda: _bucket().presign_upload(
        "x.csv", content_type="text/csv", max_bytes=10, expires_in=3601
    ),
}


@pytest.mark.parametrize("attempt", BUCKET_ATTEMPTS.values(), ids=BUCKET_ATTEMPTS.keys())
def test_a_foreign_or_ambiguous_relative_key_is_refused_before_it_is_sent(
    files: Any, attempt: Callable[[], Any]
) -> None:
    refused_before_sending(files, attempt)


def test_the_refusals_say_why(files: Any) -> None:
    reasons = {
        name: refused_before_sending(files, CLIENT_ATTEMPTS[name]).reason
        for name in (
            "get another tenant's object",
            "dot-dot out of the prefix",
            "bucket policy",
            "public ACL on put",
        )
    }
    assert reasons == {
        "get another tenant's object": Reason.FOREIGN_OBJECT,
        "dot-dot out of the prefix": Reason.UNSAFE_OBJECT_KEY,
        "bucket policy": Reason.OPERATION_NOT_ALLOWED,
        "public ACL on put": Reason.REFUSED_PARAMETER,
    }


def test_a_client_made_for_one_tenant_is_refused_in_anothers_scope_and_after_its_own(files: Any) -> None:
    with tenant_scope("acme"):
        s3 = tenant_s3()
    with tenant_scope("acme-corp"), pytest.raises(CrossTenantAccess) as raised:
        s3.get_object(Bucket=BUCKET, Key="tenants/acme-corp/report.csv")
    assert raised.value.reason is Reason.FOREIGN_SCOPE
    with pytest.raises(NoTenantContext):
        s3.get_object(Bucket=BUCKET, Key="tenants/acme/report.csv")
    with pytest.raises(NoTenantContext):
        tenant_bucket(BUCKET).get("report.csv")


# --- presigned URLs -----------------------------------------------------------------------------


def test_presigned_urls_carry_the_tenants_credentials_and_work(files: Any) -> None:
    with tenant_scope("acme"):
        bucket = tenant_bucket(BUCKET)
        download = bucket.presign_download("report.csv", expires_in=60)
        form = bucket.presign_upload("uploads/photo.png", content_type="image/png", max_bytes=1024)
    acme = assumed_roles()[-1]
    assert parse_qs(urlsplit(download).query)["X-Amz-Credential"][0].split("/")[0] == acme.access_key_id
    assert form["fields"]["x-amz-credential"].split("/")[0] == acme.access_key_id
    assert acme.session_name == "acme"
    # WHEN a browser uses them (moto serves presigned requests; it does not check POST conditions)
    assert requests.get(download, timeout=5).content == b"acme:report.csv"
    posted = requests.post(
        form["url"], data=form["fields"], files={"file": ("photo.png", b"\x89PNG")}, timeout=5
    )
    assert posted.status_code == 204
    assert files.get_object(Bucket=BUCKET, Key="tenants/acme/uploads/photo.png")["Body"].read() == b"\x89PNG"


# --- boto3's managed transfers ---------------------------------------------------------------------


def test_boto3s_managed_transfers_on_a_tenant_client_need_the_calling_thread(files: Any) -> None:
    # boto3's upload_fileobj and download_fileobj send their requests from worker threads by
    # default; a thread does not inherit the unit of work's scope (a context variable), and the
    # guard refuses a tenant client used outside its scope, so they need use_threads=False there.
    on_this_thread = TransferConfig(use_threads=False)
    with tenant_scope("acme"):
        s3 = tenant_s3()
        s3.upload_fileobj(io.BytesIO(b"uploaded"), BUCKET, "tenants/acme/upload.bin", Config=on_this_thread)
        downloaded = io.BytesIO()
        s3.download_fileobj(BUCKET, "tenants/acme/upload.bin", downloaded, Config=on_this_thread)
        with pytest.raises(NoTenantContext):
            s3.upload_fileobj(io.BytesIO(b"threaded"), BUCKET, "tenants/acme/threaded.bin")
    assert downloaded.getvalue() == b"uploaded"
    assert "tenants/acme/threaded.bin" not in [
        item["Key"] for item in files.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    ]


class SentFromThreads:
    """The operations a client sends, each with the thread that sent it and the tenant in scope there."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, str, str]] = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.sent.append((model.name, threading.current_thread().name, current_tenant().tenant_id))

    def operations(self) -> list[str]:
        return [operation for operation, _, _ in self.sent]


BIG = 9 * 1024 * 1024  # over s3transfer's 8 MB threshold: two parts up, two ranges down


def test_a_tenant_buckets_transfers_run_in_parts_on_worker_threads_in_the_tenants_scope(
    files: Any, tmp_path: Any
) -> None:
    # GIVEN a file larger than one part
    data = bytes(range(256)) * (BIG // 256)
    source = tmp_path / "video.bin"
    source.write_bytes(data)
    threads_before = threading.active_count()
    with tenant_scope("acme"):
        bucket = tenant_bucket(BUCKET)
        sent = SentFromThreads(tenant_s3())
        # WHEN acme uploads it and downloads it again, as a file and as file objects
        bucket.upload_file("media/video.bin", str(source), extra_args={"ContentType": "video/mp4"})
        bucket.download_file("media/video.bin", str(tmp_path / "back.bin"))
        bucket.upload_fileobj(
            "media/small.txt", io.BytesIO(b"small"), extra_args={"ContentType": "text/plain"}
        )
        small = io.BytesIO()
        bucket.download_fileobj("media/small.txt", small)
    # THEN the large file went up in parts and came down in ranges, from worker threads that each
    # ran in acme's scope, under acme's prefix
    assert sorted(set(sent.operations())) == [
        "CompleteMultipartUpload",
        "CreateMultipartUpload",
        "GetObject",
        "HeadObject",
        "PutObject",
        "UploadPart",
    ]
    assert sent.operations().count("UploadPart") == 2
    assert sent.operations().count("GetObject") >= 2
    workers = {thread for _, thread, _ in sent.sent} - {threading.current_thread().name}
    assert workers
    assert {tenant for _, _, tenant in sent.sent} == {"acme"}
    assert (tmp_path / "back.bin").read_bytes() == data
    assert small.getvalue() == b"small"
    stored = files.get_object(Bucket=BUCKET, Key="tenants/acme/media/video.bin")
    assert stored["ContentType"] == "video/mp4"
    assert stored["Body"].read() == data
    assert files.head_object(Bucket=BUCKET, Key="tenants/acme/media/small.txt")["ContentType"] == "text/plain"
    # AND no worker thread outlives its transfer
    assert threading.active_count() == threads_before


def test_a_tenant_buckets_transfers_are_refused_before_sending_outside_its_keys(
    files: Any, tmp_path: Any
) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    bucket = tenant_bucket(BUCKET)
    attempts: list[Callable[[], Any]] = [
        lambda: bucket.upload_file("../acme-corp/f.bin", str(source)),
        lambda: bucket.upload_fileobj("../acme-corp/f.bin", io.BytesIO(b"x")),
        lambda: bucket.download_file("../acme-corp/report.csv", str(tmp_path / "out.bin")),
        lambda: bucket.download_fileobj("../acme-corp/report.csv", io.BytesIO()),
        # refused by the object guard on the worker thread that would send it, and raised here
        lambda: bucket.upload_file("f.bin", str(source), extra_args={"ACL": "public-read"}),
    ]
    for attempt in attempts:
        refused_before_sending(files, attempt)
    assert not (tmp_path / "out.bin").exists()


def test_a_tenant_buckets_transfer_outside_any_scope_is_refused(files: Any, tmp_path: Any) -> None:
    with pytest.raises(NoTenantContext):
        tenant_bucket(BUCKET).upload_fileobj("f.bin", io.BytesIO(b"x"))


def test_a_transfer_task_runs_in_its_submitters_scope_and_not_after_it(files: Any) -> None:
    # GIVEN the pool a transfer runs on, given tasks while acme's scope is open
    pool = _ScopedThreadPool(max_workers=1)
    with tenant_scope("acme"):
        assert pool.submit(current_tenant).result().tenant_id == "acme"  # in the scope, on the worker
        assert pool.submit(
            lambda n, *, unit: (current_tenant().tenant_id, n, unit), 3, unit="kg"
        ).result() == (
            "acme",
            3,
            "kg",
        )
        started, gate = threading.Event(), threading.Event()

        def block() -> None:
            started.set()
            gate.wait()

        blocker = pool.submit(block)
        late = pool.submit(current_tenant)
        started.wait()
    # WHEN a task runs only after the scope has ended
    gate.set()
    blocker.result()
    # THEN it is refused: a worker does not act for a tenant beyond its unit of work
    with pytest.raises(NoTenantContext):
        late.result()
    pool.shutdown()
