"""The SQS adapter: each record runs as its own tenant.

``@sqs_handler`` turns a per-record function into a batch handler that reports batch item
failures. ``@sqs_record_handler`` is its per-record step on its own, for code that already
drives the batch, such as Powertools' ``BatchProcessor`` / ``process_partial_response``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, overload

from ._config import Settings
from ._context import TenantContext
from ._credentials import CredentialVendor
from ._envelope import Envelope
from ._errors import InvalidEnvelope, Reason, TenantError, log_reason
from ._keyring import KeyRing
from ._pipeline import Bound, Misconfigured, Outcome, Pipeline, Success, Unavailable, require_synchronous
from ._replay import ReplayGuard
from ._resolve import resolve_sqs_record

__all__ = ["SqsRecord", "SqsRecordHandler", "sqs_handler", "sqs_record_handler"]

logger = logging.getLogger("tenantscope")


@dataclass(frozen=True, init=False)
class SqsRecord:
    """One SQS record, as a record handler sees it. Its tenant is ``current_tenant()``."""

    message_id: str
    body: str
    # Dicts as Lambda delivers them: left out of the hash (a record hashes by its id and body) and
    # of the repr (kept out of logs).
    message_attributes: Mapping[str, Any] = field(repr=False, hash=False)
    attributes: Mapping[str, Any] = field(repr=False, hash=False)
    event_source_arn: str

    # Written out rather than generated (init=False), as TenantContext's: one write for every record.
    def __init__(
        self,
        message_id: str,
        body: str,
        message_attributes: Mapping[str, Any],
        attributes: Mapping[str, Any],
        event_source_arn: str,
    ) -> None:
        self.__dict__.update(
            message_id=message_id,
            body=body,
            message_attributes=message_attributes,
            attributes=attributes,
            event_source_arn=event_source_arn,
        )

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


RecordFunction = Callable[[SqsRecord, Any], Any]


class SqsRecordHandler:
    """The per-record step: verify one record's envelope and run the function in its tenant's scope.

    Call it with a Lambda SQS record (a dict, or any object whose ``raw_event`` is one, such as
    a Powertools ``SQSRecord``): it returns the function's result, or raises the refusal, outage
    or error that failed the record, so that a batch processor reports it as a batch item failure.
    ``decorator`` is the name an ``async def`` function's refusal gives it.
    """

    def __init__(
        self, fn: RecordFunction, pipeline: Pipeline, *, decorator: str = "@sqs_record_handler"
    ) -> None:
        require_synchronous(fn, decorator)
        self.fn = fn
        self.pipeline = pipeline

    def __call__(self, record: Any, lambda_context: Any = None) -> Any:
        outcome = self.outcome(getattr(record, "raw_event", record), lambda_context)
        if isinstance(outcome, Success):
            return outcome.value
        raise outcome.error

    def outcome(self, raw: object, lambda_context: Any, bound: Bound | None = None) -> Outcome[Any]:
        """The record's :data:`Outcome`; records its completion with the replay guard on success.

        ``bound`` is the pipeline's :meth:`~Pipeline.bind` for the batch the record belongs to.
        """
        bound = bound or self.pipeline.bind()
        record = raw if type(raw) is dict or isinstance(raw, Mapping) else None
        message_id = record.get("messageId") if record is not None else None
        admitted: list[Envelope] = []
        processed_before: list[Envelope] = []

        def resolve() -> TenantContext:
            if record is None:
                raise InvalidEnvelope(Reason.MALFORMED_RECORD)
            tenant, envelope = resolve_sqs_record(
                record,
                bound.ring,
                bound.settings,
                now=time.time(),
                lambda_tenant_id=getattr(lambda_context, "tenant_id", None),
            )
            guard = bound.replay_guard
            if guard is not None:
                if guard.admit(envelope, str(message_id), lease_seconds=_remaining_seconds(lambda_context)):
                    admitted.append(envelope)
                elif guard.completed(envelope, str(message_id)):
                    processed_before.append(envelope)
                else:
                    raise InvalidEnvelope(Reason.REPLAYED_ENVELOPE)
            return tenant

        def work() -> Any:
            if processed_before:
                # SQS redelivers every record of a batch that failed as a whole (a timeout, a crash
                # in a later record), this one included though it succeeded: acknowledge it.
                logger.info(
                    "tenantscope: SQS record %s was processed before: acknowledged, not run again",
                    message_id,
                )
                return None
            # resolve() has checked the fields a record is made of.
            return self.fn(SqsRecord.from_event_record(record), lambda_context)  # type: ignore[arg-type]

        attributes = record.get("attributes") if record is not None else None
        trace = (
            attributes.get("AWSTraceHeader")
            if type(attributes) is dict or isinstance(attributes, Mapping)
            else None
        )
        outcome = self.pipeline.run(
            f"SQS record {message_id}",
            resolve,
            work,
            lambda_context=lambda_context,
            trace_header=trace if type(trace) is str else None,
            annotations={"message_id": message_id if type(message_id) is str else ""},
            bound=bound,
        )
        if admitted and type(outcome) is Success:
            try:
                bound.replay_guard.complete(admitted[0], str(message_id))  # type: ignore[union-attr]
            except Exception as error:  # processed already: failing the record would process it twice
                logger.error(
                    "tenantscope: could not record completion of %s: %s", message_id, log_reason(error)
                )
        return outcome


def _remaining_seconds(lambda_context: Any) -> float | None:
    """How long the invocation may still run, its record's lease on its envelope: no carrier runs
    past its invocation's end. None without a Lambda context (the replay guard's own lease)."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    milliseconds = remaining()
    return milliseconds / 1000 if type(milliseconds) is int and milliseconds >= 0 else None


