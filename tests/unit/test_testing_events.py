"""tenantscope.testing builds the events Lambda delivers, in their shape: the SAM CLI's own sample
events (``sam local generate-event``) are the reference for the keys and the types of their values.

A builder leaves out only what the service itself sends only when there is some, and sends null
only where the service does when there is none. What the moto-backed builders convert (a message
ReceiveMessage answers) is compared with what SQS stores in tests/integration/test_testing_events_on_moto.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jwt
import pytest
from samcli.lib.generated_sample_events.events import Events

from tenantscope import InvalidEnvelope, Reason
from tenantscope._config import Settings
from tenantscope._keyring import default_key_ring
from tenantscope._producer import fifo_deduplication_id, seal_input
from tenantscope._resolve import resolve_sfn_event, resolve_sqs_record
from tenantscope.testing import (
    ACCOUNT_ID,
    FIFO_QUEUE_ARN,
    KEY,
    QUEUE_ARN,
    REGION,
    RING,
    RING_DOCUMENT,
    STATE_MACHINE_ARN,
    authorizer_claims,
    http_api_event,
    lambda_message_attributes,
    record_from_received,
    rest_api_event,
    ring_document,
    ring_spec,
    sealed_input,
    sfn_task_event,
    signed_sqs_record,
    sqs_record,
    task_event,
)

SETTINGS = Settings.load(environ={})


def sam_sample(service: str, kind: str) -> dict[str, Any]:
    """``sam local generate-event <service> <kind>`` with its defaults, from the SAM CLI's code."""
    events = Events()
    tags = events.event_mapping[service][kind]["tags"]
    sample: dict[str, Any] = json.loads(
        events.generate_event(service, kind, {t: v.get("default") for t, v in tags.items()})
    )
    return sample


# Objects whose keys are data (header names, claim names, parameters), not the event's schema.
DATA = frozenset(
    {
        "headers",
        "multiValueHeaders",
        "pathParameters",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "stageVariables",
        "requestContext.authorizer.jwt.claims",
        "messageAttributes",
    }
)


def shape(value: Any, prefix: str = "") -> Iterator[tuple[str, type]]:
    """Each key's dotted path in ``value`` and the type of its value (data objects not entered)."""
    for key, item in value.items():
        path = f"{prefix}{key}"
        yield path, type(item)
        if isinstance(item, dict) and path not in DATA:
            yield from shape(item, path + ".")


def assert_shaped_as(
    built: Mapping[str, Any], sample: Mapping[str, Any], *, absent: set[str], null: set[str]
) -> None:
    """``built`` has every key of ``sample`` but those the service sends only when there is some
    (``absent``), no key the sample lacks, and values of the sample's types, or null where the
    service sends null when there is none (``null``)."""
    ours, theirs = dict(shape(built)), dict(shape(sample))
    assert sorted(set(ours) - set(theirs)) == []
    assert sorted(set(theirs) - set(ours) - absent) == []
    assert sorted(p for p in absent if p in ours) == []
    wrong = {
        path: (kind.__name__, theirs[path].__name__)
        for path, kind in ours.items()
        if kind is not theirs[path] and not (kind is type(None) and path in null)
    }
    assert wrong == {}


# --- API Gateway -------------------------------------------------------------------------

# What an HTTP API sends only when there is some (or, for the authorizer, with one).
HTTP_API_SOMETIMES = {
    "cookies",
    "queryStringParameters",
    "stageVariables",
    "requestContext.authentication",
    "requestContext.authentication.clientCert",
    *(
        f"requestContext.authentication.clientCert.{key}"
        for key in ("clientCertPem", "subjectDN", "issuerDN", "serialNumber", "validity")
    ),
    "requestContext.authentication.clientCert.validity.notBefore",
    "requestContext.authentication.clientCert.validity.notAfter",
}
AUTHORIZER = {
    "requestContext.authorizer",
    "requestContext.authorizer.jwt",
    "requestContext.authorizer.jwt.claims",
    "requestContext.authorizer.jwt.scopes",
}


