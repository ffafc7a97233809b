"""The OpenTelemetry backend on the OpenTelemetry SDK, with its in-memory exporter.

Each test captures on a tracer provider of its own (tests.otel_capture). The spans of real
handlers, with botocore instrumented, on moto, are in tests/integration/test_tracing_on_each_backend.py
and tests/integration/test_tracing_otel.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tenantscope import (
    ConfigurationError,
    CredentialsUnavailable,
    InvalidEnvelope,
    LoggableError,
    OTelTracer,
    Reason,
    TenantAuthError,
    TenantError,
    Unauthorized,
)
from tenantscope._otel import XRAY_ANNOTATIONS, otel_configured
from tenantscope._tracing import ANNOTATION_KEYS, Span
from tests.otel_capture import Captured, trace_id
from tests.trace_ids import LAMBDA_PARENT, PRODUCER_PARENT, TRACE_ROOT

ROOT = Path(__file__).resolve().parents[2]
PRODUCER_ROOT = "1-5759e988-00000000000000000000cafe"


def one(otel: Captured, name: str) -> ReadableSpan:
    (span,) = otel.named(name)
    return span


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Captured:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    return Captured()


@pytest.fixture
def in_invocation(otel: Captured) -> Iterator[trace.Span]:
    invocation = otel.invocation("orders-api")
    with trace.use_span(invocation, end_on_exit=True):
        yield invocation


# --- what a span holds -------------------------------------------------------------------


def test_a_span_holds_the_annotations_as_attributes_and_lists_them_for_x_ray(otel: Captured) -> None:
    with otel.tracer.span("tenantscope.api") as span:
        span.annotate("tenant_id", "acme")
        span.annotate("tenant_source", "jwt")
        span.annotate("cold_start", True)
    finished = one(otel, "tenantscope.api")
    assert finished.instrumentation_scope is not None
    assert finished.instrumentation_scope.name == "tenantscope"  # whose spans these are, in a backend
    assert finished.kind is SpanKind.INTERNAL
    assert finished.status.status_code is StatusCode.UNSET
    assert dict(finished.attributes or {}) == {
        "tenant_id": "acme",
        "tenant_source": "jwt",
        "cold_start": True,
        # X-Ray indexes the attributes this names (those present) as annotations
        XRAY_ANNOTATIONS: tuple(sorted(ANNOTATION_KEYS)),
    }
    assert finished.events == ()


def test_a_record_span_is_a_consumer_span_and_the_others_internal(otel: Captured) -> None:
    for name in ("tenantscope.api", "tenantscope.sqs", "tenantscope.sfn"):
        with otel.tracer.span(name):
            pass
    kinds = {span.name: span.kind for span in otel.spans()}
    assert kinds == {
        "tenantscope.api": SpanKind.INTERNAL,
        "tenantscope.sqs": SpanKind.CONSUMER,
        "tenantscope.sfn": SpanKind.INTERNAL,
    }


# --- where a span belongs ----------------------------------------------------------------


def test_a_span_is_a_child_of_the_invocation_span_and_the_parent_of_what_runs_in_it(
    otel: Captured, in_invocation: trace.Span
) -> None:
    botocore = otel.provider.get_tracer("botocore")
    with otel.tracer.span("tenantscope.api"), botocore.start_as_current_span("DynamoDB.PutItem"):
        pass
    ours, call = one(otel, "tenantscope.api"), one(otel, "DynamoDB.PutItem")
    invocation = in_invocation.get_span_context()
    assert ours.parent is not None and ours.parent.span_id == invocation.span_id
    assert ours.context.trace_id == invocation.trace_id
    assert call.parent is not None and call.parent.span_id == ours.context.span_id
    assert trace.get_current_span() is in_invocation  # the invocation's span is current again


def test_without_an_invocation_span_a_span_continues_lambdas_trace(
    otel: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Lambda's trace header and no instrumentation that opened a span for the invocation
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=1")
    with otel.tracer.span("tenantscope.sfn"):
        pass
    finished = one(otel, "tenantscope.sfn")
    assert finished.context.trace_id == trace_id(TRACE_ROOT)
    assert finished.parent is not None and finished.parent.is_remote
    assert finished.parent.span_id == int(LAMBDA_PARENT, 16)


def test_an_unsampled_invocation_records_nothing_and_passes_the_decision_on(
    otel: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=0")
    with otel.tracer.span("tenantscope.api") as span:
        span.annotate("tenant_id", "acme")
        header = otel.tracer.trace_header()
    assert otel.spans() == []
    assert header is not None
    assert header.startswith(f"Root={TRACE_ROOT};Parent=") and header.endswith(";Sampled=0")


def test_a_record_with_its_own_trace_continues_it_linked_to_the_invocation(
    otel: Captured, in_invocation: trace.Span
) -> None:
    # GIVEN a record sent from another request's trace, in a batch processed by this invocation
    producer = f"Root={PRODUCER_ROOT};Parent={PRODUCER_PARENT};Sampled=1"
    with otel.tracer.span("tenantscope.sqs", producer):
        continued = otel.tracer.trace_header()
    record = one(otel, "tenantscope.sqs")
    # THEN its span belongs to the producer's trace, under the span that sent it
    assert record.context.trace_id == trace_id(PRODUCER_ROOT)
    assert record.parent is not None and record.parent.span_id == int(PRODUCER_PARENT, 16)
    # AND links back to the invocation, whose trace one parent could not also hold
    (link,) = record.links
    assert link.context == in_invocation.get_span_context()
    # AND what it sends on continues the producer's trace under this span
    assert continued == f"Root={PRODUCER_ROOT};Parent={record.context.span_id:016x};Sampled=1"


def test_without_an_invocation_span_a_record_of_another_trace_links_to_lambdas(
    otel: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Lambda's trace header, no invocation span, and a record sent from another trace
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ROOT};Parent={LAMBDA_PARENT};Sampled=1")
    producer = f"Root={PRODUCER_ROOT};Parent={PRODUCER_PARENT};Sampled=1"
    with otel.tracer.span("tenantscope.sqs", producer):
        pass
    record = one(otel, "tenantscope.sqs")
    # THEN the record continues the producer's trace and links to Lambda's
    assert record.context.trace_id == trace_id(PRODUCER_ROOT)
    (link,) = record.links
    assert link.context.trace_id == trace_id(TRACE_ROOT)
    assert link.context.span_id == int(LAMBDA_PARENT, 16)


def test_a_record_of_the_invocations_own_trace_needs_no_link(
    otel: Captured, in_invocation: trace.Span
) -> None:
    invocation = in_invocation.get_span_context()
    hexed = f"{invocation.trace_id:032x}"
    same_trace = f"Root=1-{hexed[:8]}-{hexed[8:]};Parent={PRODUCER_PARENT};Sampled=1"
    with otel.tracer.span("tenantscope.sqs", same_trace):
        pass
    record = one(otel, "tenantscope.sqs")
    assert record.context.trace_id == invocation.trace_id
    assert record.parent is not None and record.parent.span_id == int(PRODUCER_PARENT, 16)
    assert record.links == ()


@pytest.mark.parametrize("header", ["", "garbage", "Root=1-5759e988;Sampled=1"])
def test_a_record_whose_trace_header_cannot_be_read_stays_under_the_invocation(
    otel: Captured, in_invocation: trace.Span, header: str
) -> None:
    with otel.tracer.span("tenantscope.sqs", header):
        pass
    record = one(otel, "tenantscope.sqs")
    assert record.parent is not None and record.parent.span_id == in_invocation.get_span_context().span_id
    assert record.links == ()


def test_the_trace_header_names_the_current_span_and_nothing_outside_one(otel: Captured) -> None:
    assert otel.tracer.trace_header() is None
    with otel.tracer.span("tenantscope.api"):
        header = otel.tracer.trace_header()
    context = one(otel, "tenantscope.api").context
    hexed = f"{context.trace_id:032x}"
    assert header == f"Root=1-{hexed[:8]}-{hexed[8:]};Parent={context.span_id:016x};Sampled=1"


# --- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "client"),
    [
        (RuntimeError("the item was {'card': '4111...'}"), False),
        (CredentialsUnavailable(Reason.STS_UNREACHABLE), False),
        (TenantAuthError(Reason.BAD_ENVELOPE_SIGNATURE), True),  # what @sfn_task raises
        (InvalidEnvelope(Reason.BAD_ENVELOPE_SIGNATURE), True),
        (LoggableError("order 42 not found for this tenant"), False),
    ],
)
def test_an_escaping_error_is_recorded_with_its_kind_and_still_raised(
    otel: Captured, error: Exception, client: bool
) -> None:
    with pytest.raises(type(error)), otel.tracer.span("tenantscope.sfn"):
        raise error
    finished = one(otel, "tenantscope.sfn")
    # A fault is an ERROR status (X-Ray: fault); a refused caller keeps UNSET (not a fault).
    if client:
        assert finished.status.status_code is StatusCode.UNSET
    else:
        assert finished.status.status_code is StatusCode.ERROR
        assert finished.status.description == type(error).__name__
    reason = {"reason": str(error.reason)} if isinstance(error, TenantError) else {}
    attributes = dict(finished.attributes or {})
    del attributes[XRAY_ANNOTATIONS]
    assert attributes == {
        "failure": "error" if client else "fault",
        "error_type": type(error).__name__,
        **reason,
    }
    (event,) = finished.events
    assert event.name == "exception"
    event_attributes = dict(event.attributes or {})
    assert str(event_attributes["exception.type"]).rpartition(".")[2] == type(error).__name__
    # Our errors and loggable ones carry a safe message; any other exception is recorded without it.
    safe = isinstance(error, TenantError | LoggableError)
    assert event_attributes["exception.message"] == (str(error) if safe else "")


def test_the_recorded_stack_has_frames_but_no_message_of_a_chained_exception(otel: Captured) -> None:
    def charge() -> None:
        try:
            raise KeyError("card 4111 1111 1111 1111")
        except KeyError as lookup:
            raise RuntimeError("charge failed for 4111 1111 1111 1111") from lookup

    with pytest.raises(RuntimeError), otel.tracer.span("tenantscope.sfn"):
        charge()
    (event,) = one(otel, "tenantscope.sfn").events
    recorded = str(dict(event.attributes or {}))
    assert "4111" not in recorded
    stack = str((event.attributes or {})["exception.stacktrace"])
    *lines, last = stack.split("\n")
    assert last == ""  # each frame a line of its own
    frame = re.compile(r'  File "[^"]+test_otel_tracing\.py", line \d+, in (\w+)')
    assert [match[1] if (match := frame.fullmatch(line)) else line for line in lines] == [
        "test_the_recorded_stack_has_frames_but_no_message_of_a_chained_exception",
        "charge",
    ]


def test_record_error_marks_a_client_error_without_an_error_status(otel: Captured) -> None:
    with otel.tracer.span("tenantscope.api") as span:
        span.record_error(Unauthorized(Reason.MISSING_TOKEN), client_error=True)
    finished = one(otel, "tenantscope.api")
    assert finished.status.status_code is StatusCode.UNSET
    attributes = dict(finished.attributes or {})
    assert (attributes["failure"], attributes["error_type"], attributes["reason"]) == (
        "error",
        "Unauthorized",
        "missing-token",
    )
    assert len(finished.events) == 1  # recorded once, though the span then closed normally


def record_then_raise(span: Span, error: Exception) -> None:
    span.record_error(error, client_error=True)
    raise error


def test_an_error_the_adapter_recorded_is_not_recorded_again_as_it_escapes(otel: Captured) -> None:
    # GIVEN an adapter that recorded a refusal as the caller's, which then escapes the span
    error = Unauthorized(Reason.MISSING_TOKEN)
    with pytest.raises(Unauthorized), otel.tracer.span("tenantscope.api") as span:
        record_then_raise(span, error)
    # THEN it is recorded once, as the adapter classified it, not as a fault
    finished = one(otel, "tenantscope.api")
    assert len(finished.events) == 1
    assert finished.status.status_code is StatusCode.UNSET
    assert dict(finished.attributes or {})["failure"] == "error"


def test_an_error_not_said_to_be_the_callers_is_recorded_as_a_fault(otel: Captured) -> None:
    with otel.tracer.span("tenantscope.sfn") as span:
        span.record_error(CredentialsUnavailable(Reason.STS_UNREACHABLE))
    finished = one(otel, "tenantscope.sfn")
    assert finished.status.status_code is StatusCode.ERROR
    assert dict(finished.attributes or {})["failure"] == "fault"


def test_without_the_opentelemetry_packages_the_backend_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.propagators.aws.aws_xray_propagator", None)
    with pytest.raises(ConfigurationError, match="opentelemetry-api") as refused:
        OTelTracer()
    assert refused.value.reason is Reason.INVALID_SETTING
    assert str(refused.value) == (
        "invalid setting (tracing with OpenTelemetry needs opentelemetry-api and "
        "opentelemetry-propagator-aws-xray (the ADOT Lambda layer has both))"
    )


def test_a_process_that_never_imported_opentelemetry_has_no_sdk_set_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    assert otel_configured() is False


# --- the automatic choice, as the ADOT layer sets things up ------------------------------


def test_an_sdk_set_up_before_the_handler_is_imported_is_chosen_and_x_ray_is_never_imported() -> None:
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())  # what the ADOT layer's exec wrapper does first\n"
        "import sys, tenantscope\n"
        "from tenantscope._tracing import get_tracer\n"
        "print(type(get_tracer()).__name__, 'aws_xray_sdk' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TENANTSCOPE_TRACING"}
    # in Lambda, where X-Ray would be chosen without the SDK
    env.update(LAMBDA_TASK_ROOT="/var/task", AWS_XRAY_DAEMON_ADDRESS="169.254.79.129:2000")
    env["PYTHONPATH"] = str(ROOT / "layers" / "tenantscope")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["OTelTracer", "False"]
