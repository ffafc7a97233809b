"""Tenant fields on every log line emitted inside a scope, for stdlib logging, Powertools and structlog.

Inside a scope a line carries the tenant fields, named as Lambda's JSON log format prints them
(the one naming, :data:`LOG_FIELD_NAMES`, which docs/observability.md's queries use):

- ``tenantId`` and ``tenant_source``;
- ``requestId`` (the Lambda request id);
- ``message_id`` for an SQS record, ``execution_name`` for a Step Functions task.

Outside a scope there are none, so no tenant field appears on a line emitted after its scope ends.

- stdlib logging: :class:`TenantLogFilter` sits on the root logger's handlers (the adapters put
  it there) and sets the record attributes ``tenant_id``, ``aws_request_id`` and the others, which
  Lambda's JSON formatter prints as above (``tenant_id`` as ``tenantId``, like Lambda's tenant
  isolation mode); outside Lambda :class:`TenantJsonFormatter` prints the same shape.
- Powertools ``Logger`` (or any logger whose formatter prints extra record attributes):
  :func:`add_tenant_fields`.
- structlog: :func:`tenant_fields_processor`.

Values come from the validated tenant context only: never a token, a key or a credential.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any, TypeVar

from ._context import active_scope

L = TypeVar("L")

__all__ = [
    "AWS_PAYLOAD_LOGGERS",
    "LOG_FIELD_NAMES",
    "TenantJsonFormatter",
    "TenantLogFilter",
    "add_tenant_fields",
    "configure_logging",
    "drop_aws_payload_lines",
    "install_log_filter",
    "tenant_fields_processor",
    "tenant_log_fields",
]

# Record attribute -> its name in a log line: Lambda's JSON log format prints aws_request_id and
# tenant_id as requestId and tenantId, and every other attribute under its own name.
LOG_FIELD_NAMES = {
    "tenant_id": "tenantId",
    "tenant_source": "tenant_source",
    "aws_request_id": "requestId",
    "message_id": "message_id",
    "execution_name": "execution_name",
}


def _record_fields() -> dict[str, str]:
    """The active scope's tenant fields, by record attribute name; empty outside a scope."""
    scope = active_scope()
    if scope is None:
        return {}
    context = scope.context
    fields = {"tenant_id": context.tenant_id, "tenant_source": str(context.source)}
    if scope.request_id:
        fields["aws_request_id"] = scope.request_id
    for claim in ("message_id", "execution_name"):
        value = context.claims.get(claim)
        if value is not None:
            fields[claim] = str(value)
    return fields


def tenant_log_fields() -> dict[str, str]:
    """The active scope's tenant fields, named as in a log line (:data:`LOG_FIELD_NAMES`); empty
    outside a scope. For any logging library not covered below.

    >>> from tenantscope import tenant_scope
    >>> with tenant_scope("acme"):
    ...     tenant_log_fields()["tenantId"]
    'acme'
    >>> tenant_log_fields()
    {}
    """
    return {LOG_FIELD_NAMES[name]: value for name, value in _record_fields().items()}


class TenantLogFilter(logging.Filter):
    """Adds the current scope's tenant fields to each record, as record attributes that Lambda's
    JSON formatter renames (``tenant_id``, ``aws_request_id``). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _record_fields().items():
            if name != "aws_request_id" or not getattr(record, name, None):
                setattr(record, name, value)
        return True


class _TenantFieldsFilter(logging.Filter):
    """Adds the tenant fields to each record under their log-line names (``tenantId``,
    ``requestId``...), for formatters that print every extra attribute as it is named."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in tenant_log_fields().items():
            setattr(record, name, value)
        return True


_FIELDS_FILTER = _TenantFieldsFilter()


def add_tenant_fields(logger: L) -> L:
    """Put the tenant fields on every line of ``logger``, and return it.

    ``logger`` is a Powertools ``Logger`` (its handler is equipped, which its child loggers
    share), or a stdlib ``logging.Logger`` whose handlers' formatters print extra record
    attributes. Call it once, after the logger is created, at module level::

        logger = add_tenant_fields(Logger(service="notes"))
    """
    handlers = list(getattr(logger, "handlers", []))
    registered = getattr(logger, "registered_handler", None)  # a Powertools child: its parent's
    if isinstance(registered, logging.Handler) and registered not in handlers:
        handlers.append(registered)
    if not handlers:
        raise ValueError(f"{logger!r} has no handler yet: create its parent logger first")
    for handler in handlers:
        if _FIELDS_FILTER not in handler.filters:
            handler.addFilter(_FIELDS_FILTER)
    return logger


def tenant_fields_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the tenant fields, named as in a log line, on every event logged
    inside a scope (over any value bound under the same names). Put it before the renderer::

        structlog.configure(processors=[tenant_fields_processor, ..., JSONRenderer()])
    """
    event_dict.update(tenant_log_fields())
    return event_dict


_FILTER = TenantLogFilter()
_TENANT_FIELDS = ("tenant_source", "message_id", "execution_name", "reason")


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the tenant filter on every handler of ``logger`` (default: root), once.

    Handler filters see the records of every logger that propagates there. In Lambda the
    filter runs after the runtime's own filter, which resets ``tenant_id``.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


# The loggers whose DEBUG lines print what boto3 and botocore send and receive: botocore's the
# canonical request and signed headers (a session token), request parameters and response bodies
# (AssumeRole's credentials, a Secrets Manager key ring); boto3's resources and batch writer the
# calls' parameters and answers (tenants' items). Lambda's log level DEBUG turns them on.
AWS_PAYLOAD_LOGGERS = (
    "botocore.auth",
    "botocore.endpoint",
    "botocore.parsers",
    "boto3.resources.action",
    "boto3.resources.collection",
    "boto3.dynamodb.table",
)


class _AboveDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_ABOVE_DEBUG = _AboveDebug()


def drop_aws_payload_lines() -> None:
    """Drop the DEBUG records of :data:`AWS_PAYLOAD_LOGGERS`, whatever the log level, so that no
    credential, key or tenant item reaches a log line even at DEBUG. Done once the process's boto3
    session is made, before any AWS call of tenantscope's."""
    for name in AWS_PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if _ABOVE_DEBUG not in logger.filters:
            logger.addFilter(_ABOVE_DEBUG)


class TenantJsonFormatter(logging.Formatter):
    """One JSON object per line, in the shape of Lambda's JSON log format, with tenant fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            LOG_FIELD_NAMES["aws_request_id"]: getattr(record, "aws_request_id", None),
            LOG_FIELD_NAMES["tenant_id"]: getattr(record, "tenant_id", None),
        }
        line.update((key, getattr(record, key, None)) for key in _TENANT_FIELDS)
        if record.exc_info:
            line["errorType"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["stackTrace"] = self.formatException(record.exc_info).splitlines()
        return json.dumps({k: v for k, v in line.items() if v is not None}, default=str)


def configure_logging(level: int | str = logging.INFO) -> None:
    """Tenant fields on every line: in Lambda, on the runtime's handler; elsewhere, JSON to stderr.

    Call it once at module level of a function, next to the handler. The adapters also put
    the filter on the root handlers when they first run, so this is needed only to set the
    level or to get JSON lines outside Lambda.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(TenantJsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    install_log_filter(root)