def test_an_http_api_event_has_the_shape_api_gateway_sends() -> None:
    built = http_api_event("header.payload.sig", method="PUT", path="/items/gadget", body={"stock": 7})
    assert_shaped_as(
        built,
        sam_sample("apigateway", "http-api-proxy"),
        absent=HTTP_API_SOMETIMES | AUTHORIZER,
        null=set(),
    )


def test_an_http_api_event_on_a_named_stage_has_the_stage_before_its_path_but_not_in_its_route() -> None:
    on_default = http_api_event(None, path="/items/gadget", route="/items/{id}")
    assert (on_default["rawPath"], on_default["requestContext"]["http"]["path"]) == ("/items/gadget",) * 2
    assert on_default["requestContext"]["stage"] == "$default"
    built = http_api_event(None, path="/items/gadget", route="/items/{id}", stage="dev")
    assert (built["rawPath"], built["requestContext"]["http"]["path"]) == ("/dev/items/gadget",) * 2
    assert built["requestContext"]["stage"] == "dev"
    assert built["routeKey"] == built["requestContext"]["routeKey"] == "GET /items/{id}"


def test_an_http_api_event_with_an_authorizer_has_its_claims_and_no_scopes() -> None:
    built = http_api_event("header.payload.sig", claims={"sub": "u-1"})
    assert_shaped_as(
        built,
        sam_sample("apigateway", "http-api-proxy"),
        absent=HTTP_API_SOMETIMES,
        null={"requestContext.authorizer.jwt.scopes", "body"},
    )
    assert built["requestContext"]["authorizer"] == {"jwt": {"claims": {"sub": "u-1"}, "scopes": None}}


def test_an_http_api_event_says_what_was_asked_where_api_gateway_says_it() -> None:
    before = int(time.time() * 1000)
    event = http_api_event(
        "a.b.c",
        method="PUT",
        path="/items/gadget",
        route="/items/{sku}",
        body={"stock": 7},
        path_parameters={"sku": "gadget"},
        headers={"x-trace": "1"},
    )
    after = int(time.time() * 1000)
    context = event["requestContext"]
    assert (event["version"], event["routeKey"], context["routeKey"]) == (
        "2.0",
        "PUT /items/{sku}",
        "PUT /items/{sku}",
    )
    assert (event["rawPath"], event["rawQueryString"], event["pathParameters"]) == (
        "/items/gadget",
        "",
        {"sku": "gadget"},
    )
    assert event["headers"] == {
        "content-type": "application/json",
        "x-trace": "1",
        "authorization": "Bearer a.b.c",
    }
    assert (json.loads(event["body"]), event["isBase64Encoded"]) == ({"stock": 7}, False)
    assert (context["http"]["method"], context["http"]["path"], context["http"]["protocol"]) == (
        "PUT",
        "/items/gadget",
        "HTTP/1.1",
    )
    assert (context["accountId"], context["stage"]) == (ACCOUNT_ID, "$default")
    assert context["domainName"] == f"{context['apiId']}.execute-api.{REGION}.amazonaws.com"
    assert context["domainPrefix"] == context["apiId"]
    assert before <= context["timeEpoch"] <= after
    assert context["time"] == time.strftime(
        "%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["timeEpoch"] / 1000)
    )


def test_an_http_api_event_without_a_token_or_body_has_neither() -> None:
    event = http_api_event(None)
    assert event["headers"] == {"content-type": "application/json"}
    assert (event["body"], event["pathParameters"], event["routeKey"]) == (None, {}, "GET /items")
    assert "authorizer" not in event["requestContext"]
    assert http_api_event(None)["requestContext"]["requestId"] != event["requestContext"]["requestId"]


# What a REST API sends as null when there is none (the sample's caller identity is null already).
REST_API_NULL_WHEN_NONE = {
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "stageVariables",
    "body",
}


