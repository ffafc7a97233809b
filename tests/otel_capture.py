"""OpenTelemetry spans captured in memory, on a tracer provider of the test's own.

The API lets a process set its global tracer provider once, so tests never set it: they build a
provider here and give it to ``OTelTracer(provider)`` (and to botocore's instrumentation), as the
ADOT layer's would be used.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tenantscope import OTelTracer


def trace_id(root: str) -> int:
    """An X-Ray trace id (``1-<time>-<unique>``) as OpenTelemetry's 128-bit trace id."""
    return int(root[2:].replace("-", ""), 16)


class Captured:
    """A tracer provider of its own, the tenantscope backend on it, and the spans it finished."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = OTelTracer(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def invocation(self, name: str, kind: SpanKind = SpanKind.SERVER) -> trace.Span:
        """The span the ADOT layer's Lambda instrumentation opens around the handler (use it with
        ``trace.use_span(span, end_on_exit=True)``)."""
        return self.provider.get_tracer("adot-lambda").start_span(name, kind=kind)

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        """Every span under ``span``, at any depth."""
        below = [s for s in self.spans() if s.parent is not None and s.parent.span_id == span.context.span_id]
        return [*below, *(deeper for child in below for deeper in self.children(child))]

    def unit_of(self, span: ReadableSpan) -> ReadableSpan | None:
        """The nearest tenantscope span above ``span``."""
        by_id = {s.context.span_id: s for s in self.spans()}
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        while parent is not None and not parent.name.startswith("tenantscope."):
            parent = by_id.get(parent.parent.span_id) if parent.parent is not None else None
        return parent
