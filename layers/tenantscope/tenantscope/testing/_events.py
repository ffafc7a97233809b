"""Lambda events as the services deliver them: HTTP API requests, SQS records, Step Functions tasks.

Every envelope here is made by tenantscope's own producer functions (``sign_message`` and
``seal_input``) with a :class:`StaticKeyRing`, and every event has the shape Lambda and Step
Functions really deliver. Build the events your handlers receive here,
in your tests.

Only an envelope dated in the past or the future (``issued_at=...``) is sealed with the
lower-level ``seal``, because the producer functions always seal "now"; the fields and the
serialization are the same.

>>> record = signed_sqs_record('{"n":1}', tenant_id="acme", message_id="m-1")
>>> record["messageAttributes"]["tenantscope-tenant"]["stringValue"], record["eventSourceARN"] == QUEUE_ARN
('acme', True)
>>> event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-1")
>>> sorted(event), event["execution"]["name"]
(['execution', 'results', 'tenantscope'], 'acme-1')
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from .._config import Settings
from .._envelope import (
    SFN_KEY,
    seal,
    sfn_destination,
    sfn_envelope,
    sqs_destination,
    sqs_message_attributes,
)
from .._keyring import KeyRing, StaticKeyRing
from .._producer import execution_body, fifo_deduplication_id, seal_input, sign_message

__all__ = [
    "ACCOUNT_ID",
    "FIFO_QUEUE_ARN",
    "KEY",
    "KEY_ID",
    "QUEUE_ARN",
    "REGION",
    "RING",
    "RING_DOCUMENT",
    "STATE_MACHINE_ARN",
    "authorizer_claims",
    "http_api_event",
    "key_bytes",
    "lambda_message_attributes",
    "make_ring",
    "record_from_received",
    "rest_api_event",
    "ring_document",
    "ring_spec",
    "sealed_input",
    "sfn_task_event",
    "sign_attributes",
    "signed_sqs_record",
    "sqs_event",
    "sqs_record",
    "task_event",
]

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantscope-orders"
FIFO_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantscope-orders.fifo"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:tenantscope-orders"


def key_bytes(label: str) -> bytes:
    """A fixed 32-byte key derived from ``label`` (test material, never a real secret)."""
    return hashlib.sha256(f"tenantscope-test-key:{label}".encode()).digest()


def ring_document(keys: Mapping[str, bytes], active: str) -> dict[str, Any]:
    """The JSON key ring document (``{"active": ..., "keys": {id: base64}}``)."""
    return {"active": active, "keys": {k: base64.b64encode(v).decode("ascii") for k, v in keys.items()}}


def make_ring(keys: Mapping[str, bytes] | None = None, active: str | None = None) -> StaticKeyRing:
    """A :class:`StaticKeyRing` of ``keys`` (default: the one test key) signing with ``active``."""
    keys = keys or {KEY_ID: KEY}
    return StaticKeyRing(ring_document(keys, active or next(iter(keys))))


def ring_spec(document: Mapping[str, Any]) -> str:
    """The ``TENANTSCOPE_SIGNING_KEYS`` value for an inline ring."""
    return "inline:" + json.dumps(document, separators=(",", ":"))


KEY_ID = "k1"
KEY = key_bytes(KEY_ID)
RING_DOCUMENT = ring_document({KEY_ID: KEY}, KEY_ID)
RING = StaticKeyRing(RING_DOCUMENT)


# --- API Gateway -------------------------------------------------------------------------


def authorizer_claims(token: str) -> dict[str, str]:
    """The claims an HTTP API's JWT authorizer passes on for ``token``, each as a string as it
    writes them: a string as it is, an array as ``[a b]``, anything else as its JSON text.

    Read without verification: the token is one the caller just minted.
    """
    claims = jwt.decode(token, options={"verify_signature": False})
    return {name: _claim_text(value) for name, value in claims.items()}


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(map(_claim_text, value)) + "]"
    return json.dumps(value)


_API_ID = "a1b2c3d4e5"
_SOURCE_IP = "198.51.100.7"  # a documentation address (RFC 5737)
_USER_AGENT = "tenantscope-tests"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestContext`` time, ``12/Mar/2020:19:03:58 +0000``, in any locale."""
    moment = time.gmtime(epoch_ms / 1000)
    month = _MONTHS[moment.tm_mon - 1]
    return f"{moment.tm_mday:02d}/{month}/{moment.tm_year}:{time.strftime('%H:%M:%S', moment)} +0000"


