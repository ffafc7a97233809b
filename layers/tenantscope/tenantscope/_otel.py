"""The OpenTelemetry backend. The only module that imports opentelemetry, and only when built.

The layer does not bundle OpenTelemetry: the ADOT Lambda layer brings the API, the SDK and the
AWS X-Ray propagator, configures a tracer provider before the handler is imported, and opens
the invocation's span. tenantscope's spans are children of that span, with the attributes the
X-Ray backend writes as annotations, listed in ``aws.xray.annotations`` so that X-Ray indexes
them (``annotation.tenant_id = "acme"`` keeps working). Trace headers are read and written
with the X-Ray propagator, the format SQS, Step Functions and Lambda carry.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ._config import ENV
from ._errors import ConfigurationError, Reason, without_message
from ._tracing import ANNOTATION_KEYS, AnnotationValue, RecordingSpan, Span

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span as OpenTelemetrySpan
    from opentelemetry.trace import TracerProvider

__all__ = ["XRAY_ANNOTATIONS", "OTelTracer", "otel_configured"]

# The span attribute whose value lists the attributes X-Ray (its OTLP endpoint, or the ADOT
# collector's exporter) keeps as indexed annotations; every other attribute becomes metadata.
XRAY_ANNOTATIONS = "aws.xray.annotations"
_INDEXED = {XRAY_ANNOTATIONS: tuple(sorted(ANNOTATION_KEYS))}
_CONSUMER_SPANS = frozenset({"tenantscope.sqs"})  # processing one message (semantic conventions)


def otel_configured() -> bool:
    """True where an OpenTelemetry SDK tracer provider is set up in this process.

    The ADOT layer's exec wrapper sets it up before the handler module is imported. A process
    that never imported ``opentelemetry.trace`` has none, and this imports nothing.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class _OTelSpan(RecordingSpan):
    """One OpenTelemetry span, current while the unit of work runs and ended when it exits."""

    __slots__ = ("_span", "_token", "_tracer")

    def __init__(self, span: OpenTelemetrySpan, token: Token[Context], tracer: OTelTracer) -> None:
        super().__init__()
        self._span = span
        self._token = token
        self._tracer = tracer

    def _end(self) -> None:
        self._tracer._detach(self._token)
        self._span.end()

    def annotate(self, key: str, value: AnnotationValue) -> None:
        self._span.set_attribute(key, value)

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        self.recorded = True
        # The SDK's own stack text would add chained exceptions with their messages, which may
        # hold data: the event carries the frames alone, as the X-Ray backend's cause does.
        self._span.record_exception(
            without_message(error), attributes={"exception.stacktrace": _frames(error)}
        )
        if not client_error:
            # Only a fault: X-Ray reads an ERROR status without an HTTP status as a fault, so a
            # refused caller (a 4xx) keeps UNSET and is told apart by its failure attribute.
            self._span.set_status(self._tracer._error, type(error).__name__)
        self.annotate("failure", "error" if client_error else "fault")
        self.annotate("error_type", type(error).__name__)
        reason = getattr(error, "reason", None)
        if isinstance(reason, Reason):
            self.annotate("reason", str(reason))


def _frames(error: BaseException) -> str:
    """File, line and function of each frame, without source lines or chained exceptions."""
    return "".join(
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
        for frame in traceback.extract_tb(error.__traceback__)
    )


class OTelTracer:
    """OpenTelemetry, on the process's tracer provider (or ``tracer_provider``).

    A span is a child of the current span (the ADOT layer's invocation span), else of Lambda's
    trace header; an SQS record with its own trace header continues the producer's trace
    instead, linked to the invocation's span when that is in another trace. AWS SDK calls nest
    under the span where botocore is instrumented (the ADOT layer does it).

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> exporter = InMemorySpanExporter()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> tracer = OTelTracer(provider)
    >>> with tracer.span("tenantscope.api") as span:
    ...     span.annotate("tenant_id", "acme")
    >>> (finished,) = exporter.get_finished_spans()
    >>> finished.name, finished.attributes["tenant_id"]
    ('tenantscope.api', 'acme')
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import context, trace
            from opentelemetry.propagators.aws.aws_xray_propagator import (
                TRACE_HEADER_KEY,
                AwsXRayPropagator,
            )
        except ImportError:
            raise ConfigurationError(
                Reason.INVALID_SETTING,
                "tracing with OpenTelemetry needs opentelemetry-api and opentelemetry-propagator-aws-xray"
                " (the ADOT Lambda layer has both)",
            ) from None
        self._trace = trace
        self._tracer = trace.get_tracer("tenantscope", tracer_provider=tracer_provider)
        self._propagator = AwsXRayPropagator()
        self._header_key = TRACE_HEADER_KEY
        self._attach = context.attach
        self._detach = context.detach
        self._error = trace.StatusCode.ERROR
        self._kinds = {name: trace.SpanKind.CONSUMER for name in _CONSUMER_SPANS}

    def span(self, name: str, trace_header: str | None = None) -> AbstractContextManager[Span]:
        trace = self._trace
        parent: Context | None = None  # the current context, with the invocation's span if any
        invocation = trace.get_current_span().get_span_context()
        if not invocation.is_valid:  # no instrumentation opened one: Lambda's own trace
            lambda_header = os.environ.get(ENV.LAMBDA_TRACE_HEADER)
            if lambda_header:
                parent = self._extract(lambda_header)
                invocation = trace.get_current_span(parent).get_span_context()
        links = None
        if trace_header:
            own = self._extract(trace_header)
            producer = trace.get_current_span(own).get_span_context()
            if producer.is_valid:
                parent = own
                # One parent cannot hold a batch of records from many traces: each record's
                # span links back to the invocation that processed the batch.
                if invocation.is_valid and invocation.trace_id != producer.trace_id:
                    links = (trace.Link(invocation),)
        span = self._tracer.start_span(
            name,
            parent,
            self._kinds.get(name, trace.SpanKind.INTERNAL),
            _INDEXED,
            links,
        )
        return _OTelSpan(span, self._attach(trace.set_span_in_context(span)), self)

    def trace_header(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(self._header_key)

    def _extract(self, header: str) -> Context:
        context: Context = self._propagator.extract({self._header_key: header})
        return context
