"""The errors a user meets when a service is set up or called wrongly, with what they see.

Each test is one mistake made while adopting tenantscope in a service of one's own (on moto, as
``local_tenants`` runs a deployed function): the log line names what to fix, and the caller's
answer carries no internals. A configuration error answers 500, never 503 with ``Retry-After``:
it will not fix itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tenantscope import SqsRecord, api_handler, send_message, sqs_handler, tenant_key, tenant_table
from tenantscope.testing import LambdaContext, LocalTenants, http_api_event, local_tenants, sqs_event

REGION = "us-east-1"


@api_handler
def add_note(event: dict[str, Any], context: Any) -> dict[str, Any]:
    tenant_table("notes").put_item(Item={"pk": tenant_key("NOTE"), "sk": "1", "text": "hello"})
    return {"statusCode": 201}


@api_handler
def list_notes(event: dict[str, Any], context: Any) -> dict[str, Any]:
    found = tenant_table("notes").query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": tenant_key("NOTE")}
    )
    return {"statusCode": 200, "body": json.dumps(found["Items"])}


@api_handler
def audit_note(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sends the request's parsed body: a str for a JSON string, else the user's mistake."""
    queue_url = boto3.client("sqs", region_name=REGION).get_queue_url(QueueName="audit")["QueueUrl"]
    send_message(queue_url, json.loads(event["body"]))
    return {"statusCode": 202}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "tenantscope")


def assert_generic(response: dict[str, Any], status: int, message: str) -> None:
    """The caller's answer: the status and a fixed text, no setting, attribute or claim name."""
    assert response["statusCode"] == status
    assert json.loads(response["body"]) == {"message": message}
    assert "Retry-After" not in response["headers"]


@pytest.fixture
def misconfigured(request: pytest.FixtureRequest) -> Iterator[LocalTenants]:
    """A service whose table ``notes`` is keyed ``pk``, run with ``request.param`` as its environment."""
    with local_tenants(tables="notes=pk", environment=request.param) as local:
        boto3.client("sqs", region_name=REGION).create_queue(QueueName="audit")
        yield local


@pytest.mark.parametrize("misconfigured", [{"TENANTSCOPE_TABLES": "notes=PK"}], indirect=True)
@pytest.mark.parametrize("handler", [add_note, list_notes])
def test_a_partition_key_typo_names_the_attribute_it_expected(
    misconfigured: LocalTenants, caplog: pytest.LogCaptureFixture, handler: Any
) -> None:
    # GIVEN TENANTSCOPE_TABLES=notes=PK for a table keyed pk: every item and query carries pk
    response = handler(misconfigured.api_event("acme"), misconfigured.context())
    # THEN it is refused like any request the guard cannot place in the tenant's partition, but the
    # log says which attribute the guard looked for, and where it learnt it
    assert_generic(response, 403, "Forbidden")
    assert (
        "refused: no partition key attribute in the request "
        "(expected 'PK', the partition key of table 'notes' in TENANTSCOPE_TABLES)"
    ) in logged(caplog)


@pytest.mark.parametrize("misconfigured", [{"TENANTSCOPE_ROLE_ARN": ""}], indirect=True)
def test_a_missing_role_arn_is_a_500_naming_the_setting(
    misconfigured: LocalTenants, caplog: pytest.LogCaptureFixture
) -> None:
    response = add_note(misconfigured.api_event("acme"), misconfigured.context())
    assert_generic(response, 500, "Internal Server Error")
    assert (
        "API request misconfigured: a required setting is not configured "
        "(TENANTSCOPE_ROLE_ARN: set it to the ARN of the role assumed for each tenant)"
    ) in logged(caplog)
    assert misconfigured.assumed_tenants() == []


