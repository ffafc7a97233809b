"""The AWS clients tenantscope makes: a tenant's carry its credentials whole, and every client gives
up quickly.

moto accepts any credentials and checks no signature, so a client that dropped the tenant's session
token, or signed with another secret, would pass every other test here and fail on AWS. These tests
read what an AWS endpoint reads: the request's Authorization and security token headers, the
session's credentials, and each client's timeouts and attempts.
"""

from __future__ import annotations

import time
from typing import Any

from tenantscope._aws import aws_client, base_session, tenant_boto3_session, tenant_client, tenant_resource
from tenantscope._credentials import ScopedCredentials
from tests.conftest import BUCKET, OTHER_REGION, REGION, TABLE

CREDENTIALS = ScopedCredentials(
    tenant_id="acme",
    access_key_id="ASIATENANTACME000001",
    secret_access_key="tenant-secret-access-key",
    session_token="tenant-session-token",
    expiration=time.time() + 3600,
)


def sent_headers(client: Any, call: Any) -> dict[str, str]:
    """The headers of the one request ``call`` sends through ``client`` (its answer ignored)."""
    sent: list[Any] = []
    client.meta.events.register("before-send", lambda request, **_: sent.append(request))
    call()
    (request,) = sent
    return {
        name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()
    }


def test_a_tenants_clients_sign_with_its_key_and_send_its_session_token(aws: None) -> None:
    s3 = tenant_client("s3", REGION, CREDENTIALS)
    table = tenant_resource("dynamodb", REGION, CREDENTIALS).Table(TABLE)
    for client, call in (
        (s3, lambda: s3.list_objects_v2(Bucket=BUCKET)),
        (table.meta.client, lambda: table.get_item(Key={"pk": "TENANT#acme#ITEM", "sk": "1"})),
    ):
        headers = sent_headers(client, call)
        assert f"Credential={CREDENTIALS.access_key_id}/" in headers["Authorization"]
        # Temporary credentials without their token are refused by AWS (and accepted by moto).
        assert headers["X-Amz-Security-Token"] == CREDENTIALS.session_token


def test_a_tenant_session_holds_the_tenants_credentials_whole_and_shares_the_service_models(
    aws: None,
) -> None:
    session = tenant_boto3_session(OTHER_REGION, CREDENTIALS)
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        CREDENTIALS.access_key_id,
        CREDENTIALS.secret_access_key,
        CREDENTIALS.session_token,
    )
    assert session.region_name == OTHER_REGION
    # A new tenant costs a client, not a second parse of the service models.
    loader = base_session()._session.get_component("data_loader")
    assert session._session.get_component("data_loader") is loader


def test_a_tenants_client_and_resource_are_of_the_region_they_are_given(aws: None) -> None:
    assert tenant_client("s3", OTHER_REGION, CREDENTIALS).meta.region_name == OTHER_REGION
    assert tenant_resource("dynamodb", OTHER_REGION, CREDENTIALS).meta.client.meta.region_name == OTHER_REGION


def test_every_client_gives_up_quickly(aws: None) -> None:
    # GIVEN the clients of the function's role and of a tenant
    clients = {
        "the function's": aws_client("kms", REGION),
        "a tenant's S3": tenant_client("s3", REGION, CREDENTIALS),
        "a tenant's DynamoDB": tenant_resource("dynamodb", REGION, CREDENTIALS).meta.client,
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
    s3 = tenant_client("s3", REGION, CREDENTIALS)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "tenants/acme/a.txt"})
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # not the legacy S3 signature
    assert s3.meta.config.signature_version == "s3v4"
    dynamodb = tenant_resource("dynamodb", REGION, CREDENTIALS).meta.client
    assert dynamodb.meta.config.signature_version == "v4"  # DynamoDB's own
