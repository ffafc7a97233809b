"""Per-tenant tracing behind one small interface. The only module that imports aws_xray_sdk.

Every unit of work (API invocation, SQS record, Step Functions task) runs inside a span
annotated with its tenant, so an operator finds it with ``annotation.tenant_id = "acme"``.
AWS SDK calls made inside the span (STS, DynamoDB) nest under it.

``TENANTSCOPE_TRACING`` chooses the backend once per process: ``xray`` (aws_xray_sdk, here),
``otel`` (OpenTelemetry, in ``_otel``), ``off`` (a no-op tracer that costs a function call), or
``auto``, the default: OpenTelemetry where an OpenTelemetry SDK tracer provider is already
configured (the ADOT Lambda layer's), else X-Ray in Lambda with X-Ray available, else off. Any
other backend only has to implement :class:`Tracer` and be installed with :func:`set_tracer`.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ._cache import ProcessValue
from ._config import ENV
from ._errors import ConfigurationError, Reason, TenantAuthError, without_message

__all__ = [
    "NOOP_SPAN",
    "TRACING_CHOICES",
    "NoopTracer",
    "RecordingSpan",
    "Span",
    "Tracer",
    "XRayTracer",
    "get_tracer",
    "set_tracer",
    "take_cold_start",
]

logger = logging.getLogger("tenantscope")

AnnotationValue = str | int | float | bool


class Span(Protocol):
    """One unit of work's span, as a tracing backend records it."""

    def annotate(self, key: str, value: AnnotationValue) -> None:
        """Add an indexed annotation. Never pass a token, key or credential."""
        ...

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        """Mark the span failed: ``client_error`` for a refused caller (4xx), else a fault."""
        ...


class Tracer(Protocol):
    """A tracing backend, installed with :func:`set_tracer` (X-Ray, OpenTelemetry and off ship)."""

    def span(self, name: str, trace_header: str | None = None) -> AbstractContextManager[Span]:
        """Open a span for one unit of work; an exception escaping it is recorded.

        ``trace_header`` is the X-Ray trace header the unit arrived with when it has its own (an
        SQS record's ``AWSTraceHeader``): a backend that can, continues that trace.
        """
        ...

    def trace_header(self) -> str | None:
        """The trace header that continues the current trace downstream, if tracing."""
        ...


class _NoopSpan:
    def annotate(self, key: str, value: AnnotationValue) -> None:
        pass

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        pass

    # A span is its own context manager: tracing off costs two method calls, no generator.
    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


# The one span of tracing off: the pipeline skips annotating it.
NOOP_SPAN = _NoopSpan()


class NoopTracer:
    """Tracing off: spans record nothing and cost two method calls."""

    def span(self, name: str, trace_header: str | None = None) -> AbstractContextManager[Span]:
        return NOOP_SPAN

    def trace_header(self) -> str | None:
        return None


# The annotations tenantscope writes (letters, digits and "_": what X-Ray accepts in a key), and
# the value types aws_xray_sdk keeps.
ANNOTATION_KEYS = frozenset(
    {
        "cold_start",
        "error_type",
        "execution_name",
        "failure",
        "message_id",
        "reason",
        "task",
        "tenant_id",
        "tenant_source",
    }
)
_ANNOTATION_TYPES = (str, int, float, bool)


class RecordingSpan:
    """A backend's span as a context manager (a class, not a generator: cheaper per span): on
    exit it records an error that the adapter did not classify itself, then ends the span."""

    __slots__ = ("recorded",)

    def __init__(self) -> None:
        self.recorded = False

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        try:
            if error is not None and not self.recorded:  # an adapter that classified it itself wins
                self.record_error(error, client_error=isinstance(error, TenantAuthError))
        finally:
            self._end()

    def annotate(self, key: str, value: AnnotationValue) -> None:
        raise NotImplementedError

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError


class _XRaySpan(RecordingSpan):
    """One X-Ray subsegment, ended when the span exits (a class, not a generator: cheaper per span)."""

    __slots__ = ("_recorder", "_subsegment")

    def __init__(self, recorder: Any, subsegment: Any) -> None:
        super().__init__()
        self._recorder = recorder
        self._subsegment = subsegment

    def _end(self) -> None:
        self._recorder.end_subsegment()

    def annotate(self, key: str, value: AnnotationValue) -> None:
        # The SDK checks each key character by character on every call: tenantscope's own keys,
        # valid by its rule, are stored directly (their values are of the types it keeps).
        if key in ANNOTATION_KEYS and type(value) in _ANNOTATION_TYPES:
            self._subsegment.annotations[key] = value
        else:
            self._subsegment.put_annotation(key, value)

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        self.recorded = True
        stack = traceback.extract_tb(error.__traceback__)
        self._subsegment.add_exception(without_message(error), stack)
        if client_error:  # add_exception marks a fault (5xx); a refused caller is an error (4xx)
            self._subsegment.fault = False
            self._subsegment.add_error_flag()
        # X-Ray's fault/error keywords judge a trace by its response, and a failed SQS record
        # does not fail its invocation: indexed annotations make every failure searchable.
        self.annotate("failure", "error" if client_error else "fault")
        self.annotate("error_type", type(error).__name__)
        reason = getattr(error, "reason", None)
        if isinstance(reason, Reason):
            self.annotate("reason", str(reason))