@pytest.mark.parametrize("misconfigured", [{"TENANTSCOPE_SIGNING_KEYS": ""}], indirect=True)
def test_missing_signing_keys_in_a_handler_are_logged_with_their_message(
    misconfigured: LocalTenants, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an API function that sends a message, deployed without a key ring
    response = audit_note(misconfigured.api_event("acme", body="note-added"), misconfigured.context())
    assert_generic(response, 500, "Internal Server Error")
    assert (
        "API request misconfigured: a required setting is not configured (TENANTSCOPE_SIGNING_KEYS: "
        "set it to kms:<key id>, secretsmanager:<secret id> or inline:<JSON ring> (local development))"
    ) in logged(caplog)
    assert "failed in its handler" not in logged(caplog)


@pytest.mark.parametrize("misconfigured", [{}], indirect=True)
def test_a_dict_body_is_a_type_error_that_says_to_pass_a_str(
    misconfigured: LocalTenants, caplog: pytest.LogCaptureFixture
) -> None:
    queue_url = boto3.client("sqs", region_name=REGION).get_queue_url(QueueName="audit")["QueueUrl"]
    with pytest.raises(TypeError) as raised:
        send_message(queue_url, {"action": "note-added"}, tenant_id="acme")  # type: ignore[arg-type]
    assert str(raised.value) == "a message body is a str, not dict: pass json.dumps(body)"
    # AND inside a handler the log line carries it, not only the exception's type
    response = audit_note(
        misconfigured.api_event("acme", body={"action": "note-added"}), misconfigured.context()
    )
    assert_generic(response, 500, "Internal Server Error")
    assert "failed in its handler: a message body is a str, not dict: pass json.dumps(body)" in logged(caplog)


@pytest.mark.parametrize("misconfigured", [{}], indirect=True)
@pytest.mark.parametrize(
    ("claims", "drop", "detail"),
    [
        (
            {"tenant_id": "Acme"},
            (),
            "claim 'tenant_id' is not 2 to 64 lowercase letters, digits and inner hyphens",
        ),
        (
            {},
            ("tenant_id",),
            "no claim 'tenant_id': TENANTSCOPE_TENANT_CLAIM names the claim that holds the tenant id",
        ),
    ],
    ids=["uppercase", "missing"],
)
def test_a_refused_tenant_claim_names_the_claim_and_the_format_in_the_log_only(
    misconfigured: LocalTenants,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, Any],
    drop: tuple[str, ...],
    detail: str,
) -> None:
    token = misconfigured.issuer.token("acme", claims=claims, drop=drop)
    response = list_notes(http_api_event(token), misconfigured.context())
    assert_generic(response, 403, "Forbidden")
    assert f"API request refused: token carries no valid tenant claim ({detail})" in logged(caplog)
    # the value the token carried is never repeated, in the log or the answer
    assert "Acme" not in logged(caplog) and "Acme" not in response["body"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://issuer.example/jwks.json",
            "invalid setting (TENANTSCOPE_JWKS_URL must be the issuer's https:// URL, "
            "or file://<path> or inline:<JWKS JSON> for local development)",
        ),
        (
            "",
            "a required setting is not configured (TENANTSCOPE_JWKS_URL: set it to the issuer's "
            "https:// URL, or file://<path> or inline:<JWKS JSON> for local development)",
        ),
    ],
    ids=["http", "missing"],
)
def test_a_jwks_url_error_names_every_form_it_takes(
    caplog: pytest.LogCaptureFixture, url: str, message: str
) -> None:
    with local_tenants(environment={"TENANTSCOPE_JWKS_URL": url}) as local:
        response = list_notes(local.api_event("acme"), local.context())
    assert_generic(response, 500, "Internal Server Error")
    assert f"API request misconfigured: {message}" in logged(caplog)


@sqs_handler
def audit(record: SqsRecord, context: Any) -> None:
    tenant_table("notes").put_item(Item={"pk": tenant_key("AUDIT"), "sk": record.message_id})


@pytest.fixture
def received(misconfigured: LocalTenants) -> dict[str, Any]:
    """What ``ReceiveMessage`` answers for one sealed message on the audit queue."""
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.get_queue_url(QueueName="audit")["QueueUrl"]
    send_message(queue_url, "note-added", tenant_id="acme")
    answer: dict[str, Any] = sqs.receive_message(
        QueueUrl=queue_url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )
    return answer


@pytest.mark.parametrize("misconfigured", [{}], indirect=True)
def test_receive_message_output_given_to_sqs_handler_is_an_error_that_says_so(
    misconfigured: LocalTenants, received: dict[str, Any]
) -> None:
    with pytest.raises(TypeError) as raised:
        audit(received, misconfigured.context())
    assert str(raised.value) == (
        "@sqs_handler was given ReceiveMessage's answer ('Messages'), not Lambda's SQS event "
        "{'Records': [...]}: in a test, convert each message with "
        "tenantscope.testing.record_from_received(message, queue_arn=...) and wrap them with sqs_event(...)"
    )


@pytest.mark.parametrize("misconfigured", [{}], indirect=True)
def test_receive_message_messages_as_records_fail_with_a_log_that_says_so(
    misconfigured: LocalTenants, received: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    (message,) = received["Messages"]
    assert audit(sqs_event([message]), misconfigured.context()) == {
        "batchItemFailures": [{"itemIdentifier": ""}]
    }
    assert (
        "refused: malformed record (a message as ReceiveMessage answers it, not a record of Lambda's "
        "SQS event: convert it with tenantscope.testing.record_from_received)"
    ) in logged(caplog)


@pytest.mark.parametrize("event", [{}, {"Records": None}, {"Records": "x"}, None], ids=repr)
def test_an_event_without_records_is_an_error_naming_the_sqs_event_shape(event: Any) -> None:
    # Answering "no failures" would delete the batch unread: raising makes Lambda retry it.
    with pytest.raises(TypeError) as raised:
        audit(event, LambdaContext())
    assert str(raised.value) == (
        "@sqs_handler takes Lambda's SQS event, {'Records': [{'messageId': ..., 'body': ..., "
        "'messageAttributes': ..., 'eventSourceARN': ..., ...}]}, and this event has no 'Records' list"
    )
