"""What only the X-Ray backend does, on moto, with the real STS vendor: the S3 keys its SDK
records, the trace across the queue as X-Ray keeps it, Lambda's sampling decision, its Lambda
context, and its botocore patch.

The ``xray`` fixture (tests/integration/conftest.py) keeps every document the SDK emits; the tests
rebuild the tree from them. What both backends record alike is tested once for both, in
tests/integration/test_tracing_on_each_backend.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tenantscope import (
    NoopTracer,
    SqsRecord,
    XRayTracer,
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
from tenantscope.testing import QUEUE_ARN, RING, LocalIssuer, record_from_received, sfn_task_event, sqs_event
from tests.conftest import BUCKET, LambdaContext, http_api_event
from tests.integration.tracing_support import (
    CapturingEmitter,
    Secrets,
    XRayBackend,
    order_pipeline,
    put_and_get,
    receive_all,
    recording_sfn_client,
    state_machine,
)
from tests.trace_ids import LAMBDA_PARENT, LAMBDA_TRACE_HEADER, TRACE_ROOT

# --- API ---------------------------------------------------------------------------------


def test_s3_calls_nest_under_the_units_tenant_span(
    xray: XRayBackend, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    # GIVEN a route that writes, reads and lists one of the tenant's files, and presigns a download
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        files = tenant_bucket(BUCKET)
        files.put("receipts/order-1.json", b"{}")
        files.get("receipts/order-1.json")
        files.list("receipts/")
        files.presign_download("receipts/order-1.json")  # signed locally: no call, no subsegment
        return {"statusCode": 200}

    secrets.tokens.append(token := issuer.token("acme"))
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 200

    # THEN every S3 call is a subsegment of the tenant's span; the X-Ray SDK records the bucket
    # and the key it touched, which is the tenant's own (docs/observability.md)
    trace = xray.trace()
    (span,) = trace.named("tenantscope.api")
    assert trace.top_level() == [span]
    s3_calls = [node for node in span.walk() if node.name == "s3"]
    assert [node.operation for node in s3_calls] == ["PutObject", "GetObject", "ListObjectsV2"]
    for node in span.walk():
        assert trace.span_of(node) is span
    for node in s3_calls[:2]:
        assert node.doc["aws"]["key"] == "tenants/acme/receipts/order-1.json"
        assert node.doc["aws"]["bucket_name"] == BUCKET
    secrets.assert_none_in(xray.emitter.documents)


# --- propagation: API -> SQS -> Step Functions is one trace ------------------------------


def test_one_request_is_one_trace_from_the_api_through_the_queue_to_the_state_machine(
    xray: XRayBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = order_pipeline()
    api, worker = orders.api_queueing_an_order(jwks), orders.worker_starting_executions()

    secrets.tokens.append(token := issuer.token("acme"))
    assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = xray.trace().named("tenantscope.api")
    (message,) = receive_all(orders.sqs, orders.queue_url)
    header = message["Attributes"]["AWSTraceHeader"]
    assert header == f"Root={TRACE_ROOT};Parent={api_span.id};Sampled=1"
    assert ("sqs", "SendMessage") in [(n.name, n.operation) for n in api_span.walk()]

    # The worker's own invocation is a trace of its own (Lambda links it to the messages'), where
    # the record's subsegment is: the record's work continues the request's trace, as it came.
    worker_root = "1-5759e988-00000000000000000000beef"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={worker_root};Parent={LAMBDA_PARENT};Sampled=1")
    record = record_from_received(message, queue_arn=QUEUE_ARN)
    assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    (params,) = orders.started
    assert params["traceHeader"] == header
    assert params["name"].startswith("acme-")
    (worker_span,) = xray.trace().named("tenantscope.sqs")
    assert worker_span.doc["trace_id"] == worker_root
    assert worker_span.annotations["message_id"] == message["MessageId"]
    assert ("states", "StartExecution") in [(n.name, n.operation) for n in worker_span.walk()]
    secrets.assert_none_in(xray.emitter.documents)


def test_an_unsampled_invocation_records_nothing_and_passes_the_decision_on(
    xray: XRayBackend,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lambda decided not to sample (PassThrough, or Active sampling): spans are dummies."""
    unsampled_root = "1-5759e988-00000000000000000000beef"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={unsampled_root};Parent={LAMBDA_PARENT};Sampled=0")
    sfn, started = recording_sfn_client()
    machine_arn = state_machine(sfn)

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        start_execution(machine_arn, {"order": 1}, ring=RING, client=sfn)
        return {"statusCode": 200}

    secrets.tokens.append(token := issuer.token("acme"))
    assert api(http_api_event(token), LambdaContext())["statusCode"] == 200
    assert xray.emitter.documents == []
    (params,) = started
    assert params["traceHeader"].startswith(f"Root={unsampled_root};Parent=")
    assert params["traceHeader"].endswith(";Sampled=0")


