"""tenantscope: secure pooled multi-tenancy for Python on AWS Lambda.

Every unit of work (an API invocation, an SQS record, a Step Functions task) runs as one
verified tenant, with AWS credentials that reach only that tenant's DynamoDB keys and S3 objects.

>>> from tenantscope import tenant_scope, current_tenant, tenant_key
>>> with tenant_scope("acme"):
...     current_tenant().tenant_id, tenant_key("ITEM", "1")
('acme', 'TENANT#acme#ITEM#1')
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import Settings, TableSpec
    from ._context import TenantContext, current_tenant, in_tenant_scope, tenant_scope
    from ._credentials import CredentialVendor, FakeSts, ScopedCredentials, StsBackend
    from ._data import tenant_key, tenant_session, tenant_table
    from ._errors import (
        ConfigurationError,
        CredentialsUnavailable,
        CrossTenantAccess,
        Forbidden,
        InvalidEnvelope,
        InvalidTenantId,
        KeysUnavailable,
        LoggableError,
        NoTenantContext,
        Reason,
        StsRefused,
        StsThrottled,
        StsUnreachable,
        TemporarilyUnavailable,
        TenantAuthError,
        TenantError,
        Unauthorized,
    )
    from ._files import TenantBucket, tenant_bucket, tenant_s3
    from ._jwt import JwksCache, JwksSource, StaticJwksSource
    from ._keyring import KeyRing, KmsKeyRing, SecretsManagerKeyRing, StaticKeyRing
    from ._logging import (
        TenantJsonFormatter,
        TenantLogFilter,
        add_tenant_fields,
        configure_logging,
        tenant_fields_processor,
        tenant_log_fields,
    )
    from ._otel import OTelTracer
    from ._producer import seal_input, send_message, sign_message, start_execution
    from ._replay import DynamoDbReplayGuard, InMemoryReplayGuard, ReplayGuard
    from ._tenant_id import validate_tenant_id
    from ._tracing import NoopTracer, Span, Tracer, XRayTracer, set_tracer
    from .api import api_handler
    from .sfn import sfn_task
    from .sqs import SqsRecord, SqsRecordHandler, sqs_handler, sqs_record_handler

from ._version import __version__ as __version__

__all__ = [
    "ConfigurationError",
    "CredentialVendor",
    "CredentialsUnavailable",
    "CrossTenantAccess",
    "DynamoDbReplayGuard",
    "FakeSts",
    "Forbidden",
    "InMemoryReplayGuard",
    "InvalidEnvelope",
    "InvalidTenantId",
    "JwksCache",
    "JwksSource",
    "KeyRing",
    "KeysUnavailable",
    "KmsKeyRing",
    "LoggableError",
    "NoTenantContext",
    "NoopTracer",
    "OTelTracer",
    "Reason",
    "ReplayGuard",
    "ScopedCredentials",
    "SecretsManagerKeyRing",
    "Settings",
    "Span",
    "SqsRecord",
    "SqsRecordHandler",
    "StaticJwksSource",
    "StaticKeyRing",
    "StsBackend",
    "StsRefused",
    "StsThrottled",
    "StsUnreachable",
    "TableSpec",
    "TemporarilyUnavailable",
    "TenantAuthError",
    "TenantBucket",
    "TenantContext",
    "TenantError",
    "TenantJsonFormatter",
    "TenantLogFilter",
    "Tracer",
    "Unauthorized",
    "XRayTracer",
    "add_tenant_fields",
    "api_handler",
    "configure_logging",
    "current_tenant",
    "in_tenant_scope",
    "seal_input",
    "send_message",
    "set_tracer",
    "sfn_task",
    "sign_message",
    "sqs_handler",
    "sqs_record_handler",
    "start_execution",
    "tenant_bucket",
    "tenant_fields_processor",
    "tenant_key",
    "tenant_log_fields",
    "tenant_s3",
    "tenant_scope",
    "tenant_session",
    "tenant_table",
    "validate_tenant_id",
]

# Each public name's module, imported on first use (PEP 562): a function that uses api_handler
# does not load the SQS and Step Functions adapters, the producer or the replay guard at cold start.
_MODULES = {
    "ConfigurationError": "_errors",
    "CredentialVendor": "_credentials",
    "CredentialsUnavailable": "_errors",
    "CrossTenantAccess": "_errors",
    "DynamoDbReplayGuard": "_replay",
    "FakeSts": "_credentials",
    "Forbidden": "_errors",
    "InMemoryReplayGuard": "_replay",
    "InvalidEnvelope": "_errors",
    "InvalidTenantId": "_errors",
    "JwksCache": "_jwt",
    "JwksSource": "_jwt",
    "KeyRing": "_keyring",
    "KeysUnavailable": "_errors",
    "KmsKeyRing": "_keyring",
    "LoggableError": "_errors",
    "NoTenantContext": "_errors",
    "NoopTracer": "_tracing",
    "OTelTracer": "_otel",
    "Reason": "_errors",
    "ReplayGuard": "_replay",
    "ScopedCredentials": "_credentials",
    "SecretsManagerKeyRing": "_keyring",
    "Settings": "_config",
    "Span": "_tracing",
    "SqsRecord": "sqs",
    "SqsRecordHandler": "sqs",
    "StaticJwksSource": "_jwt",
    "StaticKeyRing": "_keyring",
    "StsBackend": "_credentials",
    "StsRefused": "_errors",
    "StsThrottled": "_errors",
    "StsUnreachable": "_errors",
    "TableSpec": "_config",
    "TemporarilyUnavailable": "_errors",
    "TenantAuthError": "_errors",
    "TenantBucket": "_files",
    "TenantContext": "_context",
    "TenantError": "_errors",
    "TenantJsonFormatter": "_logging",
    "TenantLogFilter": "_logging",
    "Tracer": "_tracing",
    "Unauthorized": "_errors",
    "XRayTracer": "_tracing",
    "add_tenant_fields": "_logging",
    "api_handler": "api",
    "configure_logging": "_logging",
    "current_tenant": "_context",
    "in_tenant_scope": "_context",
    "seal_input": "_producer",
    "send_message": "_producer",
    "set_tracer": "_tracing",
    "sfn_task": "sfn",
    "sign_message": "_producer",
    "sqs_handler": "sqs",
    "sqs_record_handler": "sqs",
    "start_execution": "_producer",
    "tenant_bucket": "_files",
    "tenant_fields_processor": "_logging",
    "tenant_key": "_data",
    "tenant_log_fields": "_logging",
    "tenant_s3": "_files",
    "tenant_scope": "_context",
    "tenant_session": "_data",
    "tenant_table": "_data",
    "validate_tenant_id": "_tenant_id",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    # Public names report the package as their module (as httpx does): tracebacks, reprs and docs
    # show tenantscope.InvalidTenantId, not the private module it happens to live in.
    if getattr(value, "__module__", "").startswith(f"{__name__}."):
        value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