@overload
def sqs_record_handler(fn: RecordFunction, /) -> SqsRecordHandler: ...


@overload
def sqs_record_handler(
    *,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    replay_guard: ReplayGuard | None = None,
) -> Callable[[RecordFunction], SqsRecordHandler]: ...


def sqs_record_handler(
    fn: RecordFunction | None = None,
    /,
    *,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    replay_guard: ReplayGuard | None = None,
) -> SqsRecordHandler | Callable[[RecordFunction], SqsRecordHandler]:
    """Turn ``fn(record, context)`` into the per-record step of an SQS batch, as a callable that
    runs it in the record's tenant scope and raises when the record fails.

    With Powertools for AWS Lambda:

    >>> from tenantscope import sqs_record_handler
    >>> @sqs_record_handler
    ... def record_handler(record, context):
    ...     return record.json
    >>> # def handler(event, context):
    >>> #     return process_partial_response(event, record_handler, BatchProcessor(EventType.SQS), context)
    """

    def decorate(record_fn: RecordFunction) -> SqsRecordHandler:
        return SqsRecordHandler(
            record_fn, Pipeline("sqs", settings, ring=ring, vendor=vendor, replay_guard=replay_guard)
        )

    return decorate(fn) if fn is not None else decorate


def _fifo_group(raw: object) -> str | None:
    """The message group of a record from a FIFO queue; None otherwise or when malformed."""
    if not isinstance(raw, Mapping) or not str(raw.get("eventSourceARN", "")).endswith(".fifo"):
        return None
    attributes = raw.get("attributes")
    group = attributes.get("MessageGroupId") if isinstance(attributes, Mapping) else None
    return group if isinstance(group, str) else None


def _failure(raw: object) -> dict[str, str]:
    """The batch item failure of a record."""
    message_id = raw.get("messageId") if isinstance(raw, Mapping) else None
    # An unnamed record cannot be reported alone; "" makes Lambda retry the whole batch.
    return {"itemIdentifier": message_id if isinstance(message_id, str) else ""}