def http_api_event(
    token: str | None,
    *,
    method: str = "GET",
    path: str = "/items",
    route: str | None = None,
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    claims: dict[str, str] | None = None,
    stage: str = "$default",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2) proxy event; ``route`` is the matched path pattern.

    ``claims`` are the JWT authorizer's (``requestContext.authorizer.jwt.claims``), for a request
    a deployed API with an authorizer passes on. A ``stage`` other than ``$default`` is served
    under its name, and API Gateway passes the path as requested, with the stage first
    (``/dev/items``); the route key is the route's alone. What API Gateway sends only when there
    is some (cookies, a query string's parameters, stage variables, a client certificate) is left out.
    """
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    route_key = f"{method} {route or path}"
    requested = path if stage == "$default" else f"/{stage}{path}"
    epoch_ms = int(time.time() * 1000)
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": _API_ID,
        "domainName": f"{_API_ID}.execute-api.{REGION}.amazonaws.com",
        "domainPrefix": _API_ID,
        "http": {
            "method": method,
            "path": requested,
            "protocol": "HTTP/1.1",
            "sourceIp": _SOURCE_IP,
            "userAgent": _USER_AGENT,
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": stage,
        "time": _request_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    if claims is not None:
        request_context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": requested,
        "rawQueryString": "",
        "headers": all_headers,
        "pathParameters": path_parameters or {},
        "requestContext": request_context,
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


# Who called, as a REST API's request context names it: null for an unauthenticated caller.
_REST_IDENTITY_NULLS = (
    "cognitoIdentityPoolId",
    "accountId",
    "cognitoIdentityId",
    "caller",
    "accessKey",
    "cognitoAuthenticationType",
    "cognitoAuthenticationProvider",
    "userArn",
    "user",
)


def rest_api_event(
    token: str | None, *, header_name: str = "Authorization", multi_value: bool = False
) -> dict[str, Any]:
    """An API Gateway REST API (payload v1) proxy event: ``GET /items`` on the ``prod`` stage.

    What API Gateway sends as null when there is none (query string parameters, path
    parameters, stage variables, a body) is null.
    """
    value = f"Bearer {token}" if token is not None else None
    headers = {header_name: value} if value is not None and not multi_value else {}
    multi = {header_name: [value]} if value is not None and multi_value else {}
    epoch_ms = int(time.time() * 1000)
    identity = dict.fromkeys(_REST_IDENTITY_NULLS) | {"sourceIp": _SOURCE_IP, "userAgent": _USER_AGENT}
    return {
        "resource": "/items",
        "path": "/items",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": _API_ID,
            "resourceId": "abc123",
            "resourcePath": "/items",
            "httpMethod": "GET",
            "path": "/prod/items",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "requestTime": _request_time(epoch_ms),
            "requestTimeEpoch": epoch_ms,
            "identity": identity,
            "protocol": "HTTP/1.1",
        },
        "body": None,
        "isBase64Encoded": False,
    }


# --- SQS ---------------------------------------------------------------------------------


def sign_attributes(
    body: str,
    *,
    tenant_id: str,
    queue_arn: str = QUEUE_ARN,
    ring: KeyRing | None = None,
    settings: Settings | None = None,
    issued_at: int | None = None,
    lifetime: int | None = None,
) -> dict[str, dict[str, str]]:
    """The SendMessage ``MessageAttributes`` that seal ``body`` for ``queue_arn``.

    By default made by the producer's ``sign_message`` at the current time. With
    ``issued_at`` (epoch seconds) the envelope is dated then, for expired or future ones.
    """
    ring = ring or RING
    settings = settings or Settings.load(environ={})
    if issued_at is None:
        return sign_message(body, destination=queue_arn, tenant_id=tenant_id, ring=ring, settings=settings)
    envelope, signature = seal(
        body,
        tenant_id=tenant_id,
        destination=sqs_destination(queue_arn),
        ring=ring,
        now=issued_at,
        lifetime=settings.sqs_envelope_ttl_seconds if lifetime is None else lifetime,
    )
    return sqs_message_attributes(envelope, signature)


def lambda_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """SendMessage/ReceiveMessage ``MessageAttributes`` in the shape Lambda delivers them."""
    converted: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        value: dict[str, Any] = {"stringListValues": [], "binaryListValues": []}
        if "StringValue" in attribute:
            value["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            raw = attribute["BinaryValue"]
            value["binaryValue"] = base64.b64encode(raw).decode("ascii") if isinstance(raw, bytes) else raw
        value["dataType"] = attribute["DataType"]
        converted[name] = value
    return converted


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else REGION


def sqs_record(
    body: str,
    message_attributes: Mapping[str, Mapping[str, Any]],
    *,
    queue_arn: str = QUEUE_ARN,
    message_id: str | None = None,
    group_id: str | None = None,
    receive_count: int = 1,
    sent_at_ms: int | None = None,
    extra_attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One record of a Lambda SQS event. ``message_attributes`` are in SendMessage form.

    On a FIFO queue (an ARN ending in ``.fifo``) it carries a sequence number and a deduplication
    id; ``group_id`` is its message group (a FIFO queue needs one; a standard queue's is for fair
    queueing). ``extra_attributes`` (``AWSTraceHeader``, a ``MessageDeduplicationId``) are added
    to, or replace, the system attributes.
    """
    sent = int(time.time() * 1000) if sent_at_ms is None else sent_at_ms
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(sent),
        "SenderId": "AROAEXAMPLEPRODUCER:tenantscope-producer",
        "ApproximateFirstReceiveTimestamp": str(sent + 5),
    }
    if group_id is not None:  # a FIFO queue's, or a standard queue's fair-queueing group
        attributes["MessageGroupId"] = group_id
    if queue_arn.endswith(".fifo"):
        # What a FIFO queue adds; the deduplication id as content-based deduplication makes it.
        attributes["SequenceNumber"] = str(18_800_000_000_000_000_000 + sent)
        attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode("utf-8")).hexdigest()
    attributes.update(extra_attributes or {})
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": body,
        "attributes": attributes,
        "messageAttributes": lambda_message_attributes(message_attributes),
        "md5OfBody": hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": _region_of(queue_arn),
    }


