"""What aws_xray_sdk really emits for each trigger, on moto, with the real STS vendor.

The global recorder is given Lambda's context (a facade segment built from a sampled
``_X_AMZN_TRACE_ID``), an emitter that keeps every serialized entity, and a streaming
threshold of 0, so each finished subsegment is emitted as soon as it closes, either on its
own with a ``parent_id`` or nested under ``subsegments``. The tests rebuild the tree from
those documents.

botocore is patched by ``XRayTracer()`` once and for all in this process. Afterwards the
fixture restores the recorder and disables the SDK, which turns the patched calls into
no-ops for every later test (a test that needs the SDK enables it again, as this one does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tenantscope import (
    NoopTracer,
    SqsRecord,
    TenantAuthError,
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
from tenantscope.testing import (
    QUEUE_ARN,
    RING,
    LocalIssuer,
    record_from_received,
    sfn_task_event,
    sqs_event,
)
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

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_PARENT = "53995c3f42cd8ad8"  # the id of Lambda's own segment, which the SDK sees as a facade
LAMBDA_TRACE_HEADER = f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=1"


# --- capturing and rebuilding the trace --------------------------------------------------


class CapturingEmitter:
    """Stands in for the SDK's UDPEmitter: keeps each entity as the daemon would receive it."""

    def __init__(self) -> None:
        self.documents: list[str] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(entity.serialize())

    def set_daemon_address(self, address: str | None) -> None:
        pass


@dataclass
class Node:
    doc: dict[str, Any]
    parent_id: str | None
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def annotations(self) -> dict[str, Any]:
        return dict(self.doc.get("annotations") or {})

    @property
    def operation(self) -> str | None:
        return (self.doc.get("aws") or {}).get("operation")

    @property
    def exception_types(self) -> list[str]:
        cause = self.doc.get("cause") or {}
        return [e["type"] for e in cause.get("exceptions", [])] if isinstance(cause, dict) else []

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.walk()


class Trace:
    """The subsegments emitted so far, as a tree under Lambda's facade segment."""

    def __init__(self, documents: list[str]) -> None:
        self.nodes: dict[str, Node] = {}
        for text in documents:
            self._add(json.loads(text), None)
        for node in self.nodes.values():
            if node.parent_id in self.nodes:
                self.nodes[node.parent_id].children.append(node)

    def _add(self, doc: dict[str, Any], parent_id: str | None) -> None:
        node = Node(doc, doc.get("parent_id", parent_id))
        assert node.id not in self.nodes, "an entity was emitted twice"
        self.nodes[node.id] = node
        for child in doc.get("subsegments", []):
            self._add(child, node.id)

    def named(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.name == name]

    def top_level(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent_id == LAMBDA_PARENT]

    def span_of(self, node: Node) -> Node | None:
        """The nearest tenantscope span above ``node``."""
        parent = self.nodes.get(node.parent_id or "")
        while parent is not None and not parent.name.startswith("tenantscope."):
            parent = self.nodes.get(parent.parent_id or "")
        return parent


@dataclass
class XRay:
    emitter: CapturingEmitter

    def trace(self) -> Trace:
        return Trace(self.emitter.documents)

    def clear(self) -> None:
        self.emitter.documents.clear()


@pytest.fixture
def xray(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[XRay]:
    """The X-Ray backend, as in Lambda with active tracing, emitting into a list."""
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext as XRayLambdaContext

    monkeypatch.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_TRACE_HEADER)
    saved = (xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold)
    emitter = CapturingEmitter()
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(
        context=XRayLambdaContext(), emitter=emitter, streaming_threshold=0, sampling=False
    )
    set_tracer(XRayTracer())  # patches botocore (once per process)
    try:
        yield XRay(emitter)
    finally:
        set_tracer(None)
        xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold = saved
        global_sdk_config.set_sdk_enabled(False)  # the patched botocore does nothing from now on


# --- API ---------------------------------------------------------------------------------


