"""Per-tenant metrics in CloudWatch Embedded Metric Format (EMF), off by default.

With metrics on, each unit of work (an API invocation, an SQS record, a Step Functions task)
writes one EMF line to stdout, which Lambda's log pipeline turns into CloudWatch metrics in
the namespace ``tenantscope``: ``Units``, ``ClientErrors`` and ``Faults`` (counts) and
``Duration`` (milliseconds), with the dimensions ``Function`` and ``Trigger`` (api, sqs, sfn).
A unit of work that failed for want of credentials also counts how STS failed, in one of
``StsUnreachable``, ``StsThrottled`` or ``StsRefused`` (present only on such lines), and a line
of a unit that tenantscope refused or failed carries its ``Reason`` as a property.

``TENANTSCOPE_METRICS``:

- ``off`` (default): nothing is written.
- ``on``: the dimensions above only. The tenant id is a property of each line, not a
  dimension, so CloudWatch Logs Insights can break the numbers down per tenant without
  creating one custom metric per tenant.
- ``per-tenant``: also ``TenantId`` as a dimension. Each distinct tenant is then four more
  custom metrics per function and trigger, each billed per month: see docs/observability.md.

The lines are derived from the spans the adapters already open (a :class:`MetricsTracer`
wraps the tracer), so no handler or adapter knows about metrics. A line holds the tenant
id, the trigger, the function name and numbers: never a token, a key or a credential.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ._config import ENV, Settings
from ._errors import StsRefused, StsThrottled, StsUnreachable, TenantAuthError, TenantError
from ._tracing import AnnotationValue, Span, Tracer

__all__ = ["METRICS_MODES", "NAMESPACE", "MetricsTracer", "emf_line", "with_metrics"]

NAMESPACE = "tenantscope"
METRICS_OFF, METRICS_ON, METRICS_PER_TENANT = "off", "on", "per-tenant"
METRICS_MODES = (METRICS_OFF, METRICS_ON, METRICS_PER_TENANT)
_METRICS = (("Units", "Count"), ("ClientErrors", "Count"), ("Faults", "Count"), ("Duration", "Milliseconds"))
_STS_FAILURES = (StsUnreachable, StsThrottled, StsRefused)


def emf_line(
    *,
    trigger: str,
    tenant_id: str | None,
    client_error: bool,
    fault: bool,
    duration_ms: float,
    per_tenant: bool,
    function: str | None = None,
    timestamp_ms: int | None = None,
    sts_failure: str | None = None,
    reason: str | None = None,
) -> str:
    """One EMF document for one unit of work.

    >>> line = json.loads(emf_line(trigger="sqs", tenant_id="acme", client_error=False, fault=False,
    ...                            duration_ms=12.5, per_tenant=False, function="orders", timestamp_ms=0))
    >>> line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], line["TenantId"], line["Units"]
    ([['Function', 'Trigger']], 'acme', 1)
    """
    dimensions = [["Function", "Trigger"]]
    if per_tenant and tenant_id is not None:
        dimensions.append(["Function", "Trigger", "TenantId"])
    metrics = [*_METRICS, (sts_failure, "Count")] if sts_failure else _METRICS
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": dimensions,
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
                }
            ],
        },
        "Function": function or os.environ.get(ENV.LAMBDA_FUNCTION_NAME) or "local",
        "Trigger": trigger,
        "Units": 1,
        "ClientErrors": int(client_error and not fault),
        "Faults": int(fault),
        "Duration": round(duration_ms, 3),
    }
    if sts_failure:
        document[sts_failure] = 1
    if reason:  # why the unit failed (tenantscope.Reason): a property for Logs Insights, never a dimension
        document["Reason"] = reason
    if tenant_id is not None:  # a refused caller has no verified tenant
        document["TenantId"] = tenant_id
    return json.dumps(document, separators=(",", ":"))


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _MetricsSpan:
    """Passes everything to the wrapped span and notes the tenant and the outcome."""

    def __init__(self, inner: Span) -> None:
        self._inner = inner
        self.tenant_id: str | None = None
        self.client_error = False
        self.fault = False
        self.sts_failure: str | None = None
        self.reason: str | None = None

    def annotate(self, key: str, value: AnnotationValue) -> None:
        if key == "tenant_id" and isinstance(value, str):
            self.tenant_id = value
        self._inner.annotate(key, value)

    def record_error(self, error: BaseException, *, client_error: bool = False) -> None:
        self.note(client_error)
        if isinstance(error, _STS_FAILURES):
            self.sts_failure = type(error).__name__
        if isinstance(error, TenantError):
            self.reason = str(error.reason)
        self._inner.record_error(error, client_error=client_error)

    def note(self, client_error: bool) -> None:
        if client_error:
            self.client_error = True
        else:
            self.fault = True


class MetricsTracer:
    """A :class:`Tracer` that writes one EMF line per span, then hands everything on."""

    def __init__(
        self,
        tracer: Tracer,
        *,
        per_tenant: bool = False,
        write: Callable[[str], None] = _stdout,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.tracer = tracer
        self.per_tenant = per_tenant
        self._write = write
        self._clock = clock

    @contextmanager
    def span(self, name: str, trace_header: str | None = None) -> Iterator[Span]:
        started = self._clock()
        span: _MetricsSpan | None = None
        try:
            with self.tracer.span(name, trace_header) as inner:
                span = _MetricsSpan(inner)
                yield span
        except BaseException as error:
            if span is not None:
                span.note(client_error=isinstance(error, TenantAuthError))
            raise
        finally:
            if span is not None:
                self._emit(name, span, (self._clock() - started) * 1000.0)

    def _emit(self, name: str, span: _MetricsSpan, duration_ms: float) -> None:
        with suppress(Exception):  # metrics never fail a unit of work
            self._write(
                emf_line(
                    trigger=name.removeprefix("tenantscope."),  # the pipeline's span name
                    tenant_id=span.tenant_id,
                    client_error=span.client_error,
                    fault=span.fault,
                    duration_ms=duration_ms,
                    per_tenant=self.per_tenant,
                    sts_failure=span.sts_failure,
                    reason=span.reason,
                )
            )

    def trace_header(self) -> str | None:
        return self.tracer.trace_header()


def with_metrics(tracer: Tracer, settings: Settings) -> Tracer:
    """``tracer`` itself when metrics are off, else wrapped to write EMF lines."""
    mode = settings.metrics  # checked by Settings.load, from the environment or an argument
    if mode == METRICS_OFF:
        return tracer
    return MetricsTracer(tracer, per_tenant=mode == METRICS_PER_TENANT)
