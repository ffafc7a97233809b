"""The SQS adapter: ``@sqs_handler`` runs a function per record, each as its own tenant."""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ._credentials import CredentialVendor
from ._envelope import InvalidEnvelope
from ._errors import TenantAuthError, log_reason
from ._keys import KeyRing
from ._replay import ReplayGuard
from ._resolve import resolve_sqs_record
from ._runtime import Runtime, lazy_runtime
from ._tracing import Span

__all__ = ["SqsRecord", "sqs_handler"]

logger = logging.getLogger("tenantscope")


@dataclass(frozen=True)
class SqsRecord:
    """One SQS record, as a record handler sees it. Its tenant is ``current_tenant()``."""

    message_id: str
    body: str
    message_attributes: Mapping[str, Any] = field(repr=False)
    attributes: Mapping[str, Any] = field(repr=False)
    event_source_arn: str

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON (parsed once)."""
        return json.loads(self.body)

    @property
    def message_group_id(self) -> str | None:
        group = self.attributes.get("MessageGroupId")
        return group if isinstance(group, str) else None

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    @classmethod
    def from_event_record(cls, record: Mapping[str, Any]) -> SqsRecord:
        return cls(
            message_id=record["messageId"],
            body=record["body"],
            message_attributes=record.get("messageAttributes") or {},
            attributes=record.get("attributes") or {},
            event_source_arn=record["eventSourceARN"],
        )


RecordHandler = Callable[[SqsRecord, Any], Any]


def _fifo_group(raw: object) -> str | None:
    """The message group of a record from a FIFO queue; None otherwise or when malformed."""
    if not isinstance(raw, Mapping) or not str(raw.get("eventSourceARN", "")).endswith(".fifo"):
        return None
    attributes = raw.get("attributes")
    group = attributes.get("MessageGroupId") if isinstance(attributes, Mapping) else None
    return group if isinstance(group, str) else None


class _HandlerFailed(Exception):
    """The record handler raised (already logged in the record's scope); its error is the cause."""


def _process(rt: Runtime, raw: Mapping[str, Any], fn: RecordHandler, context: Any, span: Span) -> None:
    tenant, envelope = resolve_sqs_record(
        raw, rt.ring, rt.settings, now=time.time(), lambda_tenant_id=getattr(context, "tenant_id", None)
    )
    span.annotate("tenant_id", tenant.tenant_id)
    span.annotate("tenant_source", tenant.source)
    record = SqsRecord.from_event_record(raw)
    guard = rt.replay_guard
    if guard is not None and not guard.admit(envelope, record.message_id):
        raise InvalidEnvelope("replayed envelope")
    credentials = rt.credentials(tenant)
    trace = record.attributes.get("AWSTraceHeader")
    with rt.scope(tenant, credentials, context, trace if isinstance(trace, str) else None):
        try:
            fn(record, context)
        except Exception as error:
            # Logged inside the scope, so the line carries the record's tenant and message id.
            logger.warning(
                "tenantscope: SQS record %s failed in its handler: %s", record.message_id, log_reason(error)
            )
            raise _HandlerFailed from error
    if guard is not None:
        try:
            guard.complete(envelope, record.message_id)
        except Exception as error:  # processed already: failing the record would process it twice
            logger.error(
                "tenantscope: could not record completion of %s: %s", record.message_id, log_reason(error)
            )


def sqs_handler(
    fn: RecordHandler | None = None,
    *,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    replay_guard: ReplayGuard | None = None,
    **settings: Any,
) -> Any:
    """Turn a per-record function ``(record, context)`` into an SQS batch handler.

    Each record's envelope is verified on its own, and the function runs in that record's
    tenant scope with that tenant's credentials. The handler returns the
    ``batchItemFailures`` response (enable ``ReportBatchItemFailures`` on the event source):
    a record fails when its envelope is missing, bad, expired, sealed for another queue or
    replayed, when its tenant is not Lambda's (tenant isolation mode), when credentials
    cannot be vended, or when the function raises. Other records go on. On a FIFO queue,
    once a record fails, the later records of its message group fail too, so the group's
    order is kept.

    >>> from tenantscope import current_tenant
    >>> from tenantscope.sqs import sqs_handler
    >>> @sqs_handler
    ... def handler(record, context):
    ...     print(current_tenant().tenant_id, record.json)
    """

    def decorate(record_handler: RecordHandler) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        runtime = lazy_runtime(settings, vendor=vendor, ring=ring, replay_guard=replay_guard)

        @functools.wraps(record_handler)
        def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
            failures: list[dict[str, str]] = []
            failed_groups: set[str] = set()
            records = event.get("Records") if isinstance(event, Mapping) else None
            for raw in records if isinstance(records, list) else []:
                message_id = raw.get("messageId") if isinstance(raw, Mapping) else None
                # An unnamed record cannot be reported alone; "" makes Lambda retry the whole batch.
                item = {"itemIdentifier": message_id if isinstance(message_id, str) else ""}
                group = _fifo_group(raw)
                if group is not None and group in failed_groups:
                    failures.append(item)
                    continue
                rt = runtime()
                with rt.tracer.span("tenantscope.sqs") as span:
                    span.annotate("message_id", item["itemIdentifier"])
                    try:
                        # Each record in a fresh copy of the context, like each API invocation.
                        contextvars.copy_context().run(_process, rt, raw, record_handler, context, span)
                    except Exception as error:
                        cause = error.__cause__ if isinstance(error, _HandlerFailed) else error
                        if not isinstance(error, _HandlerFailed):
                            logger.warning(
                                "tenantscope: SQS record %s failed: %s",
                                item["itemIdentifier"],
                                log_reason(error),
                            )
                        span.record_error(cause or error, client_error=isinstance(cause, TenantAuthError))
                        failures.append(item)
                        if group is not None:
                            failed_groups.add(group)
            return {"batchItemFailures": failures}

        return wrapper

    return decorate(fn) if fn is not None else decorate
