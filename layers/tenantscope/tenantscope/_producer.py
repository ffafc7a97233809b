"""Producing tenant messages and executions: seal, then send on the function's own role.

Inside a tenant scope the current tenant is used, and a different explicit tenant is
refused: code acting for acme cannot send work as globex. Outside a scope (a trusted
back-office job, the CLI) the tenant must be given explicitly, and only while no thread of the
process is in a tenant's scope: a thread a handler started without ``in_tenant_scope`` has no
scope, and must not seal for whatever tenant it names. Work that outlived its scope (a copied
context, an asyncio task, an ``in_tenant_scope`` thread) is refused whatever tenant it names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
import uuid
from typing import Any

from ._aws import aws_client
from ._config import ENV, Settings, get_settings
from ._context import acting_for_a_tenant, active_scope, scope_ended_here
from ._envelope import (
    ATTR_ENVELOPE,
    ATTR_SIGNATURE,
    ATTR_TENANT,
    SFN_KEY,
    seal,
    sfn_destination,
    sfn_envelope,
    sqs_destination,
    sqs_message_attributes,
)
from ._errors import ConfigurationError, Forbidden, InvalidEnvelope, LoggableError, NoTenantContext, Reason
from ._keyring import KeyRing, default_key_ring
from ._tenant_id import validate_tenant_id
from ._tracing import get_tracer

__all__ = [
    "execution_body",
    "fifo_deduplication_id",
    "queue_arn_from_url",
    "seal_input",
    "send_message",
    "sign_message",
    "start_execution",
]

# sqs.<region>.amazonaws.com (and .com.cn), or the legacy <region>.queue.amazonaws.com.
_SQS_HOST = re.compile(r"(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?")


class _NotText(LoggableError, TypeError):
    """A body that is not a str. Loggable (its message names a type, no data), so that a handler
    that passes a dict gets the fix in its log line rather than a bare ``TypeError``."""


class _NotUnicode(LoggableError, ValueError):
    """A body that no UTF-8 can carry (a lone surrogate). Loggable: unlike the
    ``UnicodeEncodeError`` it replaces, its message quotes nothing of the body."""


class _NotADestination(LoggableError, ValueError):
    """A destination that is not a queue's or a state machine's ARN: a message or an execution
    sealed for it could never be verified, so it is refused before anything is sent."""


# The message attributes an envelope takes (sqs_message_attributes).
_ENVELOPE_ATTRIBUTES = frozenset((ATTR_TENANT, ATTR_ENVELOPE, ATTR_SIGNATURE))


class _NotSendable(LoggableError, ValueError):
    """What SQS or Step Functions would refuse (an execution name, too many message attributes) or
    what is not JSON (NaN): refused before anything is sealed or sent, naming the rule. Loggable:
    its message names a rule or a type, never a value."""


# What Step Functions refuses in an execution name, beside whitespace and control characters.
# An envelope's destination is printable ASCII, so a sealed execution's name is too.
_NAME_REFUSES = frozenset('<>{}[]?*"#%\\^|~`$&,;:/')
_MAX_EXECUTION_NAME = 80
# SQS carries at most ten message attributes, and an envelope takes three of them.
_MAX_MESSAGE_ATTRIBUTES = 10


def _text(body: object) -> str:
    if not isinstance(body, str):
        raise _NotText(f"a message body is a str, not {type(body).__name__}: pass json.dumps(body)")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise _NotUnicode("a message body is Unicode text: this one holds a lone surrogate") from None
    return body


def _queue_destination(queue_arn: str) -> str:
    parts = queue_arn.split(":")
    if not (len(parts) == 6 and all(parts) and (parts[0], parts[2]) == ("arn", "sqs") and parts[4].isdigit()):
        raise _NotADestination("destination is a queue ARN: arn:<partition>:sqs:<region>:<account>:<name>")
    return sqs_destination(queue_arn)


def _execution_destination(state_machine_arn: str, execution_name: str) -> str:
    if not (
        isinstance(execution_name, str)
        and 0 < len(execution_name) <= _MAX_EXECUTION_NAME
        and execution_name.isascii()
        and execution_name.isprintable()
        and " " not in execution_name
        and _NAME_REFUSES.isdisjoint(execution_name)
    ):
        raise _NotSendable(
            f"an execution name is 1 to {_MAX_EXECUTION_NAME} printable ASCII characters, without "
            "spaces or any of < > { } [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : / (Step Functions' rule)"
        )
    try:
        return sfn_destination(state_machine_arn, execution_name)
    except InvalidEnvelope:
        raise _NotADestination(
            "a state machine ARN (arn:<partition>:states:<region>:<account>:stateMachine:<name>, "
            "optionally :<version or alias>)"
        ) from None


def _producer_settings(settings: Settings | None) -> Settings:
    """The settings a producer seals with: the argument, else those the adapter of the current
    unit of work was given (``@api_handler(settings=...)``), as data access takes them, else the
    environment's."""
    if settings is not None:
        return settings
    scope = active_scope()
    return (scope.settings if scope is not None else None) or get_settings()


