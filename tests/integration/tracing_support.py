"""What the tracing tests of both backends share: the work traced, the batch, the secrets that must
never reach a span, and Step Functions and SQS helpers on moto."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import boto3

from tenantscope import SqsRecord, current_tenant, tenant_key, tenant_table
from tenantscope.testing import KEY, RING_DOCUMENT, signed_sqs_record
from tests.conftest import REGION, TABLE
from tests.integration.conftest import assumed_roles

_JWT_FRAGMENT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


@dataclass
class Secrets:
    """Every token, signing key and credential of a test, none of which may appear in a trace."""

    tokens: list[str] = field(default_factory=list)

    def all(self) -> set[str]:
        values = {*self.tokens, KEY.hex(), *RING_DOCUMENT["keys"].values()}
        values |= {"testing-function-role-secret", "testing-function-role-token"}
        for served in assumed_roles():
            values |= {served.secret_access_key, served.session_token}
        return {v for v in values if v}

    def assert_none_in(self, documents: list[str]) -> None:
        assert documents
        text = "\n".join(documents)
        leaked = sorted(s[:12] + "..." for s in self.all() if s in text)
        assert not leaked, f"secrets reached the trace: {leaked}"
        assert not _JWT_FRAGMENT.search(text), "a JWT-shaped string reached the trace"


def put_and_get(item_id: str) -> None:
    table = tenant_table(TABLE)
    table.put_item(Item={"pk": tenant_key("ITEM", item_id), "sk": "A", "owner": current_tenant().tenant_id})
    table.get_item(Key={"pk": tenant_key("ITEM", item_id), "sk": "A"})


BATCH = [  # (message id, tenant sealed for, outcome)
    ("m-01", "acme", "ok"),
    ("m-02", "globex", "ok"),
    ("m-03", "acme", "ok"),
    ("m-04", "initech", "ok"),
    ("m-05", "umbrella", "tampered"),
    ("m-06", "globex", "ok"),
    ("m-07", "hooli", "raises"),
    ("m-08", "initech", "ok"),
    ("m-09", "acme", "ok"),
    ("m-10", "globex", "ok"),
]


def batch_records() -> list[dict[str, Any]]:
    """The records of BATCH, each sealed for its tenant; the tampered one's body changed after."""
    records = []
    for message_id, tenant, outcome in BATCH:
        body = json.dumps({"raise": outcome == "raises"})
        record = signed_sqs_record(body, tenant_id=tenant, message_id=message_id)
        if outcome == "tampered":
            record["body"] = json.dumps({"raise": False, "extra": 1})
        records.append(record)
    return records


def record_work(record: SqsRecord, context: Any) -> None:
    """What the batch's handler does with each record: a write and a read, then fail if asked."""
    put_and_get(record.message_id)
    if record.json.get("raise"):
        raise RuntimeError("the record handler failed")


def recording_sfn_client() -> tuple[Any, list[dict[str, Any]]]:
    """A Step Functions client on moto that notes the parameters of every StartExecution."""
    client = boto3.client("stepfunctions", region_name=REGION)
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.states.StartExecution", lambda params, **_: sent.append(dict(params))
    )
    return client, sent


def state_machine(client: Any) -> str:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    arn: str = client.create_state_machine(
        name="tenantscope-orders",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/tenantscope-states",
    )["stateMachineArn"]
    return arn


def receive_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return messages