def test_an_api_call_is_one_annotated_subsegment_with_sts_and_dynamodb_under_it(
    xray: XRay, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        return {"statusCode": 200}

    secrets.tokens.append(token := issuer.token("acme"))
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 200

    trace = xray.trace()
    (span,) = trace.named("tenantscope.api")
    assert trace.top_level() == [span]  # nothing escaped the span
    assert span.doc["trace_id"] == TRACE_ROOT and span.doc["type"] == "subsegment"
    assert span.annotations["tenant_id"] == "acme"
    assert span.annotations["tenant_source"] == "jwt"
    assert isinstance(span.annotations["cold_start"], bool)
    assert not span.doc.get("fault") and not span.doc.get("error")
    calls = [(n.name, n.operation) for n in span.walk()]
    assert ("sts", "AssumeRole") in calls
    assert ("dynamodb", "PutItem") in calls and ("dynamodb", "GetItem") in calls
    assert {name for name, _ in calls} == {"sts", "dynamodb"}
    for node in span.walk():
        assert trace.span_of(node) is span
        assert node.doc["trace_id"] == TRACE_ROOT
    secrets.assert_none_in(xray.emitter.documents)


def test_s3_calls_nest_under_the_units_tenant_span(
    xray: XRay, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
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


def test_a_refused_api_call_is_marked_as_a_client_error_without_a_tenant(
    xray: XRay, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    @api_handler(jwks=jwks)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise AssertionError("must not run")

    secrets.tokens.append(token := issuer.token("acme", lifetime=-3600))  # expired
    assert handler(http_api_event(token), LambdaContext())["statusCode"] == 401
    (span,) = xray.trace().named("tenantscope.api")
    assert span.doc.get("error") is True and not span.doc.get("fault")
    assert span.exception_types == ["Unauthorized"]
    assert span.annotations == {
        "cold_start": span.annotations["cold_start"],
        "failure": "error",
        "error_type": "Unauthorized",
        "reason": "token-expired",
    }
    assert list(span.walk()) == []  # no STS call for a refused caller
    secrets.assert_none_in(xray.emitter.documents)


# --- SQS ---------------------------------------------------------------------------------


def test_a_mixed_tenant_batch_of_10_with_2_failures_yields_10_annotated_subsegments(
    xray: XRay, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    handler = sqs_handler(ring=RING)(record_work)
    result = handler(sqs_event(batch_records()), LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-05"}, {"itemIdentifier": "m-07"}]}

    trace = xray.trace()
    spans = trace.named("tenantscope.sqs")
    assert len(spans) == 10
    assert sorted(trace.top_level(), key=lambda n: n.id) == sorted(spans, key=lambda n: n.id)
    by_message = {span.annotations["message_id"]: span for span in spans}
    assert sorted(by_message) == [m for m, _, _ in BATCH]
    first_of_tenant: set[str] = set()
    for message_id, tenant, outcome in BATCH:
        span = by_message[message_id]
        if outcome == "tampered":  # no verified tenant: no tenant annotation, no AWS call
            assert span.annotations == {
                "message_id": message_id,
                "failure": "error",
                "error_type": "InvalidEnvelope",
                "reason": "bad-envelope-signature",
            }
            assert span.doc.get("error") is True and not span.doc.get("fault")
            assert span.exception_types == ["InvalidEnvelope"]
            assert list(span.walk()) == []
            continue
        assert span.annotations["tenant_id"] == tenant
        assert span.annotations["tenant_source"] == "sqs"
        calls = [(n.name, n.operation) for n in span.walk()]
        assert calls.count(("dynamodb", "PutItem")) == 1 and calls.count(("dynamodb", "GetItem")) == 1
        # Credentials are cached per tenant: STS is called in the first record of each tenant only.
        assert calls.count(("sts", "AssumeRole")) == (0 if tenant in first_of_tenant else 1)
        first_of_tenant.add(tenant)
        if outcome == "raises":
            assert span.doc.get("fault") is True and not span.doc.get("error")
            assert span.exception_types == ["RuntimeError"]
            assert (span.annotations["failure"], span.annotations["error_type"]) == ("fault", "RuntimeError")
        else:
            assert not span.doc.get("fault") and not span.doc.get("error") and "cause" not in span.doc
            assert "failure" not in span.annotations
    # Every AWS call of the batch sits under the span of the record, hence the tenant, that made it.
    for node in trace.nodes.values():
        if node.name in ("sts", "dynamodb"):
            assert trace.span_of(node) in spans
    assert [r.session_name for r in assumed_roles()] == ["acme", "globex", "initech", "hooli"]
    secrets.assert_none_in(xray.emitter.documents)


# --- Step Functions ----------------------------------------------------------------------


def test_a_step_functions_task_is_annotated_with_tenant_execution_and_task(
    xray: XRay, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    @sfn_task(ring=RING)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> dict[str, str]:
        put_and_get("reservation")
        return {"reserved": "yes"}

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    assert reserve_inventory(event, LambdaContext())["results"] == {"reserve_inventory": {"reserved": "yes"}}

    trace = xray.trace()
    (span,) = trace.named("tenantscope.sfn")
    assert trace.top_level() == [span]
    assert span.annotations == {
        "task": "reserve_inventory",
        "tenant_id": "acme",
        "tenant_source": "sfn",
        "execution_name": "acme-exec-1",
    }
    calls = {(n.name, n.operation) for n in span.walk()}
    assert calls == {("sts", "AssumeRole"), ("dynamodb", "PutItem"), ("dynamodb", "GetItem")}
    secrets.assert_none_in(xray.emitter.documents)


def test_a_refused_step_functions_task_is_a_client_error(
    xray: XRay, sts_vendor: CredentialVendor, secrets: Secrets
) -> None:
    @sfn_task(ring=RING, name="reserve_inventory")
    def task(payload: dict[str, Any], context: Any) -> None:
        raise AssertionError("must not run")

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    event["execution"]["name"] = "acme-exec-2"  # replayed into another execution
    with pytest.raises(TenantAuthError):
        task(event, LambdaContext())
    (span,) = xray.trace().named("tenantscope.sfn")
    # The span names the precise cause; the state machine sees the Catch-able TenantAuthError.
    assert span.annotations == {
        "task": "reserve_inventory",
        "failure": "error",
        "error_type": "InvalidEnvelope",
        "reason": "bad-envelope-signature",
    }
    assert span.doc.get("error") is True and not span.doc.get("fault")
    assert span.exception_types == ["InvalidEnvelope"]
    secrets.assert_none_in(xray.emitter.documents)


# --- propagation: API -> SQS -> Step Functions is one trace ------------------------------


def test_one_request_is_one_trace_from_the_api_through_the_queue_to_the_state_machine(
    xray: XRay,
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
        start_execution(machine_arn, record.json, ring=RING, client=sfn)

    secrets.tokens.append(token := issuer.token("acme"))
    assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = xray.trace().named("tenantscope.api")
    (message,) = receive_all(sqs, queue_url)
    header = message["Attributes"]["AWSTraceHeader"]
    assert header == f"Root={TRACE_ROOT};Parent={api_span.id};Sampled=1"
    assert ("sqs", "SendMessage") in [(n.name, n.operation) for n in api_span.walk()]

    # The worker's own invocation is a trace of its own (Lambda links it to the messages'), where
    # the record's subsegment is: the record's work continues the request's trace, as it came.
    worker_root = "1-5759e988-00000000000000000000beef"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={worker_root};Parent={LAMBDA_PARENT};Sampled=1")
    record = record_from_received(message, queue_arn=QUEUE_ARN)
    assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    (params,) = started
    assert params["traceHeader"] == header
    assert params["name"].startswith("acme-")
    (worker_span,) = xray.trace().named("tenantscope.sqs")
    assert worker_span.doc["trace_id"] == worker_root
    assert worker_span.annotations["message_id"] == message["MessageId"]
    assert ("states", "StartExecution") in [(n.name, n.operation) for n in worker_span.walk()]
    secrets.assert_none_in(xray.emitter.documents)


def test_start_execution_in_an_api_scope_continues_the_api_span(
    xray: XRay, sts_vendor: CredentialVendor, issuer: LocalIssuer, jwks: JwksCache, secrets: Secrets
) -> None:
    sfn, started = recording_sfn_client()
    machine_arn = state_machine(sfn)

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        start_execution(machine_arn, {"order": 1}, ring=RING, client=sfn)
        return {"statusCode": 202}

    secrets.tokens.append(token := issuer.token("acme"))
    assert api(http_api_event(token), LambdaContext())["statusCode"] == 202
    (api_span,) = xray.trace().named("tenantscope.api")
    (params,) = started
    assert params["traceHeader"] == f"Root={TRACE_ROOT};Parent={api_span.id};Sampled=1"
    secrets.assert_none_in(xray.emitter.documents)


def test_an_unsampled_invocation_records_nothing_and_passes_the_decision_on(
    xray: XRay,
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
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=QUEUE_ARN.rsplit(":", 1)[1])["QueueUrl"]
    sfn, started = recording_sfn_client()
    machine_arn = state_machine(sfn)

    @api_handler(jwks=jwks)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        put_and_get("1")
        send_message(queue_url, '{"order":1}', ring=RING, client=sqs)
        start_execution(machine_arn, {"order": 1}, ring=RING, client=sfn)
        return {"statusCode": 200}

    @sqs_handler(ring=RING)
    def worker(record: SqsRecord, context: Any) -> None:
        put_and_get(record.message_id)

    @sfn_task(ring=RING)
    def task(payload: dict[str, Any], context: Any) -> None:
        put_and_get("task")

    try:
        assert api(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
        (message,) = receive_all(sqs, queue_url)
        record = record_from_received(message, queue_arn=QUEUE_ARN)
        assert worker(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
        task(sfn_task_event({}, tenant_id="acme", execution_name="acme-exec-1"), LambdaContext())
        from tenantscope._tracing import get_tracer

        assert isinstance(get_tracer(), NoopTracer)
    finally:
        set_tracer(None)
    assert emitter.documents == []
    assert "AWSTraceHeader" not in message.get("Attributes", {})
    assert "traceHeader" not in started[0]


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


def emitted_for(headers: list[str], *, upgraded: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What each span through XRayTracer emits, header by header: (name, trace id, parent), the
    parent named when it is one of the spans (its id is random) and given when it is not."""
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext as XRayLambdaContext

    from tenantscope._tracing import _read_the_trace_header_once_per_trace

    global_sdk_config.set_sdk_enabled(True)
    emitter = CapturingEmitter()
    xray_recorder.configure(
        context=XRayLambdaContext(), emitter=emitter, streaming_threshold=0, sampling=False
    )
    if upgraded:
        _read_the_trace_header_once_per_trace(xray_recorder)
    assert (type(xray_recorder.context).__name__ == "InvocationContext") == upgraded
    tracer = XRayTracer(xray_recorder)
    seen: list[Any] = []
    for n, header in enumerate(headers):
        monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
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
    return seen


def test_the_upgraded_lambda_context_emits_what_the_sdks_own_emits(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder

    saved = (xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold)
    try:
        plain = emitted_for(HEADERS, upgraded=False, monkeypatch=monkeypatch)
        upgraded = emitted_for(HEADERS, upgraded=True, monkeypatch=monkeypatch)
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