def _producer_tenant(tenant_id: str | None) -> str:
    scope = active_scope()
    if scope is not None:
        current = scope.context.tenant_id
        if tenant_id is not None and tenant_id != current:
            raise Forbidden(Reason.PRODUCER_TENANT_MISMATCH)
        return current
    if scope_ended_here():
        raise NoTenantContext(Reason.SCOPE_ENDED)
    if tenant_id is None:
        raise NoTenantContext(Reason.NO_PRODUCER_TENANT)
    if acting_for_a_tenant():
        raise NoTenantContext(Reason.UNSCOPED_THREAD)
    return validate_tenant_id(tenant_id)


@functools.lru_cache(maxsize=32)
def _partition(region: str) -> str:
    """The ARN partition of ``region`` from botocore's endpoint data (every partition it knows:
    ``aws-cn``, ``aws-us-gov``, ``aws-iso``, ``aws-iso-b``, ``aws-eusc``, ...); ``aws`` for a region
    it does not know, such as a local endpoint's."""
    from botocore.exceptions import UnknownRegionError

    from ._aws import base_session

    try:
        partition: str = base_session().get_partition_for_region(region)
    except UnknownRegionError:
        return "aws"
    return partition


def queue_arn_from_url(queue_url: str, region: str | None = None) -> str:
    """The ARN of a queue from its URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``).

    >>> queue_arn_from_url("https://sqs.eu-west-1.amazonaws.com/123456789012/orders")
    'arn:aws:sqs:eu-west-1:123456789012:orders'
    """
    without_scheme = queue_url.split("://", 1)[-1]
    host, _, path = without_scheme.partition("/")
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError("not an SQS queue URL")
    match = _SQS_HOST.fullmatch(host.lower().partition(":")[0])  # whatever the case, without a port
    queue_region = (match[1] or match[2]) if match else region
    if not queue_region:
        raise ConfigurationError(Reason.MISSING_SETTING, "AWS_REGION: the queue URL does not name a region")
    return f"arn:{_partition(queue_region)}:sqs:{queue_region}:{parts[0]}:{parts[1]}"


def _trace_header() -> str | None:
    """The trace to continue downstream: the current span's, else Lambda's.

    Inside an SQS record's scope it is the record's own trace, so that one request stays one
    trace across the queue: the current span's where that span belongs to the record's trace
    (OpenTelemetry continues it), else the record's header as it came (an X-Ray subsegment
    belongs to the worker invocation's trace).
    """
    current = get_tracer().trace_header()
    scope = active_scope()
    record = scope.trace_header if scope is not None else None
    if record and (current is None or _trace_root(current) != _trace_root(record)):
        return record
    return current or os.environ.get(ENV.LAMBDA_TRACE_HEADER) or None


def _trace_root(header: str) -> str | None:
    """The trace id of an X-Ray trace header (its ``Root`` field).

    >>> _trace_root("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    '1-5759e988-bd862e3fe1be46a994272793'
    """
    for field in header.split(";"):
        key, _, value = field.partition("=")
        if key.strip() == "Root":
            return value.strip()
    return None


def sign_message(
    body: str,
    *,
    destination: str,
    tenant_id: str | None = None,
    ring: KeyRing | None = None,
    settings: Settings | None = None,
) -> dict[str, dict[str, str]]:
    """The SQS MessageAttributes that seal ``body`` for the queue ARN ``destination``.

    Three attributes of the ten SQS allows: ``tenantscope-tenant``, ``tenantscope-envelope``
    and ``tenantscope-signature``.
    """
    settings = _producer_settings(settings)
    envelope, signature = seal(
        _text(body),
        tenant_id=_producer_tenant(tenant_id),
        destination=_queue_destination(destination),
        ring=ring or default_key_ring(settings),
        now=int(time.time()),
        lifetime=settings.sqs_envelope_ttl_seconds,
    )
    return sqs_message_attributes(envelope, signature)


