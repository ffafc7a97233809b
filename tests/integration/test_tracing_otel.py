"""What the OpenTelemetry backend records for each trigger, on moto, with the real STS vendor.

The spans go to the OpenTelemetry SDK's in-memory exporter. botocore is instrumented with
opentelemetry-instrumentation-botocore on the same provider (for this module only), as the ADOT
layer instruments it, so each STS, DynamoDB, S3, SQS and Step Functions call is a span too. Where
the ADOT layer's Lambda instrumentation would have opened the invocation's span, the tests open
one. The facts checked are those tests/integration/test_tracing.py checks in X-Ray's documents.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tenantscope import (
    SqsRecord,
    TenantAuthError,
    api_handler,
    send_message,
    set_tracer,
    sfn_task,
    sqs_handler,
    start_execution,
    tenant_bucket,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope._otel import XRAY_ANNOTATIONS
from tenantscope.testing import QUEUE_ARN, RING, LocalIssuer, record_from_received, sfn_task_event, sqs_event
from tests.conftest import BUCKET, REGION, LambdaContext, http_api_event
from tests.integration.conftest import assumed_roles
from tests.integration.tracing_support import (
    BATCH,
    Secrets,
    batch_records,
    put_and_get,
    receive_all,
    record_work,
    recording_sfn_client,
    state_machine,
)
from tests.otel_capture import Captured, trace_id

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_PARENT = "53995c3f42cd8ad8"


@pytest.fixture(scope="module")
def instrumented() -> Iterator[Captured]:
    captured = Captured()
    BotocoreInstrumentor().instrument(tracer_provider=captured.provider)
    yield captured
    BotocoreInstrumentor().uninstrument()


@pytest.fixture
def otel(aws: None, instrumented: Captured, monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """The OpenTelemetry backend, as the ADOT layer would have it, exporting into a list."""
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    instrumented.exporter.clear()
    set_tracer(instrumented.tracer)
    yield instrumented
    set_tracer(None)


def calls(otel: Captured, span: ReadableSpan) -> list[tuple[str, str]]:
    """(service, operation) of every AWS call under ``span``, in order."""
    found = [dict(s.attributes or {}) for s in otel.children(span) if s.kind is SpanKind.CLIENT]
    return [(str(a["rpc.service"]), str(a["rpc.method"])) for a in found]


def annotations(span: ReadableSpan) -> dict[str, Any]:
    """What X-Ray indexes: the attributes that ``aws.xray.annotations`` lists."""
    attributes = dict(span.attributes or {})
    return {key: attributes[key] for key in attributes[XRAY_ANNOTATIONS] if key in attributes}


def exception_types(span: ReadableSpan) -> list[str]:
    return [
        str((event.attributes or {})["exception.type"]).rpartition(".")[2]
        for event in span.events
        if event.name == "exception"
    ]


def documents(otel: Captured) -> list[str]:
    return [span.to_json() for span in otel.spans()]


# --- API ---------------------------------------------------------------------------------


def test_an_api_call_is_one_span_with_sts_dynamodb_and_s3_under_it(
    otel: Captured, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        tenant_bucket(BUCKET).put("receipts/order-1.json", b"{}")
        return {"statusCode": 200}

    secrets.tokens.append(token := issuer.token("acme"))
    with trace.use_span(otel.invocation("orders-api"), end_on_exit=True) as invocation:
        assert handler(http_api_event(token), LambdaContext())["statusCode"] == 200

    (span,) = otel.named("tenantscope.api")
    assert span.parent is not None and span.parent.span_id == invocation.get_span_context().span_id
    assert span.kind is SpanKind.INTERNAL and span.status.status_code is StatusCode.UNSET
    assert annotations(span) == {
        "tenant_id": "acme",
        "tenant_source": "jwt",
        "cold_start": annotations(span)["cold_start"],
    }
    assert isinstance(annotations(span)["cold_start"], bool)
    assert calls(otel, span) == [
        ("STS", "AssumeRole"),
        ("DynamoDB", "PutItem"),
        ("DynamoDB", "GetItem"),
        ("S3", "PutObject"),
    ]
    for call in otel.children(span):
        assert otel.unit_of(call) == span
        assert call.context.trace_id == span.context.trace_id
    secrets.assert_none_in(documents(otel))


def test_a_refused_api_call_is_a_client_error_without_a_tenant(
    otel: Captured, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise AssertionError("must not run")

    secrets.tokens.append(token := issuer.token("acme", lifetime=-3600))  # expired
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 401
    (span,) = otel.named("tenantscope.api")
    assert span.status.status_code is StatusCode.UNSET  # a refused caller is not a fault
    assert exception_types(span) == ["Unauthorized"]
    assert annotations(span) == {
        "cold_start": annotations(span)["cold_start"],
        "failure": "error",
        "error_type": "Unauthorized",
        "reason": "token-expired",
    }
    assert otel.children(span) == []  # no STS call for a refused caller
    secrets.assert_none_in(documents(otel))


# --- SQS ---------------------------------------------------------------------------------


def producer_root(message_id: str) -> str:
    """The trace of the request that sent a message: one per message."""
    return f"1-5759e988-{message_id.encode().hex():0>24}"


PRODUCER_PARENT = "00000000000000aa"


def test_a_mixed_tenant_batch_of_10_with_2_failures_yields_10_spans_in_their_requests_traces(
    otel: Captured, sts_vendor: CredentialVendor, secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN 10 records of 5 tenants, each sent from its own request's trace, one forged, one failing
    def work(record: SqsRecord, context: Any) -> None:
        logging.getLogger("app.worker").info("working on the record")
        record_work(record, context)

    handler = sqs_handler(ring=RING)(work)
    records = batch_records()
    for record in records:
        root = producer_root(record["messageId"])
        record["attributes"]["AWSTraceHeader"] = f"Root={root};Parent={PRODUCER_PARENT};Sampled=1"

    # WHEN one invocation processes the batch
    with trace.use_span(otel.invocation("orders-worker", SpanKind.CONSUMER), end_on_exit=True) as batch:
        result = handler(sqs_event(records), LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-05"}, {"itemIdentifier": "m-07"}]}

    # THEN each record is one span, in the trace of the request that sent it, linked to the batch
    spans = otel.named("tenantscope.sqs")
    assert len(spans) == 10
    by_message = {annotations(span)["message_id"]: span for span in spans}
    assert sorted(by_message) == [m for m, _, _ in BATCH]
    first_of_tenant: set[str] = set()
    for message_id, tenant, outcome in BATCH:
        span = by_message[message_id]
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == trace_id(producer_root(message_id))
        assert span.parent is not None and span.parent.span_id == int(PRODUCER_PARENT, 16)
        assert [link.context for link in span.links] == [batch.get_span_context()]
        if outcome == "tampered":  # no verified tenant: no tenant attribute, no AWS call
            assert annotations(span) == {
                "message_id": message_id,
                "failure": "error",
                "error_type": "InvalidEnvelope",
                "reason": "bad-envelope-signature",
            }
            assert span.status.status_code is StatusCode.UNSET
            assert exception_types(span) == ["InvalidEnvelope"]
            assert otel.children(span) == []
            continue
        assert annotations(span)["tenant_id"] == tenant
        assert annotations(span)["tenant_source"] == "sqs"
        made = calls(otel, span)
        assert made.count(("DynamoDB", "PutItem")) == 1 and made.count(("DynamoDB", "GetItem")) == 1
        # Credentials are cached per tenant: STS is called in the first record of each tenant only.
        assert made.count(("STS", "AssumeRole")) == (0 if tenant in first_of_tenant else 1)
        first_of_tenant.add(tenant)
        if outcome == "raises":
            assert span.status.status_code is StatusCode.ERROR
            assert exception_types(span) == ["RuntimeError"]
            assert (annotations(span)["failure"], annotations(span)["error_type"]) == (
                "fault",
                "RuntimeError",
            )
        else:
            assert span.status.status_code is StatusCode.UNSET and span.events == ()
            assert "failure" not in annotations(span)
    # Every AWS call of the batch sits under the span of the record, hence the tenant, that made it.
    for call in otel.spans():
        if call.kind is SpanKind.CLIENT:
            assert otel.unit_of(call) in spans
    assert [r.session_name for r in assumed_roles()] == ["acme", "globex", "initech", "hooli"]
    # AND each record's log line carries its own tenant fields, as with X-Ray or without tracing
    lines = [r for r in caplog.records if r.getMessage() == "working on the record"]
    assert [(r.__dict__["tenant_id"], r.__dict__["message_id"]) for r in lines] == [
        (tenant, message_id) for message_id, tenant, outcome in BATCH if outcome != "tampered"
    ]
    assert {r.__dict__["tenant_source"] for r in lines} == {"sqs"}
    secrets.assert_none_in(documents(otel))


# --- Step Functions ----------------------------------------------------------------------


def test_a_step_functions_task_continues_the_executions_trace_with_tenant_execution_and_task(
    otel: Captured, sts_vendor: CredentialVendor, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the trace header Step Functions gave the task's invocation, and no invocation span
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=1")

    @sfn_task(ring=RING)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> dict[str, str]:
        put_and_get("reservation")
        return {"reserved": "yes"}

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    assert reserve_inventory(event, LambdaContext())["results"] == {"reserve_inventory": {"reserved": "yes"}}

    (span,) = otel.named("tenantscope.sfn")
    assert span.context.trace_id == trace_id(TRACE_ROOT)
    assert span.parent is not None and span.parent.span_id == int(LAMBDA_PARENT, 16)
    assert annotations(span) == {
        "task": "reserve_inventory",
        "tenant_id": "acme",
        "tenant_source": "sfn",
        "execution_name": "acme-exec-1",
    }
    assert set(calls(otel, span)) == {("STS", "AssumeRole"), ("DynamoDB", "PutItem"), ("DynamoDB", "GetItem")}
    secrets.assert_none_in(documents(otel))


def test_a_refused_step_functions_task_is_a_client_error(
    otel: Captured, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    @sfn_task(ring=RING, name="reserve_inventory")
    def task(payload: dict[str, Any], context: Any) -> None:
        raise AssertionError("must not run")

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    event["execution"]["name"] = "acme-exec-2"  # replayed into another execution
    with pytest.raises(TenantAuthError):
        task(event, LambdaContext())
    (span,) = otel.named("tenantscope.sfn")
    assert annotations(span) == {
        "task": "reserve_inventory",
        "failure": "error",
        "error_type": "InvalidEnvelope",
        "reason": "bad-envelope-signature",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert exception_types(span) == ["InvalidEnvelope"]
    secrets.assert_none_in(documents(otel))


# --- propagation: API -> SQS -> Step Functions is one trace ------------------------------


def test_one_request_is_one_trace_from_the_api_through_the_queue_to_the_task(
    otel: Captured,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=QUEUE_ARN.rsplit(":", 1)[1])["QueueUrl"]
    sfn, started = recording_sfn_client()
    machine_arn = state_machine(sfn)

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        send_message(queue_url, '{"order":1}', ring=RING, client=sqs)
        return {"statusCode": 202}

    @sqs_handler(ring=RING)
    def worker(record: SqsRecord, context: Any) -> None:
        start_execution(machine_arn, record.json, ring=RING, client=sfn, name="acme-order-1")

    @sfn_task(ring=RING)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> None:
        put_and_get("reservation")

    # GIVEN a request to the API: its invocation's span, then tenantscope's
    secrets.tokens.append(token := issuer.token("acme"))
    with trace.use_span(otel.invocation("orders-api"), end_on_exit=True):
        assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = otel.named("tenantscope.api")
    request = api_span.context.trace_id
    (message,) = receive_all(sqs, queue_url)
    root = f"{request:032x}"
    assert message["Attributes"]["AWSTraceHeader"] == (
        f"Root=1-{root[:8]}-{root[8:]};Parent={api_span.context.span_id:016x};Sampled=1"
    )
    assert ("SQS", "SendMessage") in calls(otel, api_span)

    # WHEN the worker's invocation (a trace of its own) processes the message
    record = record_from_received(message, queue_arn=QUEUE_ARN)
    with trace.use_span(otel.invocation("orders-worker", SpanKind.CONSUMER), end_on_exit=True) as batch:
        assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    (worker_span,) = otel.named("tenantscope.sqs")
    assert batch.get_span_context().trace_id != request
    # THEN the record's span is in the request's trace, under the API's span
    assert worker_span.context.trace_id == request
    assert worker_span.parent is not None and worker_span.parent.span_id == api_span.context.span_id
    assert ("SFN", "StartExecution") in calls(otel, worker_span)
    # AND the execution continues it under the record's span
    (params,) = started
    assert params["traceHeader"] == (
        f"Root=1-{root[:8]}-{root[8:]};Parent={worker_span.context.span_id:016x};Sampled=1"
    )

    # AND the task that the execution invokes (Lambda's trace header: the execution's) is in it too
    monkeypatch.setenv("_X_AMZN_TRACE_ID", params["traceHeader"])
    sealed = json.loads(params["input"])
    reserve_inventory(
        {**sealed, "execution": {"name": params["name"], "stateMachine": machine_arn}}, LambdaContext()
    )
    (task_span,) = otel.named("tenantscope.sfn")
    assert task_span.context.trace_id == request
    assert annotations(task_span)["tenant_id"] == "acme"
    secrets.assert_none_in(documents(otel))