@pytest.mark.parametrize("multi_value", [False, True], ids=["headers", "multi-value headers"])
def test_a_rest_api_event_has_the_shape_api_gateway_sends(multi_value: bool) -> None:
    sample = sam_sample("apigateway", "aws-proxy")
    sample["queryStringParameters"] = {}  # the sample's template fills an object with a string
    built = rest_api_event("a.b.c", multi_value=multi_value)
    assert_shaped_as(built, sample, absent=set(), null=REST_API_NULL_WHEN_NONE)
    assert {
        key: value for key, value in built["requestContext"]["identity"].items() if value is not None
    } == {
        "sourceIp": built["requestContext"]["identity"]["sourceIp"],
        "userAgent": built["requestContext"]["identity"]["userAgent"],
    }


def test_a_rest_api_event_says_what_was_asked_where_api_gateway_says_it() -> None:
    single, multi = (
        rest_api_event("a.b.c", header_name="authorization"),
        rest_api_event("a.b.c", multi_value=True),
    )
    assert (single["headers"], single["multiValueHeaders"]) == ({"authorization": "Bearer a.b.c"}, {})
    assert (multi["headers"], multi["multiValueHeaders"]) == ({}, {"Authorization": ["Bearer a.b.c"]})
    assert rest_api_event(None)["headers"] == rest_api_event(None)["multiValueHeaders"] == {}
    assert (single["resource"], single["path"], single["httpMethod"], single["isBase64Encoded"]) == (
        "/items",
        "/items",
        "GET",
        False,
    )
    context = single["requestContext"]
    assert (context["resourcePath"], context["httpMethod"], context["stage"], context["path"]) == (
        "/items",
        "GET",
        "prod",
        "/prod/items",
    )
    assert (context["accountId"], context["protocol"]) == (ACCOUNT_ID, "HTTP/1.1")
    assert context["requestTime"] == time.strftime(
        "%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["requestTimeEpoch"] / 1000)
    )


def test_authorizer_claims_are_strings_as_an_http_api_writes_them() -> None:
    token = jwt.encode(
        {"sub": "u-1", "exp": 1767225600, "groups": ["admins", "billing"], "mfa": True, "org": {"id": 7}},
        "a key of at least thirty-two bytes",
        algorithm="HS256",
    )
    assert authorizer_claims(token) == {
        "sub": "u-1",
        "exp": "1767225600",
        "groups": "[admins billing]",
        "mfa": "true",
        "org": '{"id": 7}',
    }


@pytest.mark.parametrize("build", [http_api_event, rest_api_event], ids=["HTTP API", "REST API"])
def test_an_api_event_is_dated_by_the_clock_as_api_gateway_dates_it(
    monkeypatch: pytest.MonkeyPatch, build: Any
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1583348638.390)
    context = build("a.b.c")["requestContext"]
    dates = (
        (context["time"], context["timeEpoch"])
        if "time" in context
        else (
            context["requestTime"],
            context["requestTimeEpoch"],
        )
    )
    assert dates == ("04/Mar/2020:19:03:58 +0000", 1583348638390)


def test_a_rest_api_event_names_its_request_and_resource_as_api_gateway_does() -> None:
    first, second = rest_api_event(None)["requestContext"], rest_api_event(None)["requestContext"]
    assert first["requestId"] != second["requestId"]
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", first["requestId"])
    assert re.fullmatch(r"[a-z0-9]{6}", first["resourceId"])
    assert re.fullmatch(r"[a-z0-9]{10}", first["apiId"])


# --- SQS ---------------------------------------------------------------------------------


def sqs_sample_record() -> dict[str, Any]:
    record: dict[str, Any] = sam_sample("sqs", "receive-message")["Records"][0]
    return record


FIFO_ATTRIBUTES = {
    "attributes.MessageGroupId",
    "attributes.SequenceNumber",
    "attributes.MessageDeduplicationId",
}