# --- tracing off -------------------------------------------------------------------------


def test_with_tracing_off_the_same_calls_emit_nothing_and_raise_nothing(
    aws: None,
    sts_vendor: CredentialVendor,
    issuer: LocalIssuer,
    jwks: JwksCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside Lambda (no LAMBDA_TASK_ROOT, no _X_AMZN_TRACE_ID) the detected tracer is the no-op one."""
    from aws_xray_sdk.core import xray_recorder

    for name in ("LAMBDA_TASK_ROOT", "AWS_XRAY_DAEMON_ADDRESS", "_X_AMZN_TRACE_ID"):
        monkeypatch.delenv(name, raising=False)
    set_tracer(None)
    emitter = CapturingEmitter()
    monkeypatch.setattr(xray_recorder, "_emitter", emitter)  # would catch anything the SDK sent
    orders = order_pipeline()

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        send_message(orders.queue_url, '{"order":1}', ring=RING, client=orders.sqs)
        start_execution(orders.machine_arn, {"order": 1}, ring=RING, client=orders.sfn)
        return {"statusCode": 200}

    @sqs_handler(ring=RING)
    def worker(record: SqsRecord, context: Any) -> None:
        put_and_get(record.message_id)

    @sfn_task(ring=RING)
    def task(payload: dict[str, Any], context: Any) -> None:
        put_and_get("task")

    try:
        assert api(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
        (message,) = receive_all(orders.sqs, orders.queue_url)
        record = record_from_received(message, queue_arn=QUEUE_ARN)
        assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
        task(sfn_task_event({}, tenant_id="acme", execution_name="acme-exec-1"), LambdaContext())
        from tenantscope._tracing import get_tracer

        assert isinstance(get_tracer(), NoopTracer)
    finally:
        set_tracer(None)
    assert emitter.documents == []
    assert "AWSTraceHeader" not in message.get("Attributes", {})
    assert "traceHeader" not in orders.started[0]


# --- the SDK's Lambda context, reading the trace header once per trace --------------------


HEADERS = [
    LAMBDA_TRACE_HEADER,
    LAMBDA_TRACE_HEADER,  # the same invocation
    f"Root={TRACE_ROOT};Parent=0000000000000bee;Sampled=1",  # same trace, another parent
    f"Root=1-5759e988-00000000000000000000cafe;Parent={LAMBDA_PARENT};Sampled=1",  # a new invocation
    f"Root=1-5759e988-00000000000000000000beef;Parent={LAMBDA_PARENT};Sampled=0",  # not sampled
    f"Root=1-5759e988-00000000000000000000cafe;Parent={LAMBDA_PARENT};Sampled=1",  # back again
    "Root=1-5759e988-00000000000000000000f00d;Sampled=1",  # no parent: a dummy segment
    "Root=1-5759e988-00000000000000000000f00d;Sampled=1",
    LAMBDA_TRACE_HEADER,
]


def emitted_for(
    headers: list[str], *, upgraded: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], list[int]]:
    """What each span through XRayTracer emits, header by header: (name, trace id, parent), the
    parent named when it is one of the spans (its id is random) and given when it is not; and how
    many times, header by header, the SDK's own Lambda context read and parsed the header."""
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext as XRayLambdaContext

    from tenantscope._tracing import _read_the_trace_header_once_per_trace

    global_sdk_config.set_sdk_enabled(True)
    emitter = CapturingEmitter()
    xray_recorder.configure(
        context=XRayLambdaContext(), emitter=emitter, streaming_threshold=0, sampling=False
    )
    sdk_refresh = XRayLambdaContext._refresh_context
    refreshes = [0]

    def counted_refresh(context: Any) -> None:
        refreshes[0] += 1
        sdk_refresh(context)

    monkeypatch.setattr(XRayLambdaContext, "_refresh_context", counted_refresh)
    if upgraded:
        _read_the_trace_header_once_per_trace(xray_recorder)
    assert (type(xray_recorder.context).__name__ == "InvocationContext") == upgraded
    tracer = XRayTracer(xray_recorder)
    seen: list[Any] = []
    read: list[int] = []
    for n, header in enumerate(headers):
        monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
        refreshes[0] = 0
        with tracer.span(f"tenantscope.unit{n}") as outer:
            outer.annotate("tenant_id", "acme")
            with tracer.span("tenantscope.inner"):  # nested, as a botocore call would be
                pass
        documents = [json.loads(d) for d in emitter.documents]
        emitter.documents.clear()
        names = {d["id"]: d["name"] for d in documents}
        seen.append(
            sorted(
                (d["name"], d["trace_id"], names.get(d.get("parent_id"), d.get("parent_id")))
                for d in documents
            )
        )
        read.append(refreshes[0])
    monkeypatch.setattr(XRayLambdaContext, "_refresh_context", sdk_refresh)
    return seen, read


def test_the_upgraded_lambda_context_emits_what_the_sdks_own_emits(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder

    saved = (xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold)
    try:
        plain, plain_reads = emitted_for(HEADERS, upgraded=False, monkeypatch=monkeypatch)
        upgraded, upgraded_reads = emitted_for(HEADERS, upgraded=True, monkeypatch=monkeypatch)
    finally:
        xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold = saved
        global_sdk_config.set_sdk_enabled(False)
    assert upgraded == plain
    # Each sampled invocation with a parent was traced under that parent (Lambda's facade segment),
    # the nested span under its span; the others emitted nothing.
    assert plain[0] == [
        ("tenantscope.inner", TRACE_ROOT, "tenantscope.unit0"),
        ("tenantscope.unit0", TRACE_ROOT, LAMBDA_PARENT),
    ]
    assert [len(unit) for unit in plain] == [2, 2, 2, 2, 0, 2, 0, 0, 2]
    # The SDK's own context reads and parses the header at each entity lookup, several per span.
    # The upgraded one reads it once per new header, then not again; a header without a parent,
    # for which the SDK makes a new dummy segment at each lookup, stays the SDK's own code.
    assert min(plain_reads) > 1
    no_parent = plain_reads[6:8]
    assert upgraded_reads == [1, 0, 1, 1, 1, 1, *no_parent, 1]


def test_the_botocore_patch_works_on_wrapts_pure_python_wrappers(tmp_path: Any) -> None:
    """The layer ships wrapt without its C extension (layers/tenantscope/Makefile): X-Ray's
    botocore patch must record a traced AWS call with wrapt's pure-Python wrappers alone."""
    script = """
import boto3, wrapt.__wrapt__
from moto import mock_aws
from aws_xray_sdk.core import patch, xray_recorder
assert not wrapt.__wrapt__._using_c_extension
patch(["botocore"])
xray_recorder.configure(context_missing="LOG_ERROR", sampling=False)
with mock_aws():
    segment = xray_recorder.begin_segment("unit")
    boto3.client("sts", region_name="us-east-1").get_caller_identity()
    names = [sub.name for sub in segment.subsegments]
    xray_recorder.end_segment()
print(names)
"""
    env = {**os.environ, "WRAPT_DISABLE_EXTENSIONS": "1", "AWS_XRAY_SDK_ENABLED": "true"}
    env.pop("_X_AMZN_TRACE_ID", None)
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['sts']"  # the STS call, recorded as its subsegment
