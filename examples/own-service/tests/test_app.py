"""The service's handlers on moto, as deployed: a note added over HTTP reaches the audit consumer
through the queue, sealed for its tenant, and each tenant sees only its own notes and audit items."""

import json

import boto3
import pytest

from tenantscope.testing import local_tenants, record_from_received, sqs_event


@pytest.fixture
def local(monkeypatch):
    with local_tenants(tables="notes=pk") as local:
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="audit")["QueueUrl"]
        monkeypatch.setattr("app.AUDIT_QUEUE_URL", queue_url)
        yield local


def received_batch():
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.get_queue_url(QueueName="audit")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    return sqs_event(record_from_received(message, queue_arn=arn) for message in messages)


def audit_items(tenant):
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("notes")
    found = table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"TENANT#{tenant}#AUDIT"}
    )
    return [item["action"] for item in found["Items"]]


def test_each_tenant_reads_its_own_notes_and_gets_its_own_audit_items(local):
    import app

    for tenant in ("acme", "globex"):
        event = local.api_event(tenant, method="PUT", body={"text": f"{tenant}'s"})
        assert app.notes(event, local.context())["statusCode"] == 201
    assert json.loads(app.notes(local.api_event("acme"), local.context())["body"]) == ["acme's"]

    assert app.audit(received_batch(), local.context()) == {"batchItemFailures": []}
    assert audit_items("acme") == ["note-added"]
    assert audit_items("globex") == ["note-added"]


def test_a_request_without_a_token_is_refused(local):
    import app

    assert app.notes(local.api_event(None), local.context())["statusCode"] == 401
    assert local.assumed_tenants() == []


def test_a_tampered_message_fails_alone(local):
    import app

    sealed = local.sqs_record(json.dumps({"action": "note-added"}), tenant_id="acme")
    tampered = {**sealed, "messageId": "m-2", "body": json.dumps({"action": "note-deleted"})}
    result = app.audit(sqs_event([sealed, tampered]), local.context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert audit_items("acme") == ["note-added"]