@pytest.mark.parametrize("queue_arn", [QUEUE_ARN, FIFO_QUEUE_ARN], ids=["standard", "fifo"])
def test_an_sqs_record_has_the_shape_lambda_delivers(queue_arn: str) -> None:
    sample = sqs_sample_record()
    sample["attributes"].update(
        dict.fromkeys(("MessageGroupId", "SequenceNumber", "MessageDeduplicationId"), "")
    )
    built = signed_sqs_record('{"n":1}', tenant_id="acme", queue_arn=queue_arn)
    absent = FIFO_ATTRIBUTES if queue_arn == QUEUE_ARN else set()
    assert_shaped_as(built, sample, absent=absent, null=set())


def test_an_sqs_record_says_what_was_sent_where_lambda_says_it() -> None:
    body = '{"city": "東京"}'
    record = sqs_record(
        body,
        {"colour": {"DataType": "String", "StringValue": "blue"}},
        queue_arn="arn:aws:sqs:eu-west-1:210987654321:orders.fifo",
        message_id="m-1",
        group_id="acme",
        receive_count=3,
        sent_at_ms=1767225600000,
        extra_attributes={"AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793"},
    )
    assert (record["messageId"], record["body"], record["eventSource"]) == ("m-1", body, "aws:sqs")
    assert (record["eventSourceARN"], record["awsRegion"]) == (
        "arn:aws:sqs:eu-west-1:210987654321:orders.fifo",
        "eu-west-1",
    )
    assert record["md5OfBody"] == hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()
    assert re.fullmatch(r"AQEB[0-9a-f]{32}", record["receiptHandle"])
    assert record["messageAttributes"] == {
        "colour": {
            "stringValue": "blue",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }
    attributes = record["attributes"]
    assert attributes == {
        "ApproximateReceiveCount": "3",
        "SentTimestamp": "1767225600000",
        "SenderId": attributes["SenderId"],
        "ApproximateFirstReceiveTimestamp": "1767225600005",
        "MessageGroupId": "acme",
        "SequenceNumber": str(18_800_000_000_000_000_000 + 1767225600000),
        "MessageDeduplicationId": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793",
    }
    assert re.fullmatch(r"AROA[A-Z0-9]+:tenantscope-producer", attributes["SenderId"])  # a role's session


def test_an_sqs_record_is_sent_now_and_named_afresh_unless_told() -> None:
    before = int(time.time() * 1000)
    first, second = (sqs_record("{}", {}) for _ in range(2))
    after = int(time.time() * 1000)
    assert before <= int(first["attributes"]["SentTimestamp"]) <= after
    assert (
        int(first["attributes"]["ApproximateFirstReceiveTimestamp"])
        == int(first["attributes"]["SentTimestamp"]) + 5
    )
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["messageId"] != second["messageId"] and first["receiptHandle"] != second["receiptHandle"]
    assert "MessageGroupId" not in first["attributes"]
    assert (first["eventSourceARN"], first["awsRegion"]) == (QUEUE_ARN, REGION)


@pytest.mark.parametrize(
    ("queue_arn", "region"),
    [
        ("arn:aws:sqs:ap-southeast-2:123456789012:q", "ap-southeast-2"),
        ("arn:aws:sqs::123456789012:q", REGION),
        ("arn:aws:sqs:eu-west-1", "eu-west-1"),
        ("arn:aws:sqs", REGION),
        ("orders", REGION),
    ],
    ids=["an ARN", "an ARN without its region", "four parts", "three parts", "a name"],
)
def test_a_records_region_is_its_queues_or_the_default(queue_arn: str, region: str) -> None:
    assert sqs_record("{}", {}, queue_arn=queue_arn)["awsRegion"] == region


def test_a_fifo_record_carries_the_producers_group_and_deduplication_id() -> None:
    body = '{"n":1}'
    record = signed_sqs_record(body, tenant_id="acme", queue_arn=FIFO_QUEUE_ARN)
    assert record["attributes"]["MessageGroupId"] == "acme"
    assert record["attributes"]["MessageDeduplicationId"] == fifo_deduplication_id("acme", body)
    assert (
        signed_sqs_record(body, tenant_id="acme", queue_arn=FIFO_QUEUE_ARN, group_id="g")["attributes"][
            "MessageGroupId"
        ]
        == "g"
    )


def test_a_standard_queues_record_keeps_the_group_it_is_given_and_its_queue() -> None:
    other = "arn:aws:sqs:us-east-1:123456789012:other-orders"
    record = signed_sqs_record("{}", tenant_id="acme", queue_arn=other, group_id="acme")
    assert (record["eventSourceARN"], record["attributes"]["MessageGroupId"]) == (other, "acme")
    assert "MessageDeduplicationId" not in record["attributes"]  # only a FIFO queue's


def test_message_attributes_are_converted_to_the_shape_lambda_delivers() -> None:
    converted = lambda_message_attributes(
        {
            "text": {"DataType": "String", "StringValue": "blue"},
            "count": {"DataType": "Number", "StringValue": "7"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "encoded": {"DataType": "Binary.gz", "BinaryValue": "AP8="},
        }
    )
    lists = {"stringListValues": [], "binaryListValues": []}
    assert converted == {
        "text": {**lists, "stringValue": "blue", "dataType": "String"},
        "count": {**lists, "stringValue": "7", "dataType": "Number"},
        "raw": {**lists, "binaryValue": "AP8=", "dataType": "Binary"},
        "encoded": {**lists, "binaryValue": "AP8=", "dataType": "Binary.gz"},
    }
    assert base64.b64decode(converted["raw"]["binaryValue"]) == b"\x00\xff"


def test_a_received_message_becomes_the_record_lambda_would_deliver() -> None:
    message = {
        "MessageId": "m-9",
        "ReceiptHandle": "handle-9",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"text": {"DataType": "String", "StringValue": "blue"}},
    }
    record = record_from_received(message, queue_arn="arn:aws:sqs:eu-west-1:123456789012:orders")
    assert record == {
        "messageId": "m-9",
        "receiptHandle": "handle-9",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "2"},
        "messageAttributes": lambda_message_attributes(message["MessageAttributes"]),
        "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders",
        "awsRegion": "eu-west-1",
    }
    bare = record_from_received(
        {k: message[k] for k in ("MessageId", "ReceiptHandle", "Body", "MD5OfBody")}, queue_arn=QUEUE_ARN
    )
    assert (bare["attributes"], bare["messageAttributes"]) == ({}, {})