def send_message(
    queue_url: str,
    body: str,
    *,
    tenant_id: str | None = None,
    ring: KeyRing | None = None,
    client: Any = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Seal and send ``body`` to ``queue_url``; returns the SendMessage response.

    ``MessageGroupId`` is the tenant id: required on FIFO queues, and on standard queues it
    gives SQS fair-queue scheduling per tenant. The current trace is propagated (``AWSTraceHeader``).
    On a FIFO queue the default ``MessageDeduplicationId`` hashes the tenant and the body:
    content-based deduplication hashes the body only, so one tenant's message would suppress
    another tenant's identical one; a ``MessageDeduplicationId`` given is hashed with the tenant
    for the same reason. Other SendMessage arguments pass through. ``settings`` (the
    signing keys, the lifetime, the region) defaults to the adapter's, given it, else the
    environment's.
    """
    settings = _producer_settings(settings)
    tenant = _producer_tenant(tenant_id)
    group = kwargs.pop("MessageGroupId", tenant)
    if group != tenant:
        raise _NotSendable("MessageGroupId is the tenant id")
    # Refused before sealing: with a kms: ring, sealing is a call to KMS.
    extra = kwargs.pop("MessageAttributes", {}) or {}
    if not _ENVELOPE_ATTRIBUTES.isdisjoint(extra):
        raise _NotSendable("tenantscope message attributes cannot be overridden")
    if len(extra) + len(_ENVELOPE_ATTRIBUTES) > _MAX_MESSAGE_ATTRIBUTES:
        raise _NotSendable(
            f"SQS carries at most {_MAX_MESSAGE_ATTRIBUTES} message attributes and the envelope takes "
            f"{len(_ENVELOPE_ATTRIBUTES)}: at most {_MAX_MESSAGE_ATTRIBUTES - len(_ENVELOPE_ATTRIBUTES)} "
            "of your own"
        )
    sqs = client or aws_client("sqs", settings.region)
    # A URL without its region is the sending client's region's queue.
    client_region = getattr(getattr(sqs, "meta", None), "region_name", None)
    queue_arn = queue_arn_from_url(queue_url, client_region or settings.region)
    attributes = sign_message(body, destination=queue_arn, tenant_id=tenant, ring=ring, settings=settings)
    system = dict(kwargs.pop("MessageSystemAttributes", {}) or {})
    trace = _trace_header()
    if trace and "AWSTraceHeader" not in system:
        system["AWSTraceHeader"] = {"DataType": "String", "StringValue": trace}
    if system:
        kwargs["MessageSystemAttributes"] = system
    if queue_arn.endswith(".fifo"):  # the queue's name, as the URL gives it (a trailing "/" or not)
        kwargs["MessageDeduplicationId"] = fifo_deduplication_id(
            tenant, body, kwargs.get("MessageDeduplicationId")
        )
    response: dict[str, Any] = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={**extra, **attributes},
        MessageGroupId=tenant,
        **kwargs,
    )
    return response


def fifo_deduplication_id(tenant_id: str, body: str, given: str | None = None) -> str:
    """The ``MessageDeduplicationId`` :func:`send_message` sends to a FIFO queue.

    A FIFO queue deduplicates across its message groups: the id is made the tenant's own, so that
    one tenant's message (the body, or a business key the caller gives) never suppresses another
    tenant's.
    """
    return hashlib.sha256(f"{tenant_id}\n{body if given is None else given}".encode()).hexdigest()


def execution_body(payload: Any) -> str:
    """``payload`` as the body :func:`seal_input` seals: compact JSON with its keys sorted."""
    try:
        # allow_nan=False: NaN and Infinity are Python's, not JSON's, and a task in another
        # language could not read them.
        return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:  # an object, a NaN, keys of mixed types, a cycle
        raise _NotSendable(f"a payload is JSON: {error}") from None


def seal_input(
    payload: Any,
    *,
    state_machine_arn: str,
    execution_name: str,
    tenant_id: str | None = None,
    ring: KeyRing | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The execution input that carries ``payload`` sealed for one execution of one state machine.

    The payload travels as an opaque JSON string inside the envelope, because Step Functions
    re-serializes JSON between states.
    """
    settings = _producer_settings(settings)
    body = execution_body(payload)
    envelope, signature = seal(
        body,
        tenant_id=_producer_tenant(tenant_id),
        destination=_execution_destination(state_machine_arn, execution_name),
        ring=ring or default_key_ring(settings),
        now=int(time.time()),
        lifetime=settings.sfn_envelope_ttl_seconds,
    )
    return {SFN_KEY: sfn_envelope(envelope, signature, body), "results": {}}


def start_execution(
    state_machine_arn: str,
    payload: Any,
    *,
    tenant_id: str | None = None,
    name: str | None = None,
    ring: KeyRing | None = None,
    client: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Seal ``payload`` and start an execution; returns the StartExecution response.

    The default execution name is ``<tenant>-<uuid>``, unique and readable in the console.
    ``settings`` is as for :func:`send_message`.
    """
    settings = _producer_settings(settings)
    tenant = _producer_tenant(tenant_id)
    execution_name = name or f"{tenant[:47]}-{uuid.uuid4().hex}"
    document = seal_input(
        payload,
        state_machine_arn=state_machine_arn,
        execution_name=execution_name,
        tenant_id=tenant,
        ring=ring,
        settings=settings,
    )
    params: dict[str, Any] = {
        "stateMachineArn": state_machine_arn,
        "name": execution_name,
        "input": json.dumps(document),
    }
    trace = _trace_header()
    if trace:
        params["traceHeader"] = trace
    sfn = client or aws_client("stepfunctions", settings.region)
    response: dict[str, Any] = sfn.start_execution(**params)
    return response
