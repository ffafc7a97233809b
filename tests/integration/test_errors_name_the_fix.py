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

from tenantscope import api_handler, send_message, tenant_key, tenant_table
from tenantscope.testing import LocalTenants, local_tenants

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
