"""What only the OpenTelemetry backend does, on moto, with the real STS vendor: one request is one
trace from the API through the queue to the task, since a span, unlike an X-Ray subsegment, may
continue another trace than its invocation's.

The ``otel`` fixture (tests/integration/conftest.py) exports the spans into a list, with botocore
instrumented on the same provider as the ADOT layer instruments it. Where the ADOT layer's Lambda
instrumentation would have opened the invocation's span, the test opens one. What both backends
record alike is tested once for both, in tests/integration/test_tracing_on_each_backend.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tenantscope import sfn_task
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope.testing import QUEUE_ARN, RING, LocalIssuer, record_from_received, sqs_event
from tests.conftest import LambdaContext, http_api_event
from tests.integration.tracing_support import OTelBackend, Secrets, order_pipeline, put_and_get, receive_all


def test_one_request_is_one_trace_from_the_api_through_the_queue_to_the_task(
    otel: OTelBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = order_pipeline()
    api = orders.api_queueing_an_order(jwks)
    worker = orders.worker_starting_executions(name="acme-order-1")

    @sfn_task(ring=RING)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> None:
        put_and_get("reservation")

    # GIVEN a request to the API: its invocation's span, then tenantscope's
    secrets.tokens.append(token := issuer.token("acme"))
    with otel.invocation("orders-api"):
        assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = otel.named("tenantscope.api")
    request = api_span.trace_id
    (message,) = receive_all(orders.sqs, orders.queue_url)
    assert message["Attributes"]["AWSTraceHeader"] == f"Root={request};Parent={api_span.id};Sampled=1"
    assert ("sqs", "SendMessage") in [call.call for call in otel.below(api_span)]

    # WHEN the worker's invocation (a trace of its own) processes the message
    record = record_from_received(message, queue_arn=QUEUE_ARN)
    with otel.invocation("orders-worker", consumer=True):
        assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    (worker_span,) = otel.named("tenantscope.sqs")
    assert otel.invocation_trace_id != request
    # THEN the record's span is in the request's trace, under the API's span
    assert worker_span.trace_id == request
    assert worker_span.parent_id == api_span.id
    assert ("states", "StartExecution") in [call.call for call in otel.below(worker_span)]
    # AND the execution continues it under the record's span
    (params,) = orders.started
    assert params["traceHeader"] == f"Root={request};Parent={worker_span.id};Sampled=1"

    # AND the task that the execution invokes (Lambda's trace header: the execution's) is in it too
    monkeypatch.setenv("_X_AMZN_TRACE_ID", params["traceHeader"])
    sealed = json.loads(params["input"])
    reserve_inventory(
        {**sealed, "execution": {"name": params["name"], "stateMachine": orders.machine_arn}}, LambdaContext()
    )
    (task_span,) = otel.named("tenantscope.sfn")
    assert task_span.trace_id == request
    assert task_span.annotations["tenant_id"] == "acme"
    secrets.assert_none_in(otel.documents())
