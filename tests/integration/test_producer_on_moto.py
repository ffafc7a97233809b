"""The producer on moto: what SQS and Step Functions really store verifies on the consumer side.

Lambda's SQS event is built from the received message and the queue's real ARN (moto's own
SQS to Lambda mapping drops message attributes, so it is not used).
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tenantscope import (
    Forbidden,
    InvalidEnvelope,
    InvalidTenantId,
    NoTenantContext,
    Reason,
    SqsRecord,
    current_tenant,
    send_message,
    sfn_task,
    sign_message,
    sqs_handler,
    start_execution,
    tenant_scope,
)
from tenantscope._config import Settings
from tenantscope._credentials import CredentialVendor
from tenantscope._envelope import ATTR_ENVELOPE, ATTR_SIGNATURE, ATTR_TENANT, SFN_KEY
from tenantscope._producer import queue_arn_from_url
from tenantscope._resolve import resolve_sfn_event
from tenantscope.testing import (
    RING,
    RING_DOCUMENT,
    record_from_received,
    reset_process_state,
    ring_spec,
    sqs_event,
    task_event,
)
from tests.conftest import REGION, LambdaContext
from tests.integration.conftest import verified_tenant

OURS = {ATTR_TENANT, ATTR_ENVELOPE, ATTR_SIGNATURE}
TRACE = "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


class Queue:
    def __init__(self, client: Any, name: str, attributes: dict[str, str] | None = None) -> None:
        self.client = client
        self.url: str = client.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
        self.arn: str = client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def receive(self) -> list[dict[str, Any]]:
        """Everything in the queue, with every attribute, as Lambda records."""
        records: list[dict[str, Any]] = []
        while True:
            messages = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                VisibilityTimeout=300,
            ).get("Messages", [])
            if not messages:
                return records
            records.extend(record_from_received(m, queue_arn=self.arn) for m in messages)


@pytest.fixture
def standard(sqs: Any) -> Queue:
    return Queue(sqs, "tenantscope-orders")


DedupArgs = Callable[[], dict[str, Any]]


@pytest.fixture(params=["content-based", "explicit-dedup-id"])
def fifo(request: pytest.FixtureRequest, sqs: Any) -> tuple[Queue, DedupArgs]:
    """A FIFO queue, and a function giving the extra send_message arguments of one send."""
    content_based = request.param == "content-based"
    queue = Queue(
        sqs,
        "tenantscope-orders.fifo",
        {"FifoQueue": "true", "ContentBasedDeduplication": "true" if content_based else "false"},
    )
    ids = itertools.count()
    if content_based:
        return queue, dict
    return queue, lambda: {"MessageDeduplicationId": f"dedup-{next(ids)}"}


@pytest.fixture(autouse=True)
def no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


def test_queue_arn_from_url_matches_the_real_arn(standard: Queue) -> None:
    assert queue_arn_from_url(standard.url) == standard.arn


def test_send_to_a_standard_queue_verifies_as_a_lambda_record(
    sqs: Any, standard: Queue, vendor: CredentialVendor
) -> None:
    response = send_message(standard.url, '{"order":"o-1"}', tenant_id="acme", ring=RING, client=sqs)

    (record,) = standard.receive()
    assert record["messageId"] == response["MessageId"]
    assert set(record["messageAttributes"]) == OURS
    assert all(a["dataType"] == "String" for a in record["messageAttributes"].values())
    assert record["attributes"]["MessageGroupId"] == "acme"
    assert verified_tenant(record) == "acme"

    seen: list[tuple[str, str]] = []

    @sqs_handler(ring=RING, vendor=vendor)
    def handler(rec: SqsRecord, context: Any) -> None:
        seen.append((current_tenant().tenant_id, rec.json["order"]))

    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    assert seen == [("acme", "o-1")]


def test_a_received_message_does_not_verify_on_another_queue(sqs: Any, standard: Queue) -> None:
    other = Queue(sqs, "tenantscope-other")
    send_message(standard.url, "{}", tenant_id="acme", ring=RING, client=sqs)
    (record,) = standard.receive()
    with pytest.raises(InvalidEnvelope, match="bad signature"):
        verified_tenant({**record, "eventSourceARN": other.arn})


def test_send_to_a_fifo_queue_groups_by_tenant(sqs: Any, fifo: tuple[Queue, DedupArgs]) -> None:
    queue, extra = fifo
    for n, tenant in enumerate(["acme", "globex", "acme"]):
        send_message(queue.url, json.dumps({"n": n}), tenant_id=tenant, ring=RING, client=sqs, **extra())

    records = queue.receive()
    assert sorted((r["attributes"]["MessageGroupId"], json.loads(r["body"])["n"]) for r in records) == [
        ("acme", 0),
        ("acme", 2),
        ("globex", 1),
    ]
    for record in records:
        assert set(record["messageAttributes"]) == OURS
        assert verified_tenant(record) == record["attributes"]["MessageGroupId"]


@pytest.mark.parametrize("content_based", ["true", "false"])
def test_fifo_identical_bodies_of_two_tenants_are_not_deduplicated_together(
    sqs: Any, content_based: str
) -> None:
    """Content-based deduplication hashes the body only; one tenant must not suppress another's.

    The producer's default deduplication id is per tenant and body, so a FIFO queue needs no
    ContentBasedDeduplication either.
    """
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": content_based}
    queue = Queue(sqs, "tenantscope-pay.fifo", attributes)
    for tenant in ("acme", "globex", "acme"):
        send_message(queue.url, '{"pay":100}', tenant_id=tenant, ring=RING, client=sqs)

    records = queue.receive()
    # acme's second identical message is still deduplicated (within its own tenant).
    assert sorted(r["attributes"]["MessageGroupId"] for r in records) == ["acme", "globex"]
    assert sorted(verified_tenant(r) for r in records) == ["acme", "globex"]


def test_fifo_a_given_deduplication_id_deduplicates_within_its_tenant_only(sqs: Any) -> None:
    # GIVEN a business key as the deduplication id, which two tenants may both use
    queue = Queue(sqs, "tenantscope-pay.fifo", {"FifoQueue": "true"})
    for tenant, body in (("acme", '{"n":1}'), ("acme", '{"n":2}'), ("globex", '{"n":3}')):
        send_message(queue.url, body, tenant_id=tenant, ring=RING, client=sqs, MessageDeduplicationId="o-1")
    # THEN acme's second message is a duplicate of its first, and globex's is not suppressed by it
    records = sorted(queue.receive(), key=lambda record: record["body"])
    assert [(verified_tenant(r), r["body"]) for r in records] == [("acme", '{"n":1}'), ("globex", '{"n":3}')]
    assert records[0]["attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"acme\no-1").hexdigest()


def test_a_queue_url_without_a_region_is_sealed_for_the_sending_clients_region(sqs: Any) -> None:
    # GIVEN a client in eu-west-1, settings for us-east-1, and a queue URL that names no region
    # (a custom endpoint's), in whatever case
    client = boto3.client("sqs", region_name="eu-west-1")
    queue = Queue(client, "tenantscope-orders-eu")
    path = queue.url.split("://", 1)[1].partition("/")[2]
    settings = Settings.load(signing_keys=ring_spec(RING_DOCUMENT), region="us-east-1")
    # WHEN a message is sent there
    send_message(f"http://LOCALHOST:4566/{path}", "{}", tenant_id="acme", client=client, settings=settings)
    # THEN it is sealed for the queue the client sent it to, and verifies there
    (record,) = queue.receive()
    assert queue.arn.startswith("arn:aws:sqs:eu-west-1:")
    assert verified_tenant(record) == "acme"
    # and a host with a port or in capitals is read as the same region
    assert queue_arn_from_url("https://SQS.EU-WEST-1.AMAZONAWS.COM:443/123456789012/q") == (
        "arn:aws:sqs:eu-west-1:123456789012:q"
    )


def test_user_attributes_pass_through_and_ours_cannot_be_overridden(sqs: Any, standard: Queue) -> None:
    note = {"DataType": "String", "StringValue": "hello"}
    count = {"DataType": "Number", "StringValue": "3"}
    send_message(
        standard.url,
        "{}",
        tenant_id="acme",
        ring=RING,
        client=sqs,
        MessageAttributes={"note": note, "count": count},
        DelaySeconds=0,
    )
    for name in sorted(OURS):
        with pytest.raises(ValueError, match=r"^tenantscope message attributes cannot be overridden$"):
            send_message(
                standard.url,
                "{}",
                tenant_id="acme",
                ring=RING,
                client=sqs,
                MessageAttributes={name: {"DataType": "String", "StringValue": "globex"}},
            )
    with pytest.raises(ValueError, match=r"^MessageGroupId is the tenant id$"):
        send_message(standard.url, "{}", tenant_id="acme", ring=RING, client=sqs, MessageGroupId="globex")
    send_message(standard.url, "{}", tenant_id="acme", ring=RING, client=sqs, MessageGroupId="acme")

    records = standard.receive()
    assert len(records) == 2  # the refused sends sent nothing
    first = next(r for r in records if "note" in r["messageAttributes"])
    assert set(first["messageAttributes"]) == OURS | {"note", "count"}
    assert first["messageAttributes"]["note"]["stringValue"] == "hello"
    assert first["messageAttributes"]["count"] == {
        "stringValue": "3",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Number",
    }
    assert [verified_tenant(r) for r in records] == ["acme", "acme"]


def test_inside_a_scope_the_current_tenant_is_used(sqs: Any, standard: Queue) -> None:
    with tenant_scope("acme"):
        send_message(standard.url, '{"n":1}', ring=RING, client=sqs)
        send_message(standard.url, '{"n":2}', tenant_id="acme", ring=RING, client=sqs)
        with pytest.raises(Forbidden):
            send_message(standard.url, '{"n":3}', tenant_id="globex", ring=RING, client=sqs)

    records = standard.receive()
    assert sorted(json.loads(r["body"])["n"] for r in records) == [1, 2]
    assert [verified_tenant(r) for r in records] == ["acme", "acme"]


def test_outside_a_scope_the_tenant_is_required_and_validated(sqs: Any, standard: Queue) -> None:
    with pytest.raises(NoTenantContext):
        send_message(standard.url, "{}", ring=RING, client=sqs)
    with pytest.raises(InvalidTenantId):
        send_message(standard.url, "{}", tenant_id="acme#x", ring=RING, client=sqs)
    assert standard.receive() == []


def test_work_that_outlived_its_scope_cannot_send_for_any_tenant(
    sqs: Any, standard: Queue, sfn: Any, machine_arn: str
) -> None:
    # GIVEN a context copied inside acme's scope (a callback, an asyncio task), run after it ended
    with tenant_scope("acme"):
        carried = contextvars.copy_context()
    # WHEN it produces, naming a tenant as back-office code may, or not
    for tenant in (None, "acme", "globex"):
        with pytest.raises(NoTenantContext) as refusal:
            carried.run(send_message, standard.url, "{}", tenant_id=tenant, ring=RING, client=sqs)
        assert refusal.value.reason is Reason.SCOPE_ENDED
        with pytest.raises(NoTenantContext):
            carried.run(start_execution, machine_arn, {}, tenant_id=tenant, ring=RING, client=sfn)
        with pytest.raises(NoTenantContext):
            carried.run(sign_message, "{}", destination=standard.arn, tenant_id=tenant, ring=RING)
    # THEN nothing was sent; back-office code that never had a scope still names its tenant
    assert standard.receive() == []
    assert sfn.list_executions(stateMachineArn=machine_arn)["executions"] == []
    send_message(standard.url, "{}", tenant_id="globex", ring=RING, client=sqs)
    assert [verified_tenant(r) for r in standard.receive()] == ["globex"]


def test_the_trace_header_is_propagated(sqs: Any, standard: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    send_message(standard.url, '{"n":1}', tenant_id="acme", ring=RING, client=sqs)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    send_message(standard.url, '{"n":2}', tenant_id="acme", ring=RING, client=sqs)

    records = {json.loads(r["body"])["n"]: r for r in standard.receive()}
    assert "AWSTraceHeader" not in records[1]["attributes"]
    assert records[2]["attributes"]["AWSTraceHeader"] == TRACE
    assert set(records[2]["messageAttributes"]) == OURS  # a system attribute, not one of the ten
    assert verified_tenant(records[2]) == "acme"


def test_the_default_client_and_key_ring_come_from_the_environment(
    standard: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", ring_spec(RING_DOCUMENT))
    reset_process_state()
    send_message(standard.url, "{}", tenant_id="acme")
    (record,) = standard.receive()
    assert verified_tenant(record) == "acme"


# --- Step Functions ------------------------------------------------------------------------


def wire_requests(client: Any) -> list[dict[str, Any]]:
    """The JSON bodies of StartExecution requests as the client serialized them."""
    bodies: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        body = params["body"]
        bodies.append(json.loads(body.decode() if isinstance(body, bytes) else body))

    client.meta.events.register("before-call.sfn.StartExecution", record)
    return bodies


def test_start_execution_input_is_the_sealed_document_and_verifies(
    sfn: Any, machine_arn: str, vendor: CredentialVendor
) -> None:
    payload = {"order_id": "o-1", "quantity": 3}
    response = start_execution(machine_arn, payload, tenant_id="acme", ring=RING, client=sfn)

    execution = sfn.describe_execution(executionArn=response["executionArn"])
    name = execution["name"]
    assert name.startswith("acme-") and len(name) <= 80
    document = json.loads(execution["input"])
    assert set(document) == {SFN_KEY, "results"} and document["results"] == {}
    assert set(document[SFN_KEY]) == {"tenant", "envelope", "signature", "body"}
    assert json.loads(document[SFN_KEY]["body"]) == payload

    event = task_event(document, execution_name=name, state_machine_arn=machine_arn)
    tenant, _, body = resolve_sfn_event(event, RING, Settings.load(environ={}), now=time.time())
    assert tenant.tenant_id == "acme" and json.loads(body) == payload

    @sfn_task(ring=RING, vendor=vendor)
    def reserve(task_payload: dict[str, Any], context: Any) -> Any:
        return {"tenant": current_tenant().tenant_id, "quantity": task_payload["input"]["quantity"]}

    assert reserve(event, LambdaContext())["results"] == {"reserve": {"tenant": "acme", "quantity": 3}}


def test_start_execution_names(sfn: Any, machine_arn: str) -> None:
    long_tenant = "t" + "-x" * 31 + "z"
    assert len(long_tenant) == 64
    names = [
        sfn.describe_execution(
            executionArn=start_execution(machine_arn, {}, tenant_id=tenant, ring=RING, client=sfn)[
                "executionArn"
            ]
        )["name"]
        for tenant in (long_tenant, long_tenant, "ab")
    ]
    assert len(set(names)) == 3
    assert all(len(n) <= 80 for n in names)
    assert names[0].startswith(long_tenant[:47]) and names[2].startswith("ab-")

    explicit = start_execution(machine_arn, {}, tenant_id="acme", name="acme-order-1", ring=RING, client=sfn)
    assert explicit["executionArn"].endswith(":execution:tenantscope-orders:acme-order-1")


def test_start_execution_refuses_another_tenant_inside_a_scope(sfn: Any, machine_arn: str) -> None:
    with tenant_scope("acme"):
        started = start_execution(machine_arn, {}, ring=RING, client=sfn)
        with pytest.raises(Forbidden):
            start_execution(machine_arn, {}, tenant_id="globex", ring=RING, client=sfn)
    with pytest.raises(NoTenantContext):
        start_execution(machine_arn, {}, ring=RING, client=sfn)
    executions = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    assert [e["executionArn"] for e in executions] == [started["executionArn"]]


def test_start_execution_passes_the_trace_header(
    sfn: Any, machine_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = wire_requests(sfn)
    start_execution(machine_arn, {}, tenant_id="acme", ring=RING, client=sfn)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    start_execution(machine_arn, {}, tenant_id="acme", ring=RING, client=sfn)

    # moto accepts traceHeader but does not store it: check what went on the wire.
    assert "traceHeader" not in sent[0]
    assert sent[1]["traceHeader"] == TRACE
    assert len(sfn.list_executions(stateMachineArn=machine_arn)["executions"]) == 2


def test_producers_without_a_client_use_the_settings_region_and_lifetime(
    sqs: Any, sfn: Any, machine_arn: str, standard: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a default region for AWS's SDKs that is not the producer's, and no client
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = Settings.load(region=REGION, sfn_envelope_ttl_seconds="600")
    response = start_execution(machine_arn, {"n": 1}, tenant_id="acme", ring=RING, settings=settings)
    document = json.loads(sfn.describe_execution(executionArn=response["executionArn"])["input"])
    _, _, issued_at, expires_at, _ = document[SFN_KEY]["envelope"].split(" ")
    assert int(expires_at) - int(issued_at) == 600
    send_message(standard.url, "{}", tenant_id="acme", ring=RING, settings=settings)
    assert len(sqs.receive_message(QueueUrl=standard.url)["Messages"]) == 1
