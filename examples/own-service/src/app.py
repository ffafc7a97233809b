"""Notes per tenant over HTTP, and an audit trail written by an SQS consumer, each as one tenant."""

import json
import os
import uuid

from tenantscope import api_handler, send_message, sqs_handler, tenant_key, tenant_table

TABLE = os.environ.get("NOTES_TABLE", "notes")
AUDIT_QUEUE_URL = os.environ.get("AUDIT_QUEUE_URL", "")


@api_handler
def notes(event, context):
    """PUT /notes {"text": ...} adds a note; GET /notes lists the caller's tenant's notes."""
    table = tenant_table(TABLE)
    if event["requestContext"]["http"]["method"] == "PUT":
        note_id = uuid.uuid4().hex
        table.put_item(
            Item={"pk": tenant_key("NOTE"), "sk": note_id, "text": json.loads(event["body"])["text"]}
        )
        send_message(AUDIT_QUEUE_URL, json.dumps({"action": "note-added", "note": note_id}))
        return {"statusCode": 201, "body": json.dumps({"id": note_id})}
    found = table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": tenant_key("NOTE")}
    )
    return {"statusCode": 200, "body": json.dumps([note["text"] for note in found["Items"]])}


@sqs_handler
def audit(record, context):
    """One audit item per message, in the tenant that sealed it."""
    tenant_table(TABLE).put_item(
        Item={"pk": tenant_key("AUDIT"), "sk": record.message_id, "action": record.json["action"]}
    )
