"""Tenant fields on every log record emitted inside a scope.

:class:`TenantLogFilter` sits on the root logger's handlers and adds, inside a scope:

- ``tenant_id`` and ``tenant_source``;
- ``aws_request_id`` (the Lambda request id), when the runtime has not set it;
- ``message_id`` for an SQS record, ``execution_name`` for a Step Functions task.

Outside a scope it adds nothing, so no tenant field appears on a line emitted after its
scope ends. With Lambda's JSON log format the runtime's own formatter prints these fields
(``tenant_id`` as ``tenantId``, like Lambda's tenant isolation mode); with plain stdlib logging
:class:`TenantJsonFormatter` prints the same shape. Values come from the validated tenant
context only: never a token, a key or a credential.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ._context import active_scope

__all__ = ["TenantJsonFormatter", "TenantLogFilter", "configure_logging", "install_log_filter"]


class TenantLogFilter(logging.Filter):
    """Adds the current scope's tenant fields to each record. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = active_scope()
        if scope is None:
            return True
        context = scope.context
        record.tenant_id = context.tenant_id
        record.tenant_source = context.source
        if scope.request_id and not getattr(record, "aws_request_id", None):
            record.aws_request_id = scope.request_id
        for claim in ("message_id", "execution_name"):
            value = context.claims.get(claim)
            if value is not None:
                setattr(record, claim, value)
        return True


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


class TenantJsonFormatter(logging.Formatter):
    """One JSON object per line, in the shape of Lambda's JSON log format, with tenant fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None),
            "tenantId": getattr(record, "tenant_id", None),
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