def test_a_record_sealed_with_other_settings_lives_as_long_as_they_say() -> None:
    settings = Settings.load(environ={"TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": "120"})
    record = signed_sqs_record("{}", tenant_id="acme", settings=settings)
    _, envelope = resolve_sqs_record(record, RING, settings, now=time.time())
    assert envelope.expires_at - envelope.issued_at == 120


# --- the signing keys --------------------------------------------------------------------


def test_a_ring_spec_is_the_setting_that_loads_the_ring() -> None:
    spec = ring_spec(RING_DOCUMENT)
    assert spec.startswith("inline:") and " " not in spec  # compact: one environment variable
    ring = default_key_ring(Settings.load(environ={"TENANTSCOPE_SIGNING_KEYS": spec}))
    _, envelope = resolve_sqs_record(
        signed_sqs_record("{}", tenant_id="acme"), ring, SETTINGS, now=time.time()
    )
    assert envelope.tenant_id == "acme"


def test_a_ring_document_holds_each_key_in_base64() -> None:
    assert ring_document({"k1": KEY, "k2": b"\x01" * 32}, "k2") == {
        "active": "k2",
        "keys": {"k1": base64.b64encode(KEY).decode(), "k2": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
    }


# --- Step Functions ----------------------------------------------------------------------


def test_an_input_dated_in_the_past_is_the_producers_but_for_its_dates() -> None:
    payload = {"b": [1, 2], "a": "é"}
    issued = int(time.time()) - 60
    dated = sealed_input(payload, tenant_id="acme", issued_at=issued)
    now = seal_input(
        payload,
        state_machine_arn=STATE_MACHINE_ARN,
        execution_name="execution-1",
        tenant_id="acme",
        ring=RING,
        settings=SETTINGS,
    )
    assert dated["results"] == now["results"] == {}
    assert dated["tenantscope"]["body"] == now["tenantscope"]["body"]
    tenant, envelope, body = resolve_sfn_event(task_event(dated), RING, SETTINGS, now=time.time())
    assert (tenant.tenant_id, json.loads(body), envelope.issued_at) == ("acme", payload, issued)
    assert envelope.expires_at - envelope.issued_at == SETTINGS.sfn_envelope_ttl_seconds


def test_a_task_event_names_the_state_machine_it_is_sealed_for() -> None:
    other = STATE_MACHINE_ARN.replace("tenantscope-orders", "tenantscope-refunds")
    event = sfn_task_event({}, tenant_id="acme", state_machine_arn=other)
    assert event["execution"]["stateMachine"] == other
    tenant, _, _ = resolve_sfn_event(event, RING, SETTINGS, now=time.time())
    assert tenant.tenant_id == "acme"


def test_the_builders_seal_with_the_default_settings_not_the_environments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a process whose environment sets other lifetimes
    monkeypatch.setenv("TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS", "600")
    monkeypatch.setenv("TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS", "600")
    # WHEN events are built without settings, dated or not
    issued = int(time.time()) - 10
    for event in (
        sfn_task_event({}, tenant_id="acme"),
        sfn_task_event({}, tenant_id="acme", issued_at=issued),
    ):
        _, envelope, _ = resolve_sfn_event(event, RING, SETTINGS, now=time.time())
        # THEN they carry the defaults, as every test's events do wherever it runs
        assert envelope.expires_at - envelope.issued_at == SETTINGS.sfn_envelope_ttl_seconds
    _, sqs_envelope = resolve_sqs_record(
        signed_sqs_record("{}", tenant_id="acme"), RING, SETTINGS, now=time.time()
    )
    assert sqs_envelope.expires_at - sqs_envelope.issued_at == SETTINGS.sqs_envelope_ttl_seconds


def test_the_builders_agree_on_the_default_execution() -> None:
    for event in (task_event(sealed_input({}, tenant_id="acme")), sfn_task_event({}, tenant_id="acme")):
        assert event["execution"] == {"name": "execution-1", "stateMachine": STATE_MACHINE_ARN}
        tenant, _, _ = resolve_sfn_event(event, RING, SETTINGS, now=time.time())
        assert tenant.tenant_id == "acme"


@pytest.mark.parametrize("issued_at", [None, 0], ids=["now", "dated"])
def test_a_task_event_is_sealed_with_the_settings_given(issued_at: int | None) -> None:
    settings = Settings.load(environ={"TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS": "600"})
    when = None if issued_at is None else int(time.time()) - 10
    event = sfn_task_event({}, tenant_id="acme", settings=settings, issued_at=when)
    _, envelope, _ = resolve_sfn_event(event, RING, settings, now=time.time())
    assert envelope.expires_at - envelope.issued_at == 600


def test_a_task_event_dated_long_ago_is_refused_as_expired() -> None:
    event = sfn_task_event({}, tenant_id="acme", issued_at=int(time.time()) - 10 * 86_400)
    with pytest.raises(InvalidEnvelope) as refused:
        resolve_sfn_event(event, RING, SETTINGS, now=time.time())
    assert refused.value.reason is Reason.ENVELOPE_EXPIRED