class XRayTracer:
    """AWS X-Ray through aws_xray_sdk.

    The SDK is imported, and botocore patched, on the first span of a sampled invocation: a
    function whose invocations are not sampled (no active tracing) never pays for the import.
    """

    def __init__(self, recorder: Any = None) -> None:
        self._recorder = recorder
        self._lock = threading.Lock()

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            with self._lock:
                if self._recorder is None:
                    from aws_xray_sdk.core import patch, xray_recorder

                    patch(["botocore"])
                    _read_the_trace_header_once_per_trace(xray_recorder)
                    self._recorder = xray_recorder
        return self._recorder

    def span(self, name: str, trace_header: str | None = None) -> AbstractContextManager[Span]:
        # A subsegment belongs to the invocation's segment, whatever trace the unit arrived with:
        # ``trace_header`` is not continued here, the producers forward it downstream instead.
        if self._recorder is None and "Sampled=1" not in os.environ.get(ENV.LAMBDA_TRACE_HEADER, ""):
            return NOOP_SPAN
        recorder = self.recorder
        subsegment = recorder.begin_subsegment(name)
        if subsegment is None:  # no segment to attach to (not sampled, or no trace context)
            return NOOP_SPAN
        return _XRaySpan(recorder, subsegment)

    def trace_header(self) -> str | None:
        if self._recorder is None:
            return None  # not traced yet: producers pass Lambda's own header on
        entity = self.recorder.get_trace_entity()
        if entity is None:  # outside any segment (the SDK's context-missing answer)
            return None
        sampled = 1 if entity.sampled else 0
        return f"Root={entity.trace_id};Parent={entity.id};Sampled={sampled}"


def _read_the_trace_header_once_per_trace(recorder: Any) -> None:
    """Let the SDK's Lambda context skip re-reading a trace header it has already acted on.

    aws_xray_sdk's ``LambdaContext`` reads and parses ``_X_AMZN_TRACE_ID`` every time it looks up
    the current entity, six times per subsegment begun and ended, to notice a new invocation;
    and for a header whose trace it already holds as a facade segment it then does nothing. This
    subclass does that nothing without the parse, and is the SDK's own code for any other header.
    """
    from aws_xray_sdk.core.lambda_launcher import LAMBDA_TRACE_HEADER_KEY, LambdaContext
    from aws_xray_sdk.core.models.facade_segment import FacadeSegment
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    class InvocationContext(LambdaContext):  # type: ignore[misc]
        def _refresh_context(self) -> None:
            header = os.getenv(LAMBDA_TRACE_HEADER_KEY)
            local = self._local
            if header is not None and header == getattr(local, "acted_on", None):
                return
            super()._refresh_context()
            segment = local.segment  # the SDK's refresh always leaves one
            root = TraceHeader.from_header_str(header).root if header else None
            acted_on = isinstance(segment, FacadeSegment) and root and segment.trace_id == root
            local.acted_on = header if acted_on else None

    if type(recorder.context) is LambdaContext:  # the SDK's own, in Lambda: its state is kept
        recorder.context.__class__ = InvocationContext


_tracer: ProcessValue[Tracer] = ProcessValue()
# Set by the process's first unit of work; forgotten by reset_process_state(), as a new container.
_warm: ProcessValue[object] = ProcessValue()
# The values aws_xray_sdk itself reads as "disabled" in AWS_XRAY_SDK_ENABLED.
_SDK_DISABLED = ("n", "no", "f", "false", "off", "0")


# TENANTSCOPE_TRACING's values; unset or empty is "auto".
TRACING_AUTO, TRACING_XRAY, TRACING_OTEL, TRACING_OFF = TRACING_CHOICES = ("auto", "xray", "otel", "off")


def _tracing_choice() -> str:
    choice = os.environ.get(ENV.TRACING, "").strip().lower() or TRACING_AUTO
    if choice not in TRACING_CHOICES:
        raise ConfigurationError(
            Reason.INVALID_SETTING, f"{ENV.TRACING} must be one of {', '.join(TRACING_CHOICES)}"
        )
    return choice


def _xray_available() -> bool:
    if os.environ.get(ENV.XRAY_SDK_ENABLED, "").strip().lower() in _SDK_DISABLED:
        return False
    # Lambda sets LAMBDA_TASK_ROOT always, and the daemon address where X-Ray can trace (possibly
    # without active tracing: PassThrough still traces sampled upstream requests). Unsampled
    # invocations record nothing; TENANTSCOPE_TRACING=off also saves the SDK import.
    return bool(os.environ.get(ENV.LAMBDA_TASK_ROOT) and os.environ.get(ENV.XRAY_DAEMON_ADDRESS))


def _detected_tracer() -> Tracer:
    choice = _tracing_choice()
    if choice == TRACING_OFF:
        return NoopTracer()
    if choice != TRACING_XRAY:
        from ._otel import OTelTracer, otel_configured

        if choice == TRACING_OTEL:
            return OTelTracer()  # a ConfigurationError where OpenTelemetry is not installed
        if otel_configured():
            try:
                return OTelTracer()
            except ConfigurationError as missing:  # chosen automatically: keep tracing as before
                logger.warning("tenantscope: not tracing with OpenTelemetry: %s", missing)
    return XRayTracer() if _xray_available() else NoopTracer()


def get_tracer() -> Tracer:
    """The process-wide tracer, chosen by ``TENANTSCOPE_TRACING`` on first use (see the module)."""
    return _tracer.get(_detected_tracer)


def set_tracer(tracer: Tracer | None) -> None:
    """Install a tracer (another backend, or a capturing one in tests); None re-detects."""
    _tracer.set(tracer, installed=True)


def take_cold_start() -> bool:
    """True for the first unit of work in this process, False afterwards (one True even when the
    first units of work start on several threads at once)."""
    if _warm.peek() is not None:
        return False
    mine = object()  # kept only if this call is the one that builds the value
    return _warm.get(lambda: mine) is mine