def _not_an_sqs_event(event: object) -> TypeError:
    """Why ``event`` is not Lambda's SQS event. Raised rather than answered with no failures, which
    would delete a batch nothing has read: Lambda retries a batch whose handler raised."""
    if isinstance(event, Mapping) and "Messages" in event:
        return TypeError(
            "@sqs_handler was given ReceiveMessage's answer ('Messages'), not Lambda's SQS event "
            "{'Records': [...]}: in a test, convert each message with tenantscope.testing."
            "record_from_received(message, queue_arn=...) and wrap them with sqs_event(...)"
        )
    return TypeError(
        "@sqs_handler takes Lambda's SQS event, {'Records': [{'messageId': ..., 'body': ..., "
        "'messageAttributes': ..., 'eventSourceARN': ..., ...}]}, and this event has no 'Records' list"
    )


BatchHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@overload
def sqs_handler(fn: RecordFunction, /) -> BatchHandler: ...


@overload
def sqs_handler(
    *,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    replay_guard: ReplayGuard | None = None,
) -> Callable[[RecordFunction], BatchHandler]: ...


def sqs_handler(
    fn: RecordFunction | None = None,
    /,
    *,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    replay_guard: ReplayGuard | None = None,
) -> BatchHandler | Callable[[RecordFunction], BatchHandler]:
    """Turn a per-record function ``(record, context)`` into an SQS batch handler.

    Each record's envelope is verified on its own, and the function runs in that record's
    tenant scope with that tenant's credentials. The handler returns the
    ``batchItemFailures`` response (enable ``ReportBatchItemFailures`` on the event source):
    a record fails when its envelope is missing, bad, expired, sealed for another queue or
    replayed, when its tenant is not Lambda's (tenant isolation mode), when credentials
    cannot be vended, or when the function raises. Other records go on. On a FIFO queue,
    once a record fails, the later records of its message group fail too, so the group's
    order is kept. When no record succeeds and one failed for an outage or a configuration
    error (STS, the key ring, a setting), the handler raises that error instead: Lambda retries
    the whole batch and slows its polling. An event without a ``Records`` list
    (``ReceiveMessage``'s answer, another trigger's event) raises ``TypeError``, so that Lambda
    retries it rather than deletes it.

    >>> from tenantscope import current_tenant, sqs_handler
    >>> @sqs_handler
    ... def handler(record, context):
    ...     print(current_tenant().tenant_id, record.json)
    """

    def decorate(record_fn: RecordFunction) -> BatchHandler:
        step = SqsRecordHandler(
            record_fn,
            Pipeline("sqs", settings, ring=ring, vendor=vendor, replay_guard=replay_guard),
            decorator="@sqs_handler",
        )

        @functools.wraps(record_fn)
        def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
            failures: list[dict[str, str]] = []
            failed_groups: set[str] = set()
            records = event.get("Records") if isinstance(event, Mapping) else None
            if not isinstance(records, list):
                raise _not_an_sqs_event(event)
            bound = step.pipeline.bind()
            succeeded = False
            outage: TenantError | None = None
            for raw in records:
                # Until a record fails, no group has failed: the group is looked up only then.
                if failed_groups and _fifo_group(raw) in failed_groups:
                    failures.append(_failure(raw))
                    continue
                outcome = step.outcome(raw, context, bound)
                if type(outcome) is Success:
                    succeeded = True
                    continue
                failures.append(_failure(raw))
                if outage is None and isinstance(outcome, Unavailable | Misconfigured):
                    outage = outcome.error
                group = _fifo_group(raw)
                if group is not None:
                    failed_groups.add(group)
            if outage is not None and not succeeded:
                # Nothing succeeded and the batch met an outage: the invocation fails, so Lambda
                # retries the whole batch and slows its polling while the outage lasts, and no
                # record is deleted where ReportBatchItemFailures is not enabled.
                raise outage
            return {"batchItemFailures": failures}

        return wrapper

    return decorate(fn) if fn is not None else decorate