def signed_sqs_record(
    body: str,
    *,
    tenant_id: str,
    queue_arn: str = QUEUE_ARN,
    sealed_for: str | None = None,
    ring: KeyRing | None = None,
    settings: Settings | None = None,
    issued_at: int | None = None,
    message_id: str | None = None,
    group_id: str | None = None,
) -> dict[str, Any]:
    """A Lambda SQS record whose ``body`` is sealed for ``tenant_id``.

    It arrives on ``queue_arn``; it was sealed for ``sealed_for`` (default: the same queue).
    On a FIFO queue the group defaults to the tenant id and the deduplication id is the one
    ``send_message`` sends, as the producer sends them.
    """
    attributes = sign_attributes(
        body,
        tenant_id=tenant_id,
        queue_arn=sealed_for or queue_arn,
        ring=ring,
        settings=settings,
        issued_at=issued_at,
    )
    fifo = queue_arn.endswith(".fifo")
    return sqs_record(
        body,
        attributes,
        queue_arn=queue_arn,
        message_id=message_id,
        group_id=tenant_id if group_id is None and fifo else group_id,
        extra_attributes={"MessageDeduplicationId": fifo_deduplication_id(tenant_id, body)} if fifo else None,
    )


def sqs_event(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A Lambda SQS event (a batch)."""
    return {"Records": [dict(r) for r in records]}


def record_from_received(message: Mapping[str, Any], *, queue_arn: str) -> dict[str, Any]:
    """The Lambda record for a message from ``ReceiveMessage`` (ask for all attributes).

    This is what the SQS event source mapping builds: the message as stored, the queue's ARN.
    """
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": _region_of(queue_arn),
    }


# --- Step Functions ----------------------------------------------------------------------


def sealed_input(
    payload: Any,
    *,
    tenant_id: str,
    state_machine_arn: str = STATE_MACHINE_ARN,
    execution_name: str = "execution-1",
    ring: KeyRing | None = None,
    settings: Settings | None = None,
    issued_at: int | None = None,
) -> dict[str, Any]:
    """The execution input for one execution, as ``start_execution`` sends it.

    By default made by the producer's ``seal_input``; with ``issued_at`` it is dated then.
    """
    ring = ring or RING
    settings = settings or Settings.load(environ={})
    if issued_at is None:
        return seal_input(
            payload,
            state_machine_arn=state_machine_arn,
            execution_name=execution_name,
            tenant_id=tenant_id,
            ring=ring,
            settings=settings,
        )
    body = execution_body(payload)
    envelope, signature = seal(
        body,
        tenant_id=tenant_id,
        destination=sfn_destination(state_machine_arn, execution_name),
        ring=ring,
        now=issued_at,
        lifetime=settings.sfn_envelope_ttl_seconds,
    )
    return {SFN_KEY: sfn_envelope(envelope, signature, body), "results": {}}


def task_event(
    state: Mapping[str, Any],
    *,
    execution_name: str = "execution-1",
    state_machine_arn: str = STATE_MACHINE_ARN,
) -> dict[str, Any]:
    """The Payload a task state passes (see tenantscope.sfn) given the state's input ``state``.

    Step Functions re-serializes JSON between states; so does this (a JSON round trip).
    """
    payload: dict[str, Any] = json.loads(
        json.dumps(
            {
                SFN_KEY: state.get(SFN_KEY),
                "results": state.get("results"),
                "execution": {"name": execution_name, "stateMachine": state_machine_arn},
            }
        )
    )
    return payload


def sfn_task_event(
    payload: Any,
    *,
    tenant_id: str,
    execution_name: str = "execution-1",
    state_machine_arn: str = STATE_MACHINE_ARN,
    ring: KeyRing | None = None,
    settings: Settings | None = None,
    issued_at: int | None = None,
) -> dict[str, Any]:
    """The event the first task of an execution started with ``payload`` receives."""
    state = sealed_input(
        payload,
        tenant_id=tenant_id,
        state_machine_arn=state_machine_arn,
        execution_name=execution_name,
        ring=ring,
        settings=settings,
        issued_at=issued_at,
    )
    return task_event(state, execution_name=execution_name, state_machine_arn=state_machine_arn)
