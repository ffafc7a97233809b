"""The AWS clients tenantscope makes: a tenant's sign with its current credentials whole, and every
client gives up quickly.

moto accepts any credentials and checks no signature, so a client that dropped the tenant's session
token, or signed with another secret, would pass every other test here and fail on AWS. These tests
read what an AWS endpoint reads: the request's Authorization and security token headers, the
session's credentials, and each client's timeouts and attempts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tenantscope import Reason, StsUnreachable
from tenantscope._aws import aws_client, base_session, tenant_boto3_session, tenant_client, tenant_resource
from tenantscope._credentials import ScopedCredentials
from tests.conftest import BUCKET, OTHER_REGION, REGION, TABLE
from tests.integration.conftest import sent_headers

CREDENTIALS = ScopedCredentials(
    tenant_id="acme",
    access_key_id="ASIATENANTACME000001",
    secret_access_key="tenant-secret-access-key",
    session_token="tenant-session-token",
    expiration=time.time() + 3600,
)


def acme_session(region: str = REGION) -> Any:
    return tenant_boto3_session(region, lambda: CREDENTIALS)


def test_a_tenants_clients_sign_with_its_key_and_send_its_session_token(aws: None) -> None:
    session = acme_session()
    s3 = tenant_client(session, "s3")
    table = tenant_resource(session, "dynamodb").Table(TABLE)
    for client, call in (
        (s3, lambda: s3.list_objects_v2(Bucket=BUCKET)),
        (table.meta.client, lambda: table.get_item(Key={"pk": "TENANT#acme#ITEM", "sk": "1"})),
    ):
        headers = sent_headers(client, call)
        assert f"Credential={CREDENTIALS.access_key_id}/" in headers["Authorization"]
        # Temporary credentials without their token are refused by AWS (and accepted by moto).
        assert headers["X-Amz-Security-Token"] == CREDENTIALS.session_token


def test_a_kept_client_signs_each_request_with_the_credentials_of_that_moment(aws: None) -> None:
    # GIVEN a table kept from a tenant session whose credentials are then replaced (as the vendor
    # replaces them a margin before they expire)
    current = [CREDENTIALS]
    table = tenant_resource(tenant_boto3_session(REGION, lambda: current[0]), "dynamodb").Table(TABLE)
    first = sent_headers(table.meta.client, lambda: table.get_item(Key={"pk": "TENANT#acme", "sk": "1"}))
    current[0] = dataclasses.replace(
        CREDENTIALS, access_key_id="ASIATENANTACME000002", session_token="tenant-session-token-2"
    )
    # WHEN it makes its next request THEN that one is signed with the new credentials, whole
    second = sent_headers(table.meta.client, lambda: table.get_item(Key={"pk": "TENANT#acme", "sk": "1"}))
    assert "Credential=ASIATENANTACME000001/" in first["Authorization"]
    assert "Credential=ASIATENANTACME000002/" in second["Authorization"]
    assert second["X-Amz-Security-Token"] == "tenant-session-token-2"


def test_a_client_whose_credentials_cannot_be_vended_sends_nothing(aws: None) -> None:
    # GIVEN a tenant client whose credentials can no longer be had (STS unreachable at a refresh)
    def unavailable() -> ScopedCredentials:
        raise StsUnreachable(Reason.STS_UNREACHABLE)

    s3 = tenant_client(tenant_boto3_session(REGION, unavailable), "s3")
    sent: list[Any] = []
    s3.meta.events.register("before-send", lambda request, **_: sent.append(request))
    # WHEN it is used THEN the request fails with the vendor's error and is never sent
    with pytest.raises(StsUnreachable):
        s3.list_objects_v2(Bucket=BUCKET)
    assert sent == []


def test_a_tenant_session_holds_the_tenants_credentials_whole_and_shares_the_service_models(
    aws: None,
) -> None:
    session = acme_session(OTHER_REGION)
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        CREDENTIALS.access_key_id,
        CREDENTIALS.secret_access_key,
        CREDENTIALS.session_token,
    )
    assert session.region_name == OTHER_REGION
    # A new tenant costs a session and its clients, not a second parse of the service models.
    loader = base_session()._session.get_component("data_loader")
    assert session._session.get_component("data_loader") is loader


def test_what_one_tenant_session_registers_never_reaches_another(aws: None) -> None:
    # GIVEN two tenant sessions, made from the same copy of botocore's handlers, and a handler
    # (as a guard is) registered on the first
    first, second = acme_session(), acme_session()
    seen: list[str] = []
    first.events.register("before-parameter-build.s3", lambda **_: seen.append("first"))
    # WHEN each makes a request THEN only the first's clients run it
    tenant_client(second, "s3").list_objects_v2(Bucket=BUCKET)
    assert seen == []
    tenant_client(first, "s3").list_objects_v2(Bucket=BUCKET)
    assert seen == ["first"]


def test_a_tenants_client_and_resource_are_of_their_sessions_region(aws: None) -> None:
    session = acme_session(OTHER_REGION)
    assert tenant_client(session, "s3").meta.region_name == OTHER_REGION
    assert tenant_resource(session, "dynamodb").meta.client.meta.region_name == OTHER_REGION


def test_every_client_gives_up_quickly(aws: None) -> None:
    # GIVEN the clients of the function's role and of a tenant
    session = acme_session()
    clients = {
        "the function's": aws_client("kms", REGION),
        "a tenant's S3": tenant_client(session, "s3"),
        "a tenant's DynamoDB": tenant_resource(session, "dynamodb").meta.client,
    }
    # THEN each connects within a second, reads within three, and makes at most two attempts
    for name, client in clients.items():
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout, config.retries) == (
            1,
            3,
            {"total_max_attempts": 2, "mode": "standard"},
        ), name
    # AND a caller that retries itself (the credential vendor) gets one attempt per call
    assert aws_client("sts", REGION, attempts=1).meta.config.retries["total_max_attempts"] == 1


def test_a_tenants_s3_client_signs_with_sigv4_and_its_other_clients_as_their_service_does(
    aws: None,
) -> None:
    session = acme_session()
    s3 = tenant_client(session, "s3")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "tenants/acme/a.txt"})
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # not the legacy S3 signature
    assert s3.meta.config.signature_version == "s3v4"
    dynamodb = tenant_resource(session, "dynamodb").meta.client
    assert dynamodb.meta.config.signature_version == "v4"  # DynamoDB's own


@pytest.mark.parametrize("region", ["eu-west-1", "af-south-1", "us-east-1"])
def test_a_tenants_presigned_urls_name_the_buckets_regional_host_on_aws(
    aws: None, monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    # GIVEN no configured endpoint (AWS's own S3)
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(variable, raising=False)
    s3 = tenant_client(acme_session(region), "s3")
    bucket = "tenantscope-dev-files-123"
    # WHEN it presigns a download and an upload form
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "tenants/acme/a.txt"})
    form = s3.generate_presigned_post(bucket, "tenants/acme/a.txt")
    # THEN both are for the bucket's region's host, which needs no redirect (a redirect breaks the
    # signature, and s3.amazonaws.com redirects a new bucket of another region)
    regional = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
    assert urlsplit(url).hostname == urlsplit(form["url"]).hostname == f"{bucket}.{regional}"
    assert f"%2F{region}%2Fs3%2Faws4_request" in url
    # AND a bucket with dots in its name, which no certificate covers as a host, gets the path
    dotted = s3.generate_presigned_url("get_object", Params={"Bucket": "my.files", "Key": "k"})
    assert urlsplit(dotted)[1:3] == (regional, "/my.files/k")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_ENDPOINT_URL", "http://localhost:5089"), ("AWS_ENDPOINT_URL_S3", "http://localhost:5089")],
)
def test_a_configured_endpoint_keeps_its_own_addressing(
    aws: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # A local AWS by name: a bucket's name before localhost would not resolve
    for other in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, value)
    url = tenant_client(acme_session("eu-west-1"), "s3").generate_presigned_url(
        "get_object", Params={"Bucket": "tenantscope-dev-files-123", "Key": "k"}
    )
    assert url.startswith("http://localhost:5089/tenantscope-dev-files-123/k?")
    # AND an endpoint botocore is told to ignore is not configured
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    url = tenant_client(acme_session("eu-west-1"), "s3").generate_presigned_url(
        "get_object", Params={"Bucket": "tenantscope-dev-files-123", "Key": "k"}
    )
    assert url.startswith("https://tenantscope-dev-files-123.s3.eu-west-1.amazonaws.com/k?")


def test_botocores_own_handlers_run_once_per_request_of_a_tenant_client(aws: None) -> None:
    # GIVEN a tenant's S3 client, whose session copies botocore's built-in handlers
    s3 = tenant_client(acme_session(), "s3")
    boto3_s3 = base_session().client("s3", region_name=REGION)
    boto3_s3.put_object(Bucket=BUCKET, Key="tenants/acme/a b", Body=b"x")
    # WHEN it copies an object whose key needs quoting, which one of those handlers does
    headers = sent_headers(
        s3,
        lambda: s3.copy_object(Bucket=BUCKET, Key="tenants/acme/c", CopySource=f"{BUCKET}/tenants/acme/a b"),
    )
    # THEN the key is quoted once, as a plain boto3 client quotes it (twice would name another object)
    assert headers["x-amz-copy-source"] == f"{BUCKET}/tenants/acme/a%20b"
