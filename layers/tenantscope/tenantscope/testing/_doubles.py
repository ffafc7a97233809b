"""Stand-ins for what Lambda and a tracing backend give a handler."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .._tracing import AnnotationValue

__all__ = ["LambdaContext", "RecordedSpan", "RecordingTracer"]


class LambdaContext:
    """The Lambda context object, with the attributes and types the Python runtime gives it.

    ``tenant_id`` is what Lambda's tenant isolation mode sets; leave it None otherwise. As in
    the runtime, ``memory_limit_in_mb`` is a string (the runtime reads it from the environment),
    ``identity`` holds no Cognito identity and ``client_context`` is None (no mobile client).
    """

    def __init__(
        self,
        function_name: str = "test-function",
        *,
        request_id: str = "req-1",
        tenant_id: str | None = None,
        timeout: float = 30.0,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = "512"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        today = time.gmtime()  # Lambda names a stream by its UTC date
        self.log_stream_name = (
            f"{today.tm_year}/{today.tm_mon:02d}/{today.tm_mday:02d}/[$LATEST]{uuid.uuid4().hex}"
        )
        self.tenant_id = tenant_id
        self.identity = CognitoIdentity()
        self.client_context = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class CognitoIdentity:
    """``context.identity``: the Cognito identity of a mobile client, none for other callers."""

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None


@dataclass
class RecordedSpan:
    """One unit of work's span, as :class:`RecordingTracer` kept it."""

    name: str
    annotations: dict[str, AnnotationValue] = field(default_factory=dict)
    errors: list[tuple[type[BaseException], bool]] = field(default_factory=list)  # (type, client error)
    escaped: type[BaseException] | None = None  # an exception that left the span
    trace_header: str | None = None  # the trace the unit arrived with (an SQS record's)

    def annotate(self, key: str, value: AnnotationValue) -> None:
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"annotation {key} is not a string, number or boolean")
        self.annotations[key] = value

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        self.errors.append((type(error), client_error))


class RecordingTracer:
    """A tracing backend that keeps every span in memory. Install it with :func:`tenantscope.set_tracer`.

    >>> from tenantscope import set_tracer
    >>> tracer = RecordingTracer()
    >>> set_tracer(tracer)
    >>> with tracer.span("tenantscope.api") as span:
    ...     span.annotate("tenant_id", "acme")
    >>> tracer.spans[0].annotations
    {'tenant_id': 'acme'}
    >>> set_tracer(None)
    """

    def __init__(self, trace_header: str | None = None) -> None:
        self.spans: list[RecordedSpan] = []
        self._trace_header = trace_header

    @contextmanager
    def span(self, name: str, trace_header: str | None = None) -> Iterator[RecordedSpan]:
        span = RecordedSpan(name, trace_header=trace_header)
        self.spans.append(span)
        try:
            yield span
        except BaseException as error:
            span.escaped = type(error)
            raise

    def trace_header(self) -> str | None:
        return self._trace_header

    def named(self, name: str) -> list[RecordedSpan]:
        """The spans called ``name`` (``tenantscope.api``, ``tenantscope.sqs``, ``tenantscope.sfn``)."""
        return [span for span in self.spans if span.name == name]
