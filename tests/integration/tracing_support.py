"""What the tracing tests of both backends share: the work traced, the batch, the secrets that must
never reach a span, Step Functions and SQS helpers on moto, and each backend's recording read into
one shape (``RecordedSpan``) so that a scenario can be written once and checked on both."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from tenantscope import (
    SqsRecord,
    api_handler,
    current_tenant,
    send_message,
    sqs_handler,
    start_execution,
    tenant_key,
    tenant_table,
)
from tenantscope._jwt import JwksCache
from tenantscope._otel import XRAY_ANNOTATIONS
from tenantscope.testing import KEY, QUEUE_ARN, RING, RING_DOCUMENT, signed_sqs_record
from tests.conftest import REGION, TABLE
from tests.integration.conftest import assumed_roles
from tests.leaks import assert_no_secret_in
from tests.trace_ids import LAMBDA_PARENT, TRACE_ROOT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from tests.otel_capture import Captured


Handler = Callable[[dict[str, Any], Any], Any]  # a Lambda handler: (event, context)


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
        assert_no_secret_in("\n".join(documents), self.all(), "trace")


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


@dataclass
class OrderPipeline:
    """A queue and a state machine on moto: an API sends to the queue, its worker starts executions."""

    sqs: Any
    queue_url: str
    sfn: Any
    machine_arn: str
    started: list[dict[str, Any]]  # the parameters of every StartExecution

    def api_queueing_an_order(self, jwks: JwksCache) -> Handler:
        """An API handler that sends one order to the queue and answers 202."""

        @api_handler(jwks=jwks)
        def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
            send_message(self.queue_url, '{"order":1}', ring=RING, client=self.sqs)
            return {"statusCode": 202}

        return api

    def worker_starting_executions(self, *, name: str | None = None) -> Handler:
        """The queue's handler: each record's order starts an execution (named ``name`` if given)."""

        @sqs_handler(ring=RING)
        def worker(record: SqsRecord, context: Any) -> None:
            start_execution(self.machine_arn, record.json, ring=RING, client=self.sfn, name=name)

        return worker


def order_pipeline() -> OrderPipeline:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=QUEUE_ARN.rsplit(":", 1)[1])["QueueUrl"]
    sfn, started = recording_sfn_client()
    return OrderPipeline(sqs, queue_url, sfn, state_machine(sfn), started)


# --- X-Ray: capturing the SDK's documents and rebuilding the trace ------------------------


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


# --- both backends, read into one shape ---------------------------------------------------


@dataclass(frozen=True)
class RecordedSpan:
    """A tenantscope span or an AWS call, as either backend recorded it.

    Ids are in X-Ray's form (a trace id ``1-<time>-<unique>``, 16 hex digits for a span) whatever
    the backend, so that a test can hold them against a trace header. ``outcome`` is "ok", "error"
    (a client error: X-Ray's error flag, an OpenTelemetry exception event with the status unset) or
    "fault" (X-Ray's fault flag, OpenTelemetry's error status); a recording that is none of those
    cleanly is described instead, so that it equals none of them.
    """

    name: str  # tenantscope.api, .sqs, .sfn; for an AWS call, the service as X-Ray names it
    id: str
    trace_id: str
    parent_id: str | None
    unit_id: str | None  # the id of the nearest tenantscope span above
    kind: str  # X-Ray's document type; OpenTelemetry's span kind
    annotations: dict[str, Any]  # what X-Ray indexes
    outcome: str
    exception_types: list[str]
    operation: str | None = None  # of an AWS call
    links: tuple[str, ...] = ()  # the ids of the spans this one links to

    @property
    def call(self) -> tuple[str, str | None]:
        return (self.name, self.operation)


class TracingBackend:
    """What a scenario asks of either backend, read afresh from what the backend has recorded.

    ``invocation_id`` and ``invocation_trace_id`` are those of the span the invocation's work sits
    under: Lambda's own segment, from ``_X_AMZN_TRACE_ID``, unless ``invocation`` opened one.
    """

    name: str
    unit_kinds: dict[str, str]  # how the backend records each tenantscope span
    invocation_id = LAMBDA_PARENT
    invocation_trace_id = TRACE_ROOT

    def spans(self) -> list[RecordedSpan]:
        raise NotImplementedError

    def documents(self) -> list[str]:
        """Everything the backend would send, as text."""
        raise NotImplementedError

    def invocation(self, name: str, *, consumer: bool = False) -> AbstractContextManager[None]:
        raise NotImplementedError

    def named(self, name: str) -> list[RecordedSpan]:
        return [span for span in self.spans() if span.name == name]

    def top_level(self) -> list[RecordedSpan]:
        """What sits right under the invocation."""
        return [span for span in self.spans() if span.parent_id == self.invocation_id]

    def below(self, span: RecordedSpan) -> list[RecordedSpan]:
        """Every span under ``span``, at any depth, in the order they finished."""
        spans = self.spans()
        by_id = {s.id: s for s in spans}

        def is_below(candidate: RecordedSpan) -> bool:
            parent = by_id.get(candidate.parent_id or "")
            while parent is not None and parent.id != span.id:
                parent = by_id.get(parent.parent_id or "")
            return parent is not None

        return [s for s in spans if is_below(s)]

    def aws_calls(self) -> list[RecordedSpan]:
        return [span for span in self.spans() if not span.name.startswith("tenantscope.")]


class XRayBackend(TracingBackend):
    """The X-Ray SDK's documents, read as RecordedSpans. Lambda's facade segment is the invocation."""

    name = "xray"
    unit_kinds = {
        "tenantscope.api": "subsegment",
        "tenantscope.sqs": "subsegment",
        "tenantscope.sfn": "subsegment",
    }

    def __init__(self, emitter: CapturingEmitter) -> None:
        self.emitter = emitter

    def trace(self) -> Trace:
        return Trace(self.emitter.documents)

    @contextmanager
    def invocation(self, name: str, *, consumer: bool = False) -> Iterator[None]:
        """Lambda opens the invocation's segment itself (from ``_X_AMZN_TRACE_ID``): nothing to do."""
        yield

    def documents(self) -> list[str]:
        return list(self.emitter.documents)

    def spans(self) -> list[RecordedSpan]:
        trace = self.trace()
        return [self._read(trace, node) for node in trace.nodes.values()]

    @staticmethod
    def _read(trace: Trace, node: Node) -> RecordedSpan:
        doc = node.doc
        error, fault = doc.get("error") is True, doc.get("fault") is True
        if error and not fault:
            outcome = "error"
        elif fault and not error:
            outcome = "fault"
        elif not doc.get("error") and not doc.get("fault") and "cause" not in doc:
            outcome = "ok"
        else:
            outcome = f"error={doc.get('error')!r} fault={doc.get('fault')!r} cause={'cause' in doc}"
        unit = trace.span_of(node)
        return RecordedSpan(
            name=node.name,
            id=node.id,
            trace_id=str(doc["trace_id"]),
            parent_id=node.parent_id,
            unit_id=unit.id if unit is not None else None,
            kind=str(doc.get("type")),
            annotations=node.annotations,
            outcome=outcome,
            exception_types=node.exception_types,
            operation=node.operation,
        )


_OTEL_SERVICES = {"STS": "sts", "DynamoDB": "dynamodb", "S3": "s3", "SQS": "sqs", "SFN": "states"}


def _xray_trace_id(trace_id: int) -> str:
    digits = f"{trace_id:032x}"
    return f"1-{digits[:8]}-{digits[8:]}"


class OTelBackend(TracingBackend):
    """The OpenTelemetry SDK's finished spans, read as RecordedSpans. Where the ADOT layer would open
    the invocation's span, ``invocation`` opens one; without it, Lambda's trace header is the parent."""

    name = "otel"
    unit_kinds = {"tenantscope.api": "INTERNAL", "tenantscope.sqs": "CONSUMER", "tenantscope.sfn": "INTERNAL"}

    def __init__(self, captured: Captured) -> None:
        self.captured = captured
        self._invocations: set[int] = set()

    @contextmanager
    def invocation(self, name: str, *, consumer: bool = False) -> Iterator[None]:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        span = self.captured.invocation(name, SpanKind.CONSUMER if consumer else SpanKind.SERVER)
        self.invocation_trace_id = _xray_trace_id(span.get_span_context().trace_id)
        self.invocation_id = f"{span.get_span_context().span_id:016x}"
        self._invocations.add(span.get_span_context().span_id)
        with trace.use_span(span, end_on_exit=True):
            yield

    def documents(self) -> list[str]:
        return [span.to_json() for span in self.captured.spans()]

    def spans(self) -> list[RecordedSpan]:
        """Every span but the invocations', which are the ADOT layer's, not tenantscope's."""
        spans = self.captured.spans()
        return [self._read(span) for span in spans if span.context.span_id not in self._invocations]

    def _read(self, span: ReadableSpan) -> RecordedSpan:
        from opentelemetry.trace import SpanKind, StatusCode

        attributes = dict(span.attributes or {})
        indexed = attributes.get(XRAY_ANNOTATIONS) or ()  # an AWS call has none
        assert isinstance(indexed, Sequence)
        exceptions = [event for event in span.events if event.name == "exception"]
        status = span.status.status_code
        if status is StatusCode.ERROR:
            outcome = "fault"
        elif status is StatusCode.UNSET and exceptions:
            outcome = "error"
        elif status is StatusCode.UNSET and span.events == ():
            outcome = "ok"
        else:
            outcome = f"status={status.name} events={[event.name for event in span.events]}"
        unit = self.captured.unit_of(span)
        is_call = span.kind is SpanKind.CLIENT
        return RecordedSpan(
            name=_OTEL_SERVICES[str(attributes["rpc.service"])] if is_call else span.name,
            id=f"{span.context.span_id:016x}",
            trace_id=_xray_trace_id(span.context.trace_id),
            parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
            unit_id=f"{unit.context.span_id:016x}" if unit is not None else None,
            kind=span.kind.name,
            annotations={key: attributes[key] for key in indexed if key in attributes},
            outcome=outcome,
            exception_types=[
                str((event.attributes or {})["exception.type"]).rpartition(".")[2] for event in exceptions
            ],
            operation=str(attributes["rpc.method"]) if is_call else None,
            links=tuple(f"{link.context.span_id:016x}" for link in span.links),
        )
