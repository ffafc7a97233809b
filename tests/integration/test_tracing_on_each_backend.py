"""What each tracing backend records for each trigger, on moto, with the real STS vendor.

The same scenario runs on X-Ray (the SDK's documents) and on OpenTelemetry (the SDK's finished
spans, with botocore instrumented as the ADOT layer instruments it); the ``tracing`` fixture
(tests/integration/conftest.py) yields each in turn, read into one shape
(tracing_support.RecordedSpan). What only one backend does (X-Ray's S3 keys, its Lambda context;
OpenTelemetry's trace across the queue) is tested in that backend's own file.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tenantscope import (
    SqsRecord,
    TenantAuthError,
    api_handler,
    sfn_task,
    sqs_handler,
    start_execution,
    tenant_bucket,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope.testing import RING, LocalIssuer, sfn_task_event, sqs_event
from tests.conftest import BUCKET, LambdaContext, http_api_event
from tests.integration.conftest import assumed_roles
from tests.integration.tracing_support import (
    BATCH,
    Secrets,
    TracingBackend,
    batch_records,
    put_and_get,
    record_work,
    recording_sfn_client,
    state_machine,
)
from tests.trace_ids import LAMBDA_PARENT, PRODUCER_PARENT, TRACE_ROOT

# --- API ---------------------------------------------------------------------------------


def test_an_api_call_is_one_span_with_sts_dynamodb_and_s3_under_it(
    tracing: TracingBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        tenant_bucket(BUCKET).put("receipts/order-1.json", b"{}")
        return {"statusCode": 200}

    secrets.tokens.append(token := issuer.token("acme"))
    with tracing.invocation("orders-api"):
        assert handler(http_api_event(token), LambdaContext())["statusCode"] == 200

    (span,) = tracing.named("tenantscope.api")
    assert tracing.top_level() == [span]  # right under the invocation, and nothing escaped it
    assert span.trace_id == tracing.invocation_trace_id
    assert span.kind == tracing.unit_kinds["tenantscope.api"]
    assert span.outcome == "ok"
    # the first unit of work of the process (the fixtures reset its state)
    assert span.annotations == {"tenant_id": "acme", "tenant_source": "jwt", "cold_start": True}
    below = tracing.below(span)
    assert [call.call for call in below] == [
        ("sts", "AssumeRole"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "GetItem"),
        ("s3", "PutObject"),
    ]
    for call in below:
        assert call.unit_id == span.id
        assert call.trace_id == span.trace_id
    secrets.assert_none_in(tracing.documents())


def test_a_refused_api_call_is_a_client_error_without_a_tenant(
    tracing: TracingBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise AssertionError("must not run")

    secrets.tokens.append(token := issuer.token("acme", lifetime=-3600))  # expired
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 401
    (span,) = tracing.named("tenantscope.api")
    assert span.outcome == "error"  # a refused caller is the client's error, not a fault
    assert span.exception_types == ["Unauthorized"]
    assert span.annotations == {
        "cold_start": True,  # a refused call is still the process's first unit of work
        "failure": "error",
        "error_type": "Unauthorized",
        "reason": "token-expired",
    }
    assert tracing.below(span) == []  # no STS call for a refused caller
    secrets.assert_none_in(tracing.documents())


def test_start_execution_in_an_api_scope_continues_the_api_span(
    tracing: TracingBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
) -> None:
    sfn, started = recording_sfn_client()
    machine_arn = state_machine(sfn)

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        start_execution(machine_arn, {"order": 1}, ring=RING, client=sfn)
        return {"statusCode": 202}

    secrets.tokens.append(token := issuer.token("acme"))
    with tracing.invocation("orders-api"):
        assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = tracing.named("tenantscope.api")
    (params,) = started
    assert params["traceHeader"] == f"Root={tracing.invocation_trace_id};Parent={api_span.id};Sampled=1"
    secrets.assert_none_in(tracing.documents())


# --- SQS ---------------------------------------------------------------------------------


def producer_root(message_id: str) -> str:
    """The trace of the request that sent a message: one per message."""
    return f"1-5759e988-{message_id.encode().hex():0>24}"


def test_a_mixed_tenant_batch_of_10_with_2_failures_yields_10_annotated_spans(
    tracing: TracingBackend, sts_vendor: CredentialVendor, secrets: Secrets, caplog: pytest.LogCaptureFixture
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
    with tracing.invocation("orders-worker", consumer=True):
        result = handler(sqs_event(records), LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-05"}, {"itemIdentifier": "m-07"}]}

    # THEN each record is one span, annotated with its message and tenant
    spans = tracing.named("tenantscope.sqs")
    assert len(spans) == 10
    by_message = {span.annotations["message_id"]: span for span in spans}
    assert sorted(by_message) == [m for m, _, _ in BATCH]
    if tracing.name == "otel":
        # A span may start in another trace: each record's continues the request that sent it,
        # linked to the invocation, in whose trace nothing of the batch is left.
        assert tracing.top_level() == []
    else:
        # A subsegment stays in its segment's trace: every record's is under Lambda's segment
        # (Lambda links the invocation to the messages' traces).
        assert sorted(tracing.top_level(), key=lambda s: s.id) == sorted(spans, key=lambda s: s.id)
    first_of_tenant: set[str] = set()
    for message_id, tenant, outcome in BATCH:
        span = by_message[message_id]
        assert span.kind == tracing.unit_kinds["tenantscope.sqs"]
        if tracing.name == "otel":
            assert (span.trace_id, span.parent_id) == (producer_root(message_id), PRODUCER_PARENT)
            assert span.links == (tracing.invocation_id,)
        if outcome == "tampered":  # no verified tenant: no tenant annotation, no AWS call
            assert span.annotations == {
                "message_id": message_id,
                "failure": "error",
                "error_type": "InvalidEnvelope",
                "reason": "bad-envelope-signature",
            }
            assert span.outcome == "error"
            assert span.exception_types == ["InvalidEnvelope"]
            assert tracing.below(span) == []
            continue
        assert span.annotations["tenant_id"] == tenant
        assert span.annotations["tenant_source"] == "sqs"
        made = [call.call for call in tracing.below(span)]
        assert made.count(("dynamodb", "PutItem")) == 1 and made.count(("dynamodb", "GetItem")) == 1
        # Credentials are cached per tenant: STS is called in the first record of each tenant only.
        assert made.count(("sts", "AssumeRole")) == (0 if tenant in first_of_tenant else 1)
        first_of_tenant.add(tenant)
        if outcome == "raises":
            assert span.outcome == "fault"
            assert span.exception_types == ["RuntimeError"]
            assert (span.annotations["failure"], span.annotations["error_type"]) == ("fault", "RuntimeError")
        else:
            assert span.outcome == "ok"
            assert "failure" not in span.annotations
    # Every AWS call of the batch sits under the span of the record, hence the tenant, that made it.
    record_span_ids = {span.id for span in spans}
    calls = tracing.aws_calls()
    assert calls
    for call in calls:
        assert call.unit_id in record_span_ids
    assert [r.session_name for r in assumed_roles()] == ["acme", "globex", "initech", "hooli"]
    # AND each record's log line carries its own tenant fields, whichever the backend
    lines = [r for r in caplog.records if r.getMessage() == "working on the record"]
    assert [(r.__dict__["tenant_id"], r.__dict__["message_id"]) for r in lines] == [
        (tenant, message_id) for message_id, tenant, outcome in BATCH if outcome != "tampered"
    ]
    assert {r.__dict__["tenant_source"] for r in lines} == {"sqs"}
    secrets.assert_none_in(tracing.documents())


# --- Step Functions ----------------------------------------------------------------------


def test_a_step_functions_task_continues_the_executions_trace_with_tenant_execution_and_task(
    tracing: TracingBackend, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    # GIVEN the trace header Step Functions gave the task's invocation (LAMBDA_TRACE_HEADER), and
    # no invocation span
    @sfn_task(ring=RING)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> dict[str, str]:
        put_and_get("reservation")
        return {"reserved": "yes"}

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    assert reserve_inventory(event, LambdaContext())["results"] == {"reserve_inventory": {"reserved": "yes"}}

    (span,) = tracing.named("tenantscope.sfn")
    assert tracing.top_level() == [span]
    assert (span.trace_id, span.parent_id) == (TRACE_ROOT, LAMBDA_PARENT)
    assert span.annotations == {
        "task": "reserve_inventory",
        "tenant_id": "acme",
        "tenant_source": "sfn",
        "execution_name": "acme-exec-1",
    }
    assert {call.call for call in tracing.below(span)} == {
        ("sts", "AssumeRole"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "GetItem"),
    }
    secrets.assert_none_in(tracing.documents())


def test_a_refused_step_functions_task_is_a_client_error(
    tracing: TracingBackend, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    @sfn_task(ring=RING, name="reserve_inventory")
    def task(payload: dict[str, Any], context: Any) -> None:
        raise AssertionError("must not run")

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    event["execution"]["name"] = "acme-exec-2"  # replayed into another execution
    with pytest.raises(TenantAuthError):
        task(event, LambdaContext())
    (span,) = tracing.named("tenantscope.sfn")
    # The span names the precise cause; the state machine sees the Catch-able TenantAuthError.
    assert span.annotations == {
        "task": "reserve_inventory",
        "failure": "error",
        "error_type": "InvalidEnvelope",
        "reason": "bad-envelope-signature",
    }
    assert span.outcome == "error"
    assert span.exception_types == ["InvalidEnvelope"]
    secrets.assert_none_in(tracing.documents())
