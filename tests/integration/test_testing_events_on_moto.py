"""tenantscope.testing's SQS records against what SQS (moto) stores and answers.

A message sent through moto and received with every attribute, converted as the event source
mapping converts it (``record_from_received``), is the record the builders make for the same
message: the same attributes, the same message attributes, the same MD5 of the body.
"""

from __future__ import annotations

from typing import Any

import pytest

from tenantscope.testing import record_from_received, sqs_record
from tests.conftest import REGION

SENT_ATTRIBUTES = {
    "colour": {"DataType": "String", "StringValue": "blue"},
    "count": {"DataType": "Number", "StringValue": "7"},
    "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10"},
}


def received(sqs: Any, queue_url: str, **send: Any) -> tuple[dict[str, Any], str]:
    """The one message on the queue as ReceiveMessage answers it, and the queue's ARN."""
    sqs.send_message(QueueUrl=queue_url, MessageAttributes=SENT_ATTRIBUTES, **send)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    (message,) = sqs.receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    )["Messages"]
    return message, arn


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_a_built_record_is_the_record_of_a_message_sqs_delivers(sqs: Any, fifo: bool) -> None:
    # GIVEN a message sent to a queue, with message attributes of each type
    body = '{"city": "東京"}'
    name = "orders.fifo" if fifo else "orders"
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    queue_url = sqs.create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
    group = {"MessageGroupId": "acme", "MessageDeduplicationId": "d-1"} if fifo else {}
    message, arn = received(sqs, queue_url, MessageBody=body, **group)
    # WHEN it is converted as Lambda's event source mapping does, and built for the same message
    delivered = record_from_received(message, queue_arn=arn)
    built = sqs_record(
        body,
        SENT_ATTRIBUTES,
        queue_arn=arn,
        message_id=message["MessageId"],
        group_id="acme" if fifo else None,
        sent_at_ms=int(message["Attributes"]["SentTimestamp"]),
        extra_attributes={"MessageDeduplicationId": "d-1"} if fifo else None,
    )
    # THEN the two agree on everything SQS decides rather than the moment or the receipt
    assert built["messageAttributes"] == delivered["messageAttributes"]
    assert built["md5OfBody"] == delivered["md5OfBody"] == message["MD5OfBody"]
    assert sorted(built["attributes"]) == sorted(delivered["attributes"])
    for same in ("ApproximateReceiveCount", "SentTimestamp", "MessageGroupId", "MessageDeduplicationId"):
        assert built["attributes"].get(same) == delivered["attributes"].get(same)
    unchanged = ("messageId", "body", "eventSource", "eventSourceARN", "awsRegion")
    assert {key: built[key] for key in unchanged} == {key: delivered[key] for key in unchanged}
    assert delivered["awsRegion"] == REGION
